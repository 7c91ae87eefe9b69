// Vectorised elementary functions for the per-ISA kernel TUs:
// exp, expm1, log, log1p, tanh, erf, erfc (and sigmoid / softplus built on them).
//
// Lanes are float64. A kernel on float32 data widens to float64, computes,
// and rounds once on the store, so its float32 results are (almost always)
// correctly rounded: relative error <= 0.5 ulp + ~1e-13, i.e. < 7e-8 < 2e-7,
// for every finite input, and float64 results are accurate to a few ulp
// (erf/erfc ~1e-14 relative). The same code serves float32 and float64.
//
//   NNK_ISA_AVX512: V = 8 doubles (zmm)   NNK_ISA_AVX2: V = 4 doubles (ymm)
//   generic:        V = double, the functions are the C library's (scalar fallback)
//
// Written with GCC/Clang vector extensions: arithmetic, comparisons (giving
// lane masks) and `mask ? a : b` work on V exactly as on a scalar double, so
// kernels are written once. No fast-math flags: inf and NaN behave as in libm
// (NaN in, NaN out; exp(+inf) = inf, exp(-inf) = 0, log(0) = -inf ...).
//
// Include only from a per-ISA TU (NNK_NS defined); everything here lives in
// nnk::NNK_NS::vm so the variants never share a symbol.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "nnk/common.h"

#ifndef NNK_NS
#error "vmath.h is for per-ISA kernel translation units"
#endif

#if defined(NNK_ISA_AVX512) || defined(NNK_ISA_AVX2)
#include <immintrin.h>
#endif

// Every function is forced inline: called in a loop, a call would spill and
// re-broadcast all the polynomial constants for each vector.
#define NNK_VM_INLINE static inline __attribute__((always_inline))

