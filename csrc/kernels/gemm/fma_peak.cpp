// Peak FMA throughput of this ISA variant, for "% of peak" in the GEMM
// benchmarks: 16 independent chains of register-wide multiply-adds (enough to
// cover the FMA latency on two ports), run by `threads` threads at once.
#include <omp.h>

#include <chrono>

#include "gemm_epilogue.h"
#include "gemm_ukr.h"

namespace nnk {
namespace NNK_NS {

double fma_peak_gflops(double seconds, int threads) {
    // Each thread times short chunks (~0.3 ms) and keeps its best chunk: on a
    // shared machine a long run would measure the scheduler, not the core.
    // The result is the sum of the threads' best rates.
    using V = EpiVec<float>::type;
    constexpr int W = kEpiVecBytes / sizeof(float);
    constexpr int CH = 16;
    constexpr long kInner = 1 << 12;
    double total = 0;
    OmpErrors errors;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    errors.run([&] {
        V acc[CH];
        for (int i = 0; i < CH; ++i) acc[i] = V{} + 0.001f * static_cast<float>(i);
        const V mul = V{} + 0.999999f, add = V{} + 1e-7f;
        const auto start = std::chrono::steady_clock::now();
        double best = 0;
        for (;;) {
            const auto t0 = std::chrono::steady_clock::now();
            for (long it = 0; it < kInner; ++it) {
#pragma GCC unroll 16
                for (int i = 0; i < CH; ++i) acc[i] = acc[i] * mul + add;
            }
            const auto t1 = std::chrono::steady_clock::now();
            const double dt = std::chrono::duration<double>(t1 - t0).count();
            const double rate = 2.0 * W * CH * kInner / dt / 1e9;
            if (rate > best) best = rate;
            if (std::chrono::duration<double>(t1 - start).count() >= seconds) break;
        }
        V sum = acc[0];
        for (int i = 1; i < CH; ++i) sum += acc[i];
        float lanes[W];
        __builtin_memcpy(lanes, &sum, sizeof(sum));
        total += lanes[0] != 0.0f ? best : 0.0;  // keeps the chains alive (the sum is never 0)
    });
    errors.rethrow();
    return total;
}

}  // namespace NNK_NS
}  // namespace nnk
