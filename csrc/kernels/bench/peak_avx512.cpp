// AVX-512 peak loop: 16 chains of zmm FMAs (Sapphire Rapids: 2 FMA ports x
// 4 cycles latency = 8 in flight; 16 leaves margin and still fits the 32
// registers with the two constants). Copy: 4 zmm loads/stores per step.
#include <immintrin.h>

#include "nnk/bench.h"
#include "ukr_sweep.h"

namespace nnk {
namespace NNK_NS {
namespace {

constexpr int kChains = 16;

float fma_chains(index_t iters, float mul, float add) {
    const __m512 m = _mm512_set1_ps(mul), c = _mm512_set1_ps(add);
    __m512 a0 = _mm512_set1_ps(0.0f), a1 = _mm512_set1_ps(0.1f), a2 = _mm512_set1_ps(0.2f),
           a3 = _mm512_set1_ps(0.3f), a4 = _mm512_set1_ps(0.4f), a5 = _mm512_set1_ps(0.5f),
           a6 = _mm512_set1_ps(0.6f), a7 = _mm512_set1_ps(0.7f), a8 = _mm512_set1_ps(0.8f),
           a9 = _mm512_set1_ps(0.9f), a10 = _mm512_set1_ps(1.0f), a11 = _mm512_set1_ps(1.1f),
           a12 = _mm512_set1_ps(1.2f), a13 = _mm512_set1_ps(1.3f), a14 = _mm512_set1_ps(1.4f),
           a15 = _mm512_set1_ps(1.5f);
    for (index_t i = 0; i < iters; ++i) {
        a0 = _mm512_fmadd_ps(a0, m, c);
        a1 = _mm512_fmadd_ps(a1, m, c);
        a2 = _mm512_fmadd_ps(a2, m, c);
        a3 = _mm512_fmadd_ps(a3, m, c);
        a4 = _mm512_fmadd_ps(a4, m, c);
        a5 = _mm512_fmadd_ps(a5, m, c);
        a6 = _mm512_fmadd_ps(a6, m, c);
        a7 = _mm512_fmadd_ps(a7, m, c);
        a8 = _mm512_fmadd_ps(a8, m, c);
        a9 = _mm512_fmadd_ps(a9, m, c);
        a10 = _mm512_fmadd_ps(a10, m, c);
        a11 = _mm512_fmadd_ps(a11, m, c);
        a12 = _mm512_fmadd_ps(a12, m, c);
        a13 = _mm512_fmadd_ps(a13, m, c);
        a14 = _mm512_fmadd_ps(a14, m, c);
        a15 = _mm512_fmadd_ps(a15, m, c);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                                       _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
    return _mm512_reduce_add_ps(s);
}

void copy(float* dst, const float* src, index_t n) {
    index_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m512 x0 = _mm512_loadu_ps(src + i), x1 = _mm512_loadu_ps(src + i + 16),
                     x2 = _mm512_loadu_ps(src + i + 32), x3 = _mm512_loadu_ps(src + i + 48);
        _mm512_storeu_ps(dst + i, x0);
        _mm512_storeu_ps(dst + i + 16, x1);
        _mm512_storeu_ps(dst + i + 32, x2);
        _mm512_storeu_ps(dst + i + 48, x3);
    }
    for (; i < n; ++i) dst[i] = src[i];
}

}  // namespace

const BenchKernels& bench_kernels() {
    static const BenchKernels k{"avx512", 16, kChains, true, &fma_chains, &copy, Tile<float>::MR, Tile<float>::NR, &ukr_sweep};
    return k;
}

}  // namespace NNK_NS
}  // namespace nnk
