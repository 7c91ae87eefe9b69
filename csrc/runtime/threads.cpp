// Process-wide thread count for nnkernels' OpenMP regions.
#include <omp.h>

#include <cstdlib>

#include "nnk/common.h"

namespace nnk {

namespace {
std::atomic<int>& threads_slot() {
    // OMP_NUM_THREADS is respected at start-up through omp_get_max_threads().
    static std::atomic<int> slot{omp_get_max_threads() > 0 ? omp_get_max_threads() : 1};
    return slot;
}
}  // namespace

int num_threads() { return threads_slot().load(std::memory_order_relaxed); }

void set_num_threads(int n) { threads_slot().store(n < 1 ? 1 : n); }

}  // namespace nnk
