// Generic peak loop: 16 chains on 16-byte vectors (GCC vector extension:
// SSE2 on x86-64, NEON elsewhere). Baseline x86-64 has no FMA instruction,
// so each step is a multiply then an add (2 flops per lane, like an FMA, at
// half the instruction throughput); on targets with FMA the compiler may
// contract them. 16 chains: a multiply-then-add chain has about twice an
// FMA's latency (12 chains measured 10% under 16 here). Copy: plain loop on
// the same vectors.
#include <cstring>

#include "nnk/bench.h"
#include "ukr_sweep.h"

namespace nnk {
namespace NNK_NS {
namespace {

typedef float vec4 __attribute__((vector_size(16)));
constexpr int kChains = 16;

float fma_chains(index_t iters, float mul, float add) {
    const vec4 m = {mul, mul, mul, mul}, c = {add, add, add, add};
    vec4 a[kChains];
    for (int j = 0; j < kChains; ++j) {
        const float v = 0.1f * static_cast<float>(j);
        a[j] = vec4{v, v, v, v};
    }
    for (index_t i = 0; i < iters; ++i) {
        // Fully unrolled by the compiler: every a[j] stays in a register.
        for (int j = 0; j < kChains; ++j) a[j] = a[j] * m + c;
    }
    float total = 0.0f;
    for (int j = 0; j < kChains; ++j) total += a[j][0] + a[j][1] + a[j][2] + a[j][3];
    return total;
}

void copy(float* dst, const float* src, index_t n) {
    index_t i = 0;
    for (; i + 16 <= n; i += 16) {
        vec4 x[4];
        std::memcpy(x, src + i, sizeof x);  // unaligned vector loads
        std::memcpy(dst + i, x, sizeof x);
    }
    for (; i < n; ++i) dst[i] = src[i];
}

}  // namespace

const BenchKernels& bench_kernels() {
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
    static const BenchKernels k{"generic", 4, kChains, true, &fma_chains, &copy, Tile<float>::MR, Tile<float>::NR, &ukr_sweep};
#else
    static const BenchKernels k{"generic", 4, kChains, false, &fma_chains, &copy, Tile<float>::MR, Tile<float>::NR, &ukr_sweep};
#endif
    return k;
}

}  // namespace NNK_NS
}  // namespace nnk
