// avx2 microkernels (intrinsics, ukr_simd.h): fp32 6x16, fp64 6x8.
//
// Why 6 x 16 (fp32): 16 ymm registers hold 6*2 = 12 accumulators, the 2
// registers of a B row and 1 broadcast of A (15 in use); 12 FMAs per k step
// for 2 loads + 6 broadcasts. fp64 uses the same register shape: 6 x 8.
#include "ukr_simd.h"

namespace nnk {
namespace NNK_NS {
namespace {

inline __m256i lane_mask32(int n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}
inline __m256i lane_mask64(int n) {
    const __m256i idx = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), idx);
}

struct S256f {
    using T = float;
    using V = __m256;
    static constexpr int W = 8;
    static V zero() { return _mm256_setzero_ps(); }
    static V load(const T* p) { return _mm256_load_ps(p); }
    static V loadu(const T* p) { return _mm256_loadu_ps(p); }
    static V loadu_n(const T* p, int n) { return _mm256_maskload_ps(p, lane_mask32(n)); }
    static void storeu(T* p, V v) { _mm256_storeu_ps(p, v); }
    static void storeu_n(T* p, V v, int n) { _mm256_maskstore_ps(p, lane_mask32(n), v); }
    static V set1(T x) { return _mm256_set1_ps(x); }
    static V bcast(const T* p) { return _mm256_broadcast_ss(p); }
    static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
};

struct S256d {
    using T = double;
    using V = __m256d;
    static constexpr int W = 4;
    static V zero() { return _mm256_setzero_pd(); }
    static V load(const T* p) { return _mm256_load_pd(p); }
    static V loadu(const T* p) { return _mm256_loadu_pd(p); }
    static V loadu_n(const T* p, int n) { return _mm256_maskload_pd(p, lane_mask64(n)); }
    static void storeu(T* p, V v) { _mm256_storeu_pd(p, v); }
    static void storeu_n(T* p, V v, int n) { _mm256_maskstore_pd(p, lane_mask64(n), v); }
    static V set1(T x) { return _mm256_set1_pd(x); }
    static V bcast(const T* p) { return _mm256_broadcast_sd(p); }
    static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
};

constexpr int MRf = Tile<float>::MR, NVf = Tile<float>::NR / S256f::W;
constexpr int MRd = Tile<double>::MR, NVd = Tile<double>::NR / S256d::W;

}  // namespace

void ukr_f32(index_t k, const float* ap, const float* bp, float alpha, float beta, float* c,
             index_t rsc, index_t csc, int m, int n, const UkrEpilogue<float>& epi,
             const float* a_next, const float* b_next) {
    ukr_packed<S256f, MRf, NVf>(k, ap, bp, alpha, beta, c, rsc, csc, m, n, epi, a_next, b_next);
}
void ukr_f64(index_t k, const double* ap, const double* bp, double alpha, double beta, double* c,
             index_t rsc, index_t csc, int m, int n, const UkrEpilogue<double>& epi,
             const double* a_next, const double* b_next) {
    ukr_packed<S256d, MRd, NVd>(k, ap, bp, alpha, beta, c, rsc, csc, m, n, epi, a_next, b_next);
}
void ukr_brows_f32(index_t k, const float* ap, const float* b, index_t ldb, float alpha, float beta,
                   float* c, index_t rsc, index_t csc, int m, const UkrEpilogue<float>& epi,
                   const float* a_next) {
    ukr_packed<S256f, MRf, NVf, MRf, NVf, true>(k, ap, b, alpha, beta, c, rsc, csc, m, NVf * S256f::W, epi,
                                                a_next, b, ldb);
}
void ukr_brows_f64(index_t k, const double* ap, const double* b, index_t ldb, double alpha, double beta,
                   double* c, index_t rsc, index_t csc, int m, const UkrEpilogue<double>& epi,
                   const double* a_next) {
    ukr_packed<S256d, MRd, NVd, MRd, NVd, true>(k, ap, b, alpha, beta, c, rsc, csc, m, NVd * S256d::W, epi,
                                                a_next, b, ldb);
}
void ukr_direct_f32(index_t k, const float* a, index_t rsa, const float* b, index_t rsb, float alpha,
                    float beta, float* c, index_t rsc, index_t csc, int m, int n,
                    const UkrEpilogue<float>& epi) {
    ukr_direct<S256f, MRf, NVf>(k, a, rsa, b, rsb, alpha, beta, c, rsc, csc, m, n, epi);
}
void ukr_direct_f64(index_t k, const double* a, index_t rsa, const double* b, index_t rsb,
                    double alpha, double beta, double* c, index_t rsc, index_t csc, int m, int n,
                    const UkrEpilogue<double>& epi) {
    ukr_direct<S256d, MRd, NVd>(k, a, rsa, b, rsb, alpha, beta, c, rsc, csc, m, n, epi);
}

}  // namespace NNK_NS
}  // namespace nnk
