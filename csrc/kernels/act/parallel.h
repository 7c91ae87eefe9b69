// Splitting a range of independent items (elements or rows) across OpenMP
// threads: serial below a size threshold, otherwise one contiguous chunk per
// thread (chunk edges are multiples of `align`). Used by the act and loss TUs.
#pragma once

#include <omp.h>

#include "nnk/common.h"

namespace nnk {
namespace NNK_NS {
namespace {

// body(lo, hi) for [0, n); `work` estimates the total cost in element-ops.
template <class F>
void parallel_chunks(index_t n, index_t work, index_t align, F&& body) {
    const int nt = threads_for(work, kParallelMinWork);
    if (nt <= 1 || n < 2 * align) {
        body(index_t{0}, n);
        return;
    }
    OmpErrors errors;
#pragma omp parallel num_threads(nt)
    {
        errors.run([&] {
            const index_t t = omp_get_thread_num(), T = omp_get_num_threads();
            index_t lo = n * t / T / align * align;
            index_t hi = t + 1 == T ? n : n * (t + 1) / T / align * align;
            if (lo < hi) body(lo, hi);
        });
    }
    errors.rethrow();
}

}  // namespace
}  // namespace NNK_NS
}  // namespace nnk
