// avx512 microkernels (intrinsics, ukr_simd.h): fp32 14x32, fp64 14x16.
//
// Why 14 x 32 (fp32): 32 zmm registers hold 14*2 = 28 accumulators, the 2
// registers of a B row and 1 broadcast of A (31 in use). Per k step that is
// 28 FMAs for 2 loads + 14 broadcast loads: the two FMA ports stay busy while
// the three load ports have slack. Measured against 12x32, 8x48 and 6x64 with
// the same driver (docs/gemm.md): 14x32 was the fastest at n = 512..2048.
// fp64 uses the same register shape with 8 lanes: 14 x 16.
#include "ukr_simd.h"

namespace nnk {
namespace NNK_NS {
namespace {

struct S512f {
    using T = float;
    using V = __m512;
    static constexpr int W = 16;
    static V zero() { return _mm512_setzero_ps(); }
    static V load(const T* p) { return _mm512_load_ps(p); }
    static V loadu(const T* p) { return _mm512_loadu_ps(p); }
    static V loadu_n(const T* p, int n) {
        return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
    }
    static void storeu(T* p, V v) { _mm512_storeu_ps(p, v); }
    static void storeu_n(T* p, V v, int n) {
        _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
    }
    static V set1(T x) { return _mm512_set1_ps(x); }
    static V bcast(const T* p) { return _mm512_set1_ps(*p); }
    static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
};

struct S512d {
    using T = double;
    using V = __m512d;
    static constexpr int W = 8;
    static V zero() { return _mm512_setzero_pd(); }
    static V load(const T* p) { return _mm512_load_pd(p); }
    static V loadu(const T* p) { return _mm512_loadu_pd(p); }
    static V loadu_n(const T* p, int n) {
        return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1u), p);
    }
    static void storeu(T* p, V v) { _mm512_storeu_pd(p, v); }
    static void storeu_n(T* p, V v, int n) {
        _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1u), v);
    }
    static V set1(T x) { return _mm512_set1_pd(x); }
    static V bcast(const T* p) { return _mm512_set1_pd(*p); }
    static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
};

constexpr int MRf = Tile<float>::MR, NVf = Tile<float>::NR / S512f::W;
constexpr int MRd = Tile<double>::MR, NVd = Tile<double>::NR / S512d::W;

}  // namespace

void ukr_f32(index_t k, const float* ap, const float* bp, float alpha, float beta, float* c,
             index_t rsc, index_t csc, int m, int n, const UkrEpilogue<float>& epi,
             const float* a_next, const float* b_next) {
    // Partial tiles skip the zero padding: the last row tile of m = 64 has 8
    // rows; the last column panel of n = 100 has 4 columns (computed as
    // columns, ukr_packed_cols), that of n = 784 has 16.
    constexpr index_t NRf = Tile<float>::NR;
    if (n <= 4) {
        ukr_packed_cols<S512f, MRf, 4>(k, ap, bp, NRf, alpha, beta, c, rsc, csc, m, n, epi, a_next, b_next);
    } else if (n <= 8) {
        ukr_packed_cols<S512f, MRf, 8>(k, ap, bp, NRf, alpha, beta, c, rsc, csc, m, n, epi, a_next, b_next);
    } else if (n <= S512f::W) {
        if (m <= 8)
            ukr_packed<S512f, 8, 1, MRf, NVf>(k, ap, bp, alpha, beta, c, rsc, csc, m, n, epi, a_next, b_next);
        else
            ukr_packed<S512f, MRf, 1, MRf, NVf>(k, ap, bp, alpha, beta, c, rsc, csc, m, n, epi, a_next, b_next);
    } else if (m <= 4) {
        ukr_packed<S512f, 4, NVf, MRf>(k, ap, bp, alpha, beta, c, rsc, csc, m, n, epi, a_next, b_next);
    } else if (m <= 8) {
        ukr_packed<S512f, 8, NVf, MRf>(k, ap, bp, alpha, beta, c, rsc, csc, m, n, epi, a_next, b_next);
    } else {
        ukr_packed<S512f, MRf, NVf>(k, ap, bp, alpha, beta, c, rsc, csc, m, n, epi, a_next, b_next);
    }
}
void ukr_f64(index_t k, const double* ap, const double* bp, double alpha, double beta, double* c,
             index_t rsc, index_t csc, int m, int n, const UkrEpilogue<double>& epi,
             const double* a_next, const double* b_next) {
    if (m <= 4)
        ukr_packed<S512d, 4, NVd, MRd>(k, ap, bp, alpha, beta, c, rsc, csc, m, n, epi, a_next, b_next);
    else if (m <= 8)
        ukr_packed<S512d, 8, NVd, MRd>(k, ap, bp, alpha, beta, c, rsc, csc, m, n, epi, a_next, b_next);
    else
        ukr_packed<S512d, MRd, NVd>(k, ap, bp, alpha, beta, c, rsc, csc, m, n, epi, a_next, b_next);
}
namespace {
// B read in place: full NV-register panels, row tiles of <= 4, <= 8 or MR rows.
template <class S, int MR, int NV>
void brows_tiles(index_t k, const typename S::T* ap, const typename S::T* b, index_t ldb,
                 typename S::T alpha, typename S::T beta, typename S::T* c, index_t rsc, index_t csc,
                 int m, const UkrEpilogue<typename S::T>& epi, const typename S::T* a_next) {
    constexpr int n = NV * S::W;
    if (m <= 4)
        ukr_packed<S, 4, NV, MR, NV, true>(k, ap, b, alpha, beta, c, rsc, csc, m, n, epi, a_next, b, ldb);
    else if (m <= 8)
        ukr_packed<S, 8, NV, MR, NV, true>(k, ap, b, alpha, beta, c, rsc, csc, m, n, epi, a_next, b, ldb);
    else
        ukr_packed<S, MR, NV, MR, NV, true>(k, ap, b, alpha, beta, c, rsc, csc, m, n, epi, a_next, b, ldb);
}
}  // namespace

void ukr_brows_f32(index_t k, const float* ap, const float* b, index_t ldb, float alpha, float beta,
                   float* c, index_t rsc, index_t csc, int m, const UkrEpilogue<float>& epi,
                   const float* a_next) {
    brows_tiles<S512f, MRf, NVf>(k, ap, b, ldb, alpha, beta, c, rsc, csc, m, epi, a_next);
}
void ukr_brows_f64(index_t k, const double* ap, const double* b, index_t ldb, double alpha, double beta,
                   double* c, index_t rsc, index_t csc, int m, const UkrEpilogue<double>& epi,
                   const double* a_next) {
    brows_tiles<S512d, MRd, NVd>(k, ap, b, ldb, alpha, beta, c, rsc, csc, m, epi, a_next);
}
void ukr_direct_f32(index_t k, const float* a, index_t rsa, const float* b, index_t rsb, float alpha,
                    float beta, float* c, index_t rsc, index_t csc, int m, int n,
                    const UkrEpilogue<float>& epi) {
    ukr_direct<S512f, MRf, NVf>(k, a, rsa, b, rsb, alpha, beta, c, rsc, csc, m, n, epi);
}
void ukr_direct_f64(index_t k, const double* a, index_t rsa, const double* b, index_t rsb,
                    double alpha, double beta, double* c, index_t rsc, index_t csc, int m, int n,
                    const UkrEpilogue<double>& epi) {
    ukr_direct<S512d, MRd, NVd>(k, a, rsa, b, rsb, alpha, beta, c, rsc, csc, m, n, epi);
}

}  // namespace NNK_NS
}  // namespace nnk
