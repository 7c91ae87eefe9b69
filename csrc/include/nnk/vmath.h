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
// kernels are written once. No -ffast-math: inf and NaN behave as in libm
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

static inline V splat(double c) { return V{} + c; }

static inline V load(const double* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
static inline V load(const float* p) {
#if NNK_VM_VECTOR
    VF f;
    std::memcpy(&f, p, sizeof f);
    return __builtin_convertvector(f, V);
#else
    return static_cast<double>(*p);
#endif
}
static inline void store(double* p, V v) { std::memcpy(p, &v, sizeof v); }
static inline void store(float* p, V v) {
#if NNK_VM_VECTOR
    VF f = __builtin_convertvector(v, VF);
    std::memcpy(p, &f, sizeof f);
#else
    *p = static_cast<float>(v);
#endif
}

// First k (< W) elements, the other lanes set to `fill`.
template <class T>
static inline V load_part(const T* p, index_t k, double fill) {
    double buf[W];
    for (int j = 0; j < W; ++j) buf[j] = j < k ? static_cast<double>(p[j]) : fill;
    return load(buf);
}
template <class T>
static inline void store_part(T* p, V v, index_t k) {
    double buf[W];
    store(buf, v);
    for (index_t j = 0; j < k; ++j) p[j] = static_cast<T>(buf[j]);
}

// Sum / max of the lanes, always in the same order.
static inline double hsum(V v) {
#if NNK_VM_VECTOR
    double b[W];
    store(b, v);
    double s = 0.0;
    for (int j = 0; j < W; ++j) s += b[j];
    return s;
#else
    return v;
#endif
}
// Max that propagates NaN (any NaN lane gives NaN).
static inline V vmax_nan(V a, V b) { return (a > b) | (a != a) ? a : b; }
static inline double hmax_nan(V v) {
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
static inline bool any(VI m) {
#if NNK_VM_VECTOR
    VI z{};
    return std::memcmp(&m, &z, sizeof m) != 0;
#else
    return m;
#endif
}

static inline V vabs(V x) {
#if NNK_VM_VECTOR
    return (V)((VI)x & 0x7fffffffffffffffLL);
#else
    return std::fabs(x);
#endif
}
// |a| with the sign of s.
static inline V copysign(V a, V s) {
#if NNK_VM_VECTOR
    return (V)(((VI)a & 0x7fffffffffffffffLL) | ((VI)s & (VI{} + (std::int64_t)0x8000000000000000ULL)));
#else
    return std::copysign(a, s);
#endif
}

template <int N>
static inline V horner(V x, const double (&c)[N]) {  // c[0] + c[1] x + ... + c[N-1] x^(N-1)
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
static inline V exp(V x) {
    x = x < -800.0 ? splat(-800.0) : x;  // NaN passes both tests unchanged
    x = x > 800.0 ? splat(800.0) : x;
    const double shifter = 0x1.8p52;
    V t = x * 1.4426950408889634 + shifter;
    V n = t - shifter;
    V r = x - n * 0x1.62e42fefa39efp-1;
    r = r - n * 0x1.abc9e3b39803fp-56;
    V p = horner(r, kExpTaylor);
    VI ni = (VI)t - (VI)splat(shifter);
    VI n1 = ni >> 1;
    VI n2 = ni - n1;
    V s1 = (V)((n1 + 1023) << 52);
    V s2 = (V)((n2 + 1023) << 52);
    return p * s1 * s2;
}

static inline V expm1(V x) {
    V small = x * horner(x, kExpm1Taylor);
    V big = exp(x) - 1.0;
    return vabs(x) <= 1.0 ? small : big;
}

// ---- log, log1p ------------------------------------------------------------------

// log(m) = 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ...), s = (m-1)/(m+1), |s| <= 0.1716
constexpr double kAtanhSeries[11] = {1.0,       1.0 / 3,  1.0 / 5,  1.0 / 7,  1.0 / 9, 1.0 / 11,
                                     1.0 / 13,  1.0 / 15, 1.0 / 17, 1.0 / 19, 1.0 / 21};

static inline V log(V x) {
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

static inline V log1p(V y) {
    V u = 1.0 + y;
    V r = log(u) - ((u - 1.0) - y) / u;  // first-order correction for the rounding of 1 + y
    VI plain = (u == 0.0) | (u == INFINITY) | (y != y);
    r = plain ? log(u) : r;
    return vabs(y) < 0x1p-54 ? y : r;  // keeps -0.0 and subnormals exact
}

// ---- tanh, sigmoid ---------------------------------------------------------------

static inline V tanh(V x) {
    V a = vabs(x);
    V e1 = expm1(2.0 * a);               // accurate near 0
    V small = e1 / (e1 + 2.0);
    V big = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
    V r = a <= 0.5 ? small : big;
    return copysign(r, x);
}
#else   // generic: the C library, one double at a time
static inline V exp(V x) { return std::exp(x); }
static inline V expm1(V x) { return std::expm1(x); }
static inline V log(V x) { return std::log(x); }
static inline V log1p(V x) { return std::log1p(x); }
static inline V tanh(V x) { return std::tanh(x); }
#endif

// 1 / (1 + exp(-x)) (exp(-x) overflowing to inf gives 0, as it should)
static inline V sigmoid(V x) { return 1.0 / (1.0 + exp(-x)); }

// log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|))
static inline V softplus(V x) {
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
static inline V erfc_tail(V a) {
    V t = 1.0 / a;
    V g = horner(t, kErfcTail);
    VI far = a > 6.0;
    if (any(far)) g = far ? horner(t, kErfcFar) : g;
    return exp(-(a * a)) * g;
}

static inline V erf(V x) {
    V a = vabs(x);
    VI tail = (a >= 2.0) | (a != a);
    V r = a * horner(a * a, kErfSmall);
    if (any(tail)) r = tail ? 1.0 - erfc_tail(a) : r;
    return copysign(r, x);
}

// erfc(x) for any x (accurate in the tail, where 1 - erf(x) would cancel).
static inline V erfc(V x) {
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
static inline V erf(V x) { return std::erf(x); }
static inline V erfc(V x) { return std::erfc(x); }
#endif

}  // namespace vm
}  // namespace NNK_NS
}  // namespace nnk
