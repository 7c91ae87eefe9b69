// Splitting a range of independent items (elements or rows) across OpenMP
// threads: serial below a size threshold, otherwise one contiguous chunk per
// thread (chunk edges are multiples of `align`, so vector loops stay aligned).
// The one helper for every kernel family (act, loss, optim, fused step);
// the GEMM has its own 2-D split (gemm_driver.cpp).
#pragma once

#include <omp.h>

#include "nnk/common.h"

namespace nnk {
namespace NNK_NS {
namespace {

// body(lo, hi) on disjoint chunks of [0, n). `work` estimates the total cost
// (element-ops); a thread is used per `min_work` of it (threads_for).
template <class F>
void parallel_chunks(index_t n, index_t work, index_t min_work, index_t align, F&& body) {
    const int nt = threads_for(work, min_work);
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

// The same with the default threshold (kParallelMinWork).
template <class F>
void parallel_chunks(index_t n, index_t work, index_t align, F&& body) {
    parallel_chunks(n, work, kParallelMinWork, align, static_cast<F&&>(body));
}

// An elementwise pass over [0, n): threads once n reaches 2 * min_per_thread.
template <class F>
void parallel_elems(index_t n, index_t min_per_thread, F&& body) {
    parallel_chunks(n, n, min_per_thread, 16, static_cast<F&&>(body));
}

}  // namespace
}  // namespace NNK_NS
}  // namespace nnk
