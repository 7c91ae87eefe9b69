// AVX2 peak loop: 12 chains of ymm FMAs (2 FMA ports x 4-5 cycles latency
// needs 8-10 in flight; 12 + 2 constants fit the 16 ymm registers).
// Copy: 4 ymm loads/stores per step.
#include <immintrin.h>

#include "nnk/bench.h"
#include "ukr_sweep.h"

namespace nnk {
namespace NNK_NS {
namespace {

constexpr int kChains = 12;

float fma_chains(index_t iters, float mul, float add) {
    const __m256 m = _mm256_set1_ps(mul), c = _mm256_set1_ps(add);
    __m256 a0 = _mm256_set1_ps(0.0f), a1 = _mm256_set1_ps(0.1f), a2 = _mm256_set1_ps(0.2f),
           a3 = _mm256_set1_ps(0.3f), a4 = _mm256_set1_ps(0.4f), a5 = _mm256_set1_ps(0.5f),
           a6 = _mm256_set1_ps(0.6f), a7 = _mm256_set1_ps(0.7f), a8 = _mm256_set1_ps(0.8f),
           a9 = _mm256_set1_ps(0.9f), a10 = _mm256_set1_ps(1.0f), a11 = _mm256_set1_ps(1.1f);
    for (index_t i = 0; i < iters; ++i) {
        a0 = _mm256_fmadd_ps(a0, m, c);
        a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c);
        a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c);
        a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c);
        a10 = _mm256_fmadd_ps(a10, m, c);
        a11 = _mm256_fmadd_ps(a11, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, s);
    float total = 0.0f;
    for (float v : lanes) total += v;
    return total;
}

void copy(float* dst, const float* src, index_t n) {
    index_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256 x0 = _mm256_loadu_ps(src + i), x1 = _mm256_loadu_ps(src + i + 8),
                     x2 = _mm256_loadu_ps(src + i + 16), x3 = _mm256_loadu_ps(src + i + 24);
        _mm256_storeu_ps(dst + i, x0);
        _mm256_storeu_ps(dst + i + 8, x1);
        _mm256_storeu_ps(dst + i + 16, x2);
        _mm256_storeu_ps(dst + i + 24, x3);
    }
    for (; i < n; ++i) dst[i] = src[i];
}

}  // namespace

const BenchKernels& bench_kernels() {
    static const BenchKernels k{"avx2", 8, kChains, true, &fma_chains, &copy, Tile<float>::MR, Tile<float>::NR, &ukr_sweep};
    return k;
}

}  // namespace NNK_NS
}  // namespace nnk