namespace nnk {
namespace NNK_NS {
namespace vm {

#if defined(NNK_ISA_AVX512)
constexpr int W = 8;  // float64 lanes
#elif defined(NNK_ISA_AVX2)
constexpr int W = 4;
#else
constexpr int W = 1;
#endif

#if defined(NNK_ISA_AVX512) || defined(NNK_ISA_AVX2)
typedef double V __attribute__((vector_size(W * 8)));
typedef std::int64_t VI __attribute__((vector_size(W * 8)));  // lane masks and integer lanes
typedef float VF __attribute__((vector_size(W * 4)));         // W floats (half a register)
#define NNK_VM_VECTOR 1
#else
typedef double V;
typedef bool VI;
#define NNK_VM_VECTOR 0
#endif

// ---- loads, stores, constants ------------------------------------------------

NNK_VM_INLINE V splat(double c) { return V{} + c; }

NNK_VM_INLINE V load(const double* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
NNK_VM_INLINE V load(const float* p) {
#if NNK_VM_VECTOR
    VF f;
    std::memcpy(&f, p, sizeof f);
    return __builtin_convertvector(f, V);
#else
    return static_cast<double>(*p);
#endif
}
NNK_VM_INLINE void store(double* p, V v) { std::memcpy(p, &v, sizeof v); }
NNK_VM_INLINE void store(float* p, V v) {
#if NNK_VM_VECTOR
    VF f = __builtin_convertvector(v, VF);
    std::memcpy(p, &f, sizeof f);
#else
    *p = static_cast<float>(v);
#endif
}

// First k (< W) elements, the other lanes set to `fill` (a float source:
// `fill` as a float). Masked loads/stores where the ISA has them (a scalar
// loop through a buffer would stall on store forwarding).
#if defined(NNK_ISA_AVX512)
NNK_VM_INLINE V load_part(const double* p, index_t k, double fill) {
    return (V)_mm512_mask_loadu_pd(_mm512_set1_pd(fill), __mmask8((1u << k) - 1u), p);
}
NNK_VM_INLINE V load_part(const float* p, index_t k, double fill) {
    return (V)_mm512_cvtps_pd(_mm256_mask_loadu_ps(_mm256_set1_ps(float(fill)), __mmask8((1u << k) - 1u), p));
}
NNK_VM_INLINE void store_part(double* p, V v, index_t k) {
    _mm512_mask_storeu_pd(p, __mmask8((1u << k) - 1u), (__m512d)v);
}
NNK_VM_INLINE void store_part(float* p, V v, index_t k) {
    _mm256_mask_storeu_ps(p, __mmask8((1u << k) - 1u), _mm512_cvtpd_ps((__m512d)v));
}
#else
template <class T>
NNK_VM_INLINE V load_part(const T* p, index_t k, double fill) {
    double buf[W];
    for (int j = 0; j < W; ++j) buf[j] = j < k ? static_cast<double>(p[j]) : fill;
    return load(buf);
}
template <class T>
NNK_VM_INLINE void store_part(T* p, V v, index_t k) {
    double buf[W];
    store(buf, v);
    for (index_t j = 0; j < k; ++j) p[j] = static_cast<T>(buf[j]);
}
#endif

// v with the lanes from k on set to 0. Tails are loaded padded with a value
// whose exp is harmless (the row max, exp = 1) and zeroed here: padding with
// -inf would make exp underflow, and an underflowing lane costs a microcode
// assist (~100 cycles) on every tail.
NNK_VM_INLINE V keep_first(V v, index_t k) {
#if NNK_VM_VECTOR
    VI idx;
    for (int j = 0; j < W; ++j) idx[j] = j;
    return idx < VI{} + std::int64_t(k) ? v : V{};
#else
    return k > 0 ? v : 0.0;
#endif
}

// Sum / max of the lanes, always in the same order.
// (In registers: a store and reloads would stall on store forwarding.)
NNK_VM_INLINE double hsum(V v) {
#if defined(NNK_ISA_AVX512)
    __m256d h = _mm256_add_pd(_mm512_castpd512_pd256((__m512d)v), _mm512_extractf64x4_pd((__m512d)v, 1));
    __m128d q = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
#elif defined(NNK_ISA_AVX2)
    __m128d q = _mm_add_pd(_mm256_castpd256_pd128((__m256d)v), _mm256_extractf128_pd((__m256d)v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
#else
    return v;
#endif
}
// Max that propagates NaN (any NaN lane gives NaN).
NNK_VM_INLINE V vmax_nan(V a, V b) { return (a > b) | (a != a) ? a : b; }
NNK_VM_INLINE double hmax_nan(V v) {
#if NNK_VM_VECTOR
    double b[W];
    store(b, v);
    double m = b[0];
    for (int j = 1; j < W; ++j) m = (b[j] > m || b[j] != b[j]) ? b[j] : m;
    return m;
#else
    return v;
#endif
}

// True if any lane of the mask is set.
// (A test instruction on the register: going through memory would stall on
// store forwarding, a zmm store followed by narrower loads.)
NNK_VM_INLINE bool any(VI m) {
#if defined(NNK_ISA_AVX512)
    return _mm512_test_epi64_mask((__m512i)m, (__m512i)m) != 0;
#elif defined(NNK_ISA_AVX2)
    return !_mm256_testz_si256((__m256i)m, (__m256i)m);
#else
    return m;
#endif
}

NNK_VM_INLINE V vabs(V x) {
#if NNK_VM_VECTOR
    return (V)((VI)x & 0x7fffffffffffffffLL);
#else
    return std::fabs(x);
#endif
}
// |a| with the sign of s.
NNK_VM_INLINE V copysign(V a, V s) {
#if NNK_VM_VECTOR
    return (V)(((VI)a & 0x7fffffffffffffffLL) | ((VI)s & (VI{} + (std::int64_t)0x8000000000000000ULL)));
#else
    return std::copysign(a, s);
#endif
}

template <int N>
NNK_VM_INLINE V horner(V x, const double (&c)[N]) {  // c[0] + c[1] x + ... + c[N-1] x^(N-1)
    V p = splat(c[N - 1]);
    for (int i = N - 2; i >= 0; --i) p = p * x + c[i];
    return p;
}

// ---- exp, expm1 ----------------------------------------------------------------

// 1/k! for the reduced-argument series of exp (|r| <= ln2/2: truncation < 1e-17).
constexpr double kExpTaylor[14] = {1.0, 1.0, 0.5, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040,
                                   1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800,
                                   1.0 / 479001600, 1.0 / 6227020800.0};
// expm1(z) / z for |z| <= 1: 1/(k+1)!, truncation < 2e-17.
constexpr double kExpm1Taylor[17] = {1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040,
                                     1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800,
                                     1.0 / 479001600, 1.0 / 6227020800.0, 1.0 / 87178291200.0,
                                     1.0 / 1307674368000.0, 1.0 / 20922789888000.0,
                                     1.0 / 355687428096000.0};

#if NNK_VM_VECTOR
// exp(x) = 2^n * exp(r), n = rint(x / ln2), r = x - n ln2 (two-part ln2);
// 2^n is applied as 2^(n/2) * 2^(n - n/2) so results that over/underflow
// (including subnormals) round once, like libm.
// `N` terms of the series: 14 for float64 results; 10 (truncation < 1e-12)
// is plenty when the result is rounded to float32 (exp_f32).
template <int N = 14>
NNK_VM_INLINE V exp_n(V x) {
    x = x < -800.0 ? splat(-800.0) : x;  // NaN passes both tests unchanged
    x = x > 800.0 ? splat(800.0) : x;
    const double shifter = 0x1.8p52;
    V t = x * 1.4426950408889634 + shifter;
    V n = t - shifter;
    V r = x - n * 0x1.62e42fefa39efp-1;
    r = r - n * 0x1.abc9e3b39803fp-56;
    V p = splat(kExpTaylor[N - 1]);
    for (int i = N - 2; i >= 0; --i) p = p * r + kExpTaylor[i];
    VI ni = (VI)t - (VI)splat(shifter);
    VI n1 = ni >> 1;
    VI n2 = ni - n1;
    V s1 = (V)((n1 + 1023) << 52);
    V s2 = (V)((n2 + 1023) << 52);
    return p * s1 * s2;
}
NNK_VM_INLINE V exp(V x) { return exp_n<14>(x); }
NNK_VM_INLINE V exp_f32(V x) { return exp_n<10>(x); }

NNK_VM_INLINE V expm1(V x) {
    V small = x * horner(x, kExpm1Taylor);
    V big = exp(x) - 1.0;
    return vabs(x) <= 1.0 ? small : big;
}

// ---- log, log1p ------------------------------------------------------------------

// log(m) = 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ...), s = (m-1)/(m+1), |s| <= 0.1716
constexpr double kAtanhSeries[11] = {1.0,       1.0 / 3,  1.0 / 5,  1.0 / 7,  1.0 / 9, 1.0 / 11,
                                     1.0 / 13,  1.0 / 15, 1.0 / 17, 1.0 / 19, 1.0 / 21};

NNK_VM_INLINE V log(V x) {
    VI tiny = x < 0x1p-1022;  // subnormal (or <= 0): scale into the normal range
    V xs = tiny ? x * 0x1p52 : x;
    V kadj = tiny ? splat(-52.0) : splat(0.0);
    VI bits = (VI)xs;
    VI e = (bits >> 52) & 0x7ff;
    V m = (V)((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);  // [1, 2)
    VI big = m > 1.4142135623730951;
    m = big ? m * 0.5 : m;                                            // [0.707, 1.414)
    V k = ((V)(e | 0x4330000000000000LL) - 0x1p52) - 1023.0 + kadj + (big ? splat(1.0) : splat(0.0));
    V f = m - 1.0;
    V s = f / (m + 1.0);
    V s2 = s * s;
    V logm = 2.0 * s * horner(s2, kAtanhSeries);
    V r = k * 0x1.62e42fefa39efp-1 + (logm + k * 0x1.abc9e3b39803fp-56);
    r = x == 0.0 ? splat(-INFINITY) : r;
    r = x < 0.0 ? splat(NAN) : r;
    r = x == INFINITY ? x : r;
    r = x != x ? x : r;
    return r;
}

NNK_VM_INLINE V log1p(V y) {
    V u = 1.0 + y;
    V r = log(u) - ((u - 1.0) - y) / u;  // first-order correction for the rounding of 1 + y
    VI plain = (u == 0.0) | (u == INFINITY) | (y != y);
    r = plain ? log(u) : r;
    return vabs(y) < 0x1p-54 ? y : r;  // keeps -0.0 and subnormals exact
}

// ---- tanh, sigmoid ---------------------------------------------------------------

NNK_VM_INLINE V tanh(V x) {
    V a = vabs(x);
    V e1 = expm1(2.0 * a);               // accurate near 0
    V small = e1 / (e1 + 2.0);
    V big = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
    V r = a <= 0.5 ? small : big;
    return copysign(r, x);
}
#else   // generic: the C library, one double at a time
NNK_VM_INLINE V exp(V x) { return std::exp(x); }
NNK_VM_INLINE V exp_f32(V x) { return std::exp(x); }
NNK_VM_INLINE V expm1(V x) { return std::expm1(x); }
NNK_VM_INLINE V log(V x) { return std::log(x); }
NNK_VM_INLINE V log1p(V x) { return std::log1p(x); }
NNK_VM_INLINE V tanh(V x) { return std::tanh(x); }
#endif

// exp for a result of type T (float: the shorter series, still < 1e-12 relative)
template <class T>
NNK_VM_INLINE V exp_t(V x) {
    return sizeof(T) == 4 ? exp_f32(x) : exp(x);
}

// 1 / (1 + exp(-x)) (exp(-x) overflowing to inf gives 0, as it should)
NNK_VM_INLINE V sigmoid(V x) { return 1.0 / (1.0 + exp(-x)); }

// log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|))
NNK_VM_INLINE V softplus(V x) {
    V m = x > 0.0 ? x : splat(0.0);
    return x != x ? x : m + log1p(exp(-vabs(x)));
}

// ---- erf, erfc -------------------------------------------------------------------

// erf(x) / x as a polynomial in u = x^2 on [0, 4] (|x| < 2), least-squares fit
// to Chebyshev nodes (max relative error 1e-14).
constexpr double kErfSmall[17] = {
    1.1283791670955101,     -0.3761263890318311,    0.11283791670940192,   -0.02686617064370936,
    0.0052239776183514,     -0.0008548326809935259, 0.00012055328749800528, -1.4925592031062837e-05,
    1.6461534873000398e-06, -1.6361595733125153e-07, 1.4783868008451109e-08, -1.219401994217307e-09,
    9.121428688396341e-11,  -6.006282693879027e-12, 3.2418770176054497e-13, -1.2449797696415457e-14,
    2.472984810413472e-16};
// erfc(x) exp(x^2) as a polynomial in t = 1/x on [1/6, 1/2] (2 <= x <= 6),
// max relative error 6e-14.
constexpr double kErfcTail[17] = {
    -5.807090960874284e-08, 0.5641916563125553, -2.77886184320425e-05, -0.2819903244173349,
    0.0017077945883932355,  0.3938956415976941, 0.22395465391075936,   -2.087129053179407,
    2.8151818899991836,     0.5107205550855878, -5.674257633467611,    5.566160498808401,
    1.0984757042436923,     -5.489129627999933, 2.554759208428142,     1.1733252947973882,
    -0.9619142593112204};
// The same on t in [1/27.5, 1/6] (6 <= x <= 27.5; beyond, erfc underflows), max rel. error 2e-13.
constexpr double kErfcFar[13] = {
    6.074458384214276e-11, 0.5641895755192848,  4.6372592626790776e-07, -0.28211022515114126,
    0.0003282333258041274, 0.4184756545496489,  0.044879772702354825,   -1.3439303023612061,
    1.1158052809904717,    1.7669602734491845,  -2.6610826910164107,    -0.7994673926865437,
    1.5075371701437226};

#if NNK_VM_VECTOR
// erfc(a) for a >= 2 (a = +inf gives 0, NaN gives NaN).
NNK_VM_INLINE V erfc_tail(V a) {
    V t = 1.0 / a;
    V g = horner(t, kErfcTail);
    VI far = a > 6.0;
    if (any(far)) g = far ? horner(t, kErfcFar) : g;
    return exp(-(a * a)) * g;
}

NNK_VM_INLINE V erf(V x) {
    V a = vabs(x);
    VI tail = (a >= 2.0) | (a != a);
    V r = a * horner(a * a, kErfSmall);
    if (any(tail)) r = tail ? 1.0 - erfc_tail(a) : r;
    return copysign(r, x);
}

// erfc(x) for any x (accurate in the tail, where 1 - erf(x) would cancel).
NNK_VM_INLINE V erfc(V x) {
    V a = vabs(x);
    VI tail = (a >= 2.0) | (a != a);
    V r = 1.0 - copysign(a * horner(a * a, kErfSmall), x);
    if (any(tail)) {
        V e = erfc_tail(a);
        r = tail ? (x < 0.0 ? 2.0 - e : e) : r;
    }
    return r;
}
#else
NNK_VM_INLINE V erf(V x) { return std::erf(x); }
NNK_VM_INLINE V erfc(V x) { return std::erfc(x); }
#endif


// ---- native float32 lanes (2W floats per register) ---------------------------------
// For the float32 kernels whose cost is the math (activations, softmax /
// cross-entropy rows): twice the lanes of the float64 path, shorter series,
// and as few branches as possible (one path for every input: a vector of 16
// normal samples nearly always mixes ranges).
// Measured max relative error vs float64 over float32 inputs (random bit
// patterns, N(0, 16) samples and a dense grid on [-15, 15]): exp 7.3e-8,
// tanh 1.6e-7, sigmoid 1.9e-7, erf 1.7e-7, erfc 3.6e-7; expm1, log, log1p
// <= 1.4e-7 (tests/test_activations.py::test_vmath_float32_accuracy holds
// them to 2e-7, erfc_f to 1e-6). Results that underflow (subnormal) cost a
// microcode assist: kernels keep padding lanes out of exp.
#if NNK_VM_VECTOR
constexpr int WF = 2 * W;
typedef float VF2 __attribute__((vector_size(W * 8)));
typedef std::int32_t VI2 __attribute__((vector_size(W * 8)));

NNK_VM_INLINE VF2 splatf(float c) { return VF2{} + c; }
NNK_VM_INLINE VF2 loadf(const float* p) {
    VF2 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
NNK_VM_INLINE void storef(float* p, VF2 v) { std::memcpy(p, &v, sizeof v); }
// First k (< WF) floats, the other lanes `fill`; and the store of k lanes.
// Masked loads/stores (no fault on the lanes left out): a scalar loop into a
// buffer reloaded as a vector would stall on store forwarding every time.
#if defined(NNK_ISA_AVX512)
NNK_VM_INLINE VF2 load_partf(const float* p, index_t k, float fill) {
    return (VF2)_mm512_mask_loadu_ps(_mm512_set1_ps(fill), __mmask16((1u << k) - 1u), p);
}
NNK_VM_INLINE void store_partf(float* p, VF2 v, index_t k) {
    _mm512_mask_storeu_ps(p, __mmask16((1u << k) - 1u), (__m512)v);
}
#else
NNK_VM_INLINE __m256i first_lanes_mask(index_t k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(k)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
NNK_VM_INLINE VF2 load_partf(const float* p, index_t k, float fill) {
    const __m256i m = first_lanes_mask(k);
    return (VF2)_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
NNK_VM_INLINE void store_partf(float* p, VF2 v, index_t k) { _mm256_maskstore_ps(p, first_lanes_mask(k), (__m256)v); }
#endif
// float lanes from k on set to 0 (see keep_first)
NNK_VM_INLINE VF2 keep_firstf(VF2 v, index_t k) {
    VI2 idx;
    for (int j = 0; j < WF; ++j) idx[j] = j;
    return idx < VI2{} + std::int32_t(k) ? v : VF2{};
}
NNK_VM_INLINE VF2 vabsf(VF2 x) { return (VF2)((VI2)x & 0x7fffffff); }
NNK_VM_INLINE bool any_f(VI2 m) {
#if defined(NNK_ISA_AVX512)
    return _mm512_test_epi32_mask((__m512i)m, (__m512i)m) != 0;
#else
    return !_mm256_testz_si256((__m256i)m, (__m256i)m);
#endif
}
NNK_VM_INLINE VF2 copysignf(VF2 a, VF2 s) {
    return (VF2)(((VI2)a & 0x7fffffff) | ((VI2)s & (VI2{} + (std::int32_t)0x80000000u)));
}

// min(x, c) / max(x, c) that keep a NaN x (one vminps / vmaxps: the
// instruction returns its second operand when either is NaN).
NNK_VM_INLINE VF2 min_keep_nan_f(VF2 x, float c) {
#if defined(NNK_ISA_AVX512)
    return (VF2)_mm512_min_ps(_mm512_set1_ps(c), (__m512)x);
#else
    return (VF2)_mm256_min_ps(_mm256_set1_ps(c), (__m256)x);
#endif
}
NNK_VM_INLINE VF2 max_keep_nan_f(VF2 x, float c) {
#if defined(NNK_ISA_AVX512)
    return (VF2)_mm512_max_ps(_mm512_set1_ps(c), (__m512)x);
#else
    return (VF2)_mm256_max_ps(_mm256_set1_ps(c), (__m256)x);
#endif
}

template <int N>
NNK_VM_INLINE VF2 hornerf(VF2 x, const float (&c)[N]) {
    VF2 p = splatf(c[N - 1]);
    for (int i = N - 2; i >= 0; --i) p = p * x + c[i];
    return p;
}

// exp(r) = 1 + r + r^2 Q(r) on |r| <= ln2/2: Q of degree 4 fitted by
// tools/fit_erf.py --float (relative, float32 coefficients; Horner in float:
// max rel. error 6.3e-8). kExpF is the
// whole polynomial, kExpm1QF = Q (for expm1 without cancellation).
constexpr float kExpF[7] = {1.0f, 1.0f, 4.999999106e-01f, 1.666651666e-01f, 4.166848212e-02f,
                            8.369077928e-03f, 1.381461043e-03f};
constexpr float kExpm1QF[5] = {4.999999106e-01f, 1.666651666e-01f, 4.166848212e-02f, 8.369077928e-03f,
                               1.381461043e-03f};

// x = n ln2 + r, n = rint(x log2 e) (as float), |r| <= ln2/2; ln2 in two
// parts (n 0.693359375 is exact).
NNK_VM_INLINE VF2 exp_reduce_f(VF2 x, VF2& n) {
    const float shifter = 0x1.8p23f;
    n = (x * 1.44269504088896341f + shifter) - shifter;
    VF2 r = x - n * 0.693359375f;
    return r - n * -2.12194440e-4f;
}

// y 2^n (n integral, -150 <= n <= 128), rounded once, subnormal results included.
NNK_VM_INLINE VF2 ldexp_f(VF2 y, VF2 n) {
#if defined(NNK_ISA_AVX512)
    return (VF2)_mm512_scalef_ps((__m512)y, (__m512)n);
#else  // in two halves: y 2^n1 stays normal, the second product rounds once
    VI2 ni = __builtin_convertvector(n, VI2);
    VI2 n1 = ni >> 1;
    VI2 n2 = ni - n1;
    return y * (VF2)((n1 + 127) << 23) * (VF2)((n2 + 127) << 23);
#endif
}

// exp(x + lo) for x in [-170, 89] (no clamps: for arguments known to be in
// range) and |lo| <= ulp(x) (the low part of an exactly split argument, added
// to the reduced argument; 0 if none).
NNK_VM_INLINE VF2 exp_core_f(VF2 x, VF2 lo = VF2{}) {
    VF2 n;
    VF2 r = exp_reduce_f(x, n) + lo;
    return ldexp_f(hornerf(r, kExpF), n);
}

// exp(x) for x <= 89 (no overflow clamp: for arguments known not to exceed
// it, e.g. x <= 0). Below -104 the result is 0; NaN passes.
NNK_VM_INLINE VF2 exp_lo_f(VF2 x) { return exp_core_f(max_keep_nan_f(x, -104.0f)); }

// exp(x) for any x (inf beyond 88.72, 0 below -103.9, NaN passes).
NNK_VM_INLINE VF2 exp_f(VF2 x) { return exp_lo_f(min_keep_nan_f(x, 89.0f)); }

// exp(x) - 1 for x <= 0 (or NaN), without cancellation near 0, and 1 + exp(x)
// in `one_plus_ex`, each rounded once: with x = n ln2 + r,
// expm1(x) = 2^n expm1(r) + (2^n - 1) and 1 + exp(x) = 2^n expm1(r) + (2^n + 1).
NNK_VM_INLINE VF2 expm1_nonpos_f(VF2 x, VF2& one_plus_ex) {
    x = max_keep_nan_f(x, -104.0f);
    VF2 n;
    VF2 r = exp_reduce_f(x, n);
    VF2 pm = r + (r * r) * hornerf(r, kExpm1QF);  // expm1(r)
    VF2 s = ldexp_f(splatf(1.0f), n);             // 2^n (0 for n = -150)
    one_plus_ex = pm * s + (s + 1.0f);
    return pm * s + (s - 1.0f);
}

// 1 / d, correctly rounded (vdivps). Measured on Sapphire Rapids: as fast in
// these kernels as a 14-bit rcp14 estimate plus a Newton step (the division
// unit works beside the FMA ports), and one instruction instead of three.
NNK_VM_INLINE VF2 recip_f(VF2 d) { return 1.0f / d; }

// expm1: Taylor series for |x| < 1 (no cancellation), exp(x) - 1 beyond
NNK_VM_INLINE VF2 expm1_f(VF2 x) {
    VF2 p = splatf(1.0f / 479001600);
    p = p * x + 1.0f / 39916800;
    p = p * x + 1.0f / 3628800;
    p = p * x + 1.0f / 362880;
    p = p * x + 1.0f / 40320;
    p = p * x + 1.0f / 5040;
    p = p * x + 1.0f / 720;
    p = p * x + 1.0f / 120;
    p = p * x + 1.0f / 24;
    p = p * x + 1.0f / 6;
    p = p * x + 0.5f;
    VF2 small = x + (x * x) * p;
    small = vabsf(x) < 0x1p-24f ? x : small;  // keeps -0.0
    return vabsf(x) < 1.0f ? small : exp_f(x) - 1.0f;
}

// log: x = 2^k m, m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m-1)/(m+1)
NNK_VM_INLINE VF2 log_f(VF2 x) {
    VI2 tiny = x < 0x1p-126f;
    VF2 xs = tiny ? x * 0x1p23f : x;
    VF2 kadj = tiny ? splatf(-23.0f) : splatf(0.0f);
    VI2 bits = (VI2)xs;
    VI2 e = ((bits >> 23) & 0xff) - 127;
    VF2 m = (VF2)((bits & 0x007fffff) | 0x3f800000);
    VI2 big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    VF2 k = __builtin_convertvector(e, VF2) + kadj + (big ? splatf(1.0f) : splatf(0.0f));
    VF2 f = m - 1.0f;  // log(1 + f) = f - (hfsq - s (hfsq + R)), s = f / (2 + f) (fdlibm's form)
    VF2 sv = f / (m + 1.0f);
    VF2 s2 = sv * sv;
    VF2 R = splatf(2.0f / 11);
    R = R * s2 + 2.0f / 9;
    R = R * s2 + 2.0f / 7;
    R = R * s2 + 2.0f / 5;
    R = R * s2 + 2.0f / 3;
    R = R * s2;
    VF2 hfsq = 0.5f * f * f;
    VF2 logm = f - (hfsq - sv * (hfsq + R));
    VF2 r = k * 0.693359375f + (logm + k * -2.12194440e-4f);
    r = x == 0.0f ? splatf(-INFINITY) : r;
    r = x < 0.0f ? splatf(NAN) : r;
    r = x == INFINITY ? x : r;
    r = x != x ? x : r;
    return r;
}

NNK_VM_INLINE VF2 log1p_f(VF2 y) {
    VF2 u = 1.0f + y;
    VF2 r = log_f(u) - ((u - 1.0f) - y) / u;
    VI2 plain = (u == 0.0f) | (u == INFINITY) | (y != y);
    r = plain ? log_f(u) : r;
    return vabsf(y) < 0x1p-25f ? y : r;
}

// tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|) in [0, 1]: one path
// for every x. The numerator is -expm1(-2|x|) (no cancellation near 0), the
// denominator is in [1, 2], one correctly rounded division (a reciprocal
// times the numerator would round twice: 2.1e-7). Nothing overflows,
// |x| = inf gives e = 0, tanh = +-1; NaN passes; -0.0 keeps its sign.
NNK_VM_INLINE VF2 tanh_f(VF2 x) {
    VF2 den;
    VF2 num = expm1_nonpos_f(-2.0f * vabsf(x), den);  // -(1 - e), 1 + e
    return copysignf(num / den, x);
}

// tanh'(x) = 1 - tanh(x)^2 = 4 e / (1 + e)^2, e = exp(-2|x|) (no cancellation
// for large |x|, exactly 0 once e underflows).
NNK_VM_INLINE VF2 tanh_grad_f(VF2 x) {
    VF2 e = exp_lo_f(-2.0f * vabsf(x));
    VF2 r = recip_f(1.0f + e);
    return (4.0f * e) * (r * r);
}

// erf / erfc on float lanes (float32 gelu), one branch-free path for erfc:
//   erfc(a) = exp(-a^2) t P(t - 1/2),  t = 1 / (1 + p a),  p = 0.4375, a >= 0,
// P of degree 9 fitted (relative, float32 coefficients) to erfc(a) e^(a^2) / t
// for a in [0, 10.3] by tools/fit_erf.py --float (fit error 9e-9, float32
// Horner ~1.1e-7); exp(-a^2) uses the exact split a^2 = hi + lo (FMA).
// erf(x) for |x| < 1: x Q(x^2) (degree 6, kErfSmallF); 1 - erfc(|x|) beyond.
// Measured max rel. error vs float64: erf_f 1.7e-7, erfc_f 3.6e-7 (see above).
constexpr float kErfSmallF[7] = {1.128379165881503f, -0.37612626903580354f, 0.1128359746348709f, -0.026854328796041486f, 0.0051893119426434375f, -0.0008018854992354304f, 7.882497108300863e-05f};
constexpr float kErfcP = 0.4375f;
constexpr float kErfcScaledF[10] = {4.559346735e-01f, 6.651412845e-01f, 6.718121171e-01f, 3.885714114e-01f,
                                    1.209004316e-03f, -1.644378752e-01f, -3.986299038e-02f, 8.442737907e-02f,
                                    1.893838122e-02f, -3.961429000e-02f};

// a b - c with one rounding (the low part of a product: fmsub(a, a, a * a))
NNK_VM_INLINE VF2 fmsub_f(VF2 a, VF2 b, VF2 c) {
#if defined(NNK_ISA_AVX512)
    return (VF2)_mm512_fmsub_ps((__m512)a, (__m512)b, (__m512)c);
#else
    return (VF2)_mm256_fmsub_ps((__m256)a, (__m256)b, (__m256)c);
#endif
}

// erfc(a) e^(a^2) for 0 <= a <= 10.3 (z = a / sqrt 2 for gelu: pass t directly)
NNK_VM_INLINE VF2 erfc_scaled_t_f(VF2 t) { return t * hornerf(t - 0.5f, kErfcScaledF); }

// erfc(a) for a >= 0 (+inf gives 0, NaN gives NaN). Beyond 10.05 erfc
// underflows: a is capped at 10.3, where exp(-a^2) is already 0.
NNK_VM_INLINE VF2 erfc_pos_f(VF2 a) {
    a = min_keep_nan_f(a, 10.3f);
    VF2 hi = a * a;
    VF2 lo = fmsub_f(a, a, hi);
    VF2 t = recip_f(1.0f + kErfcP * a);
    return exp_core_f(-hi, -lo) * erfc_scaled_t_f(t);
}

NNK_VM_INLINE VF2 erf_f(VF2 x) {
    VF2 a = vabsf(x);
    VF2 r = x * hornerf(x * x, kErfSmallF);
    VI2 tail = (a >= 1.0f) | (a != a);
    if (any_f(tail)) r = tail ? copysignf(1.0f - erfc_pos_f(a), x) : r;
    return r;
}

NNK_VM_INLINE VF2 erfc_f(VF2 x) {
    VF2 e = erfc_pos_f(vabsf(x));
    return x < 0.0f ? 2.0f - e : e;
}

// Standard normal CDF Phi(x) = erfc(-x / sqrt 2) / 2 for float32 gelu, and
// pdf = exp(-x^2 / 2) (one exp for both). x^2 / 2 is formed from the exact
// split of x^2, not from (x / sqrt 2)^2: no error growing with x^2. |x| is
// capped at 14.5, where exp(-x^2/2) is exactly 0 (so gelu'(+-inf) = NaN as
// in PyTorch); NaN passes.
NNK_VM_INLINE VF2 normal_cdf_f(VF2 x, VF2& pdf_unscaled) {
    constexpr float kInvSqrt2F = 0.70710678118654752440f;
    VF2 a = min_keep_nan_f(vabsf(x), 14.5f);
    VF2 hi = a * a;
    VF2 lo = fmsub_f(a, a, hi);
    VF2 e = exp_core_f(-0.5f * hi, -0.5f * lo);  // exp(-x^2 / 2)
    // t / 2 = 1 / (2 + 2 p a / sqrt 2): the 1/2 of Phi = erfc / 2 for free
    VF2 half_t = recip_f(2.0f + (2.0f * kErfcP * kInvSqrt2F) * a);
    VF2 q = e * (half_t * hornerf(2.0f * half_t - 0.5f, kErfcScaledF));  // Phi(-|x|)
    pdf_unscaled = e;
    return x < 0.0f ? q : 1.0f - q;
}

// e = exp(-|x|) never overflows: sigmoid = 1/(1+e) for x >= 0, e/(1+e)
// below (tiny results stay accurate); NaN gives NaN (through e). Sets
// `grad` = sigmoid'(x) = s (1 - s) = e / (1 + e)^2 (no cancellation for large x).
NNK_VM_INLINE VF2 sigmoid_grad_f(VF2 x, VF2& grad) {
    VF2 e = exp_lo_f(-vabsf(x));  // -|x|: one OR of the sign bit
    VF2 r = recip_f(1.0f + e);
    VF2 er = e * r;
    grad = er * r;
    return x < 0.0f ? er : r;
}

NNK_VM_INLINE VF2 sigmoid_f(VF2 x) {
    VF2 grad;
    return sigmoid_grad_f(x, grad);
}

// log1p(y) for y in [0, 1]: 2 atanh(s), s = y / (2 + y) <= 1/3, series to s^15
NNK_VM_INLINE VF2 log1p_unit_f(VF2 y) {
    VF2 sv = y / (2.0f + y);
    VF2 s2 = sv * sv;
    VF2 p = splatf(1.0f / 15);
    p = p * s2 + 1.0f / 13;
    p = p * s2 + 1.0f / 11;
    p = p * s2 + 1.0f / 9;
    p = p * s2 + 1.0f / 7;
    p = p * s2 + 1.0f / 5;
    p = p * s2 + 1.0f / 3;
    return 2.0f * sv + 2.0f * sv * s2 * p;
}

// log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))
NNK_VM_INLINE VF2 softplus_f(VF2 x) {
    VF2 m = x > 0.0f ? x : splatf(0.0f);
    return x != x ? x : m + log1p_unit_f(exp_lo_f(-vabsf(x)));
}
#endif

}  // namespace vm
}  // namespace NNK_NS
}  // namespace nnk
