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

// A team of threads already running inside one OpenMP region: thread `tid`
// of `nth`. Code that receives a Team takes its own share of each pass and
// never opens a region itself; `barrier()` separates dependent phases. The
// fused training step runs as one such region (one fork/join per step
// instead of one per pass). With nth == 1 barriers are no-ops; what a pass
// does then (stay serial or open its own region) is the caller's choice
// (mlp_step.cpp: "solo").
struct Team {
    int tid = 0, nth = 1;

    bool leader() const { return tid == 0; }

    void barrier() const {
        if (nth > 1) {
#pragma omp barrier
        }
    }

    // This thread's [lo, hi) of [0, n): contiguous chunks, inner edges at
    // multiples of `align`, covering [0, n) exactly once across the team;
    // only n / min_items threads (at least one) share the work, the others
    // get an empty range (as may a thread whose edges round to the same
    // multiple of `align`).
    void share(index_t n, index_t align, index_t min_items, index_t& lo, index_t& hi) const {
        index_t parts = nth;
        if (min_items > 0 && n / min_items < parts) parts = n / min_items > 1 ? n / min_items : 1;
        if (tid >= parts) {
            lo = hi = 0;
            return;
        }
        lo = tid == 0 ? 0 : n * tid / parts / align * align;
        hi = tid + 1 == parts ? n : n * (tid + 1) / parts / align * align;
    }
};

}  // namespace
}  // namespace NNK_NS
}  // namespace nnk
