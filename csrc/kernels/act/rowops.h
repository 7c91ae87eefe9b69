// Row reductions and row maps over float64 lanes, shared by softmax and the
// cross-entropy kernels. Lane sums are reduced in a fixed order.
#pragma once

#include <cmath>

#include "nnk/vmath.h"

namespace nnk {
namespace NNK_NS {
namespace {

using vm::V;
using vm::W;

// max of x[0:c], NaN if any element is NaN
template <class T>
inline double row_max(const T* x, index_t c) {
    V m = vm::splat(-INFINITY);
    index_t j = 0;
    for (; j + W <= c; j += W) m = vm::vmax_nan(m, vm::load(x + j));
    if (j < c) m = vm::vmax_nan(m, vm::load_part(x + j, c - j, -INFINITY));
    return vm::hmax_nan(m);
}

// e[j] := exp(x[j] - m) (e may be null: not stored); returns sum_j e[j]
template <class T>
inline double row_exp_sum(T* e, const T* x, index_t c, double m) {
    V s = vm::splat(0.0);
    index_t j = 0;
    for (; j + W <= c; j += W) {
        V v = vm::exp_t<T>(vm::load(x + j) - m);
        if (e) vm::store(e + j, v);
        s += v;
    }
    if (j < c) {
        V v = vm::keep_first(vm::exp_t<T>(vm::load_part(x + j, c - j, m) - m), c - j);
        if (e) vm::store_part(e + j, v, c - j);
        s += v;
    }
    return vm::hsum(s);
}

#if NNK_VM_VECTOR
// float32 rows on native float lanes (twice the lanes, exp_f); sums in float64.
inline double row_max(const float* x, index_t c) {
    using vm::VF2;
    VF2 m = vm::splatf(-INFINITY);
    index_t j = 0;
    for (; j + vm::WF <= c; j += vm::WF) {
        VF2 v = vm::loadf(x + j);
        m = (m > v) | (m != m) ? m : v;
    }
    if (j < c) {
        VF2 v = vm::load_partf(x + j, c - j, -INFINITY);
        m = (m > v) | (m != m) ? m : v;
    }
    float b[vm::WF];
    vm::storef(b, m);
    float r = b[0];
    for (int k = 1; k < vm::WF; ++k) r = (b[k] > r || b[k] != b[k]) ? b[k] : r;
    return r;
}

// the two halves of a float register as float64 lanes
inline void widen(vm::VF2 v, V& lo, V& hi) {
#if defined(NNK_ISA_AVX512)
    lo = __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7), V);
    hi = __builtin_convertvector(__builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15), V);
#else
    lo = __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), V);
    hi = __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), V);
#endif
}

inline double row_exp_sum(float* e, const float* x, index_t c, double m) {
    using vm::VF2;
    const VF2 mf = vm::splatf(float(m));  // m is one of the x: exact in float
    V s0 = vm::splat(0.0), s1 = vm::splat(0.0);
    index_t j = 0;
    for (; j + vm::WF <= c; j += vm::WF) {
        VF2 v = vm::exp_f(vm::loadf(x + j) - mf);
        if (e) vm::storef(e + j, v);
        V lo, hi;
        widen(v, lo, hi);
        s0 += lo;
        s1 += hi;
    }
    if (j < c) {
        VF2 v = vm::keep_firstf(vm::exp_f(vm::load_partf(x + j, c - j, float(m)) - mf), c - j);
        if (e) vm::store_partf(e + j, v, c - j);
        V lo, hi;
        widen(v, lo, hi);
        s0 += lo;
        s1 += hi;
    }
    return vm::hsum(s0) + vm::hsum(s1);
}
#endif

// ---- float32 rows in one pass over memory (online max / exp-sum) ----------------
// The row is cut into chunks of kChunk floats (2 KiB). Chunk k is read once
// for its max (from memory; the next chunk is prefetched meanwhile) and once
// more from L1 for e = exp(x - M_k), where M_k is the running max up to and
// including chunk k; the running sum is rescaled by exp(M_old - M_new) when
// the max grows. The caller's gradient pass multiplies chunk k by
// exp(M_k - M) (M = max of the row), so e ends up exp(x - M) everywhere.
#if NNK_VM_VECTOR
constexpr index_t kChunk = 512;
constexpr index_t kMaxChunks = 256;  // rows up to 131072 classes (longer rows: the two-pass path)

// plain lane max (vmaxps: a NaN lane may be dropped; callers see NaN through the exp sum)
inline vm::VF2 vmax_f(vm::VF2 a, vm::VF2 b) {
#if defined(NNK_ISA_AVX512)
    return (vm::VF2)_mm512_max_ps((__m512)a, (__m512)b);
#else
    return (vm::VF2)_mm256_max_ps((__m256)a, (__m256)b);
#endif
}

inline float hmax_plain_f(vm::VF2 v) {
#if defined(NNK_ISA_AVX512)
    return _mm512_reduce_max_ps((__m512)v);
#else
    __m128 q = _mm_max_ps(_mm256_castps256_ps128((__m256)v), _mm256_extractf128_ps((__m256)v, 1));
    q = _mm_max_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_max_ss(q, _mm_movehdup_ps(q)));
#endif
}

// e[j] := exp(x[j] - shift[k]) for j in chunk k (e null: not stored); m := max x; returns
// sum_j exp(x[j] - m) (float64). NaN anywhere (or an +inf logit) gives a NaN
// sum; a row of -inf gives m = -inf and sum 0 (the caller's NaN).
inline double row_exp_sum_online(float* e, float* shift, const float* x, index_t c, double& m) {
    using vm::VF2;
    using vm::WF;
    float M = -INFINITY;
    double S = 0.0;
    index_t k = 0;
    for (index_t j0 = 0; j0 < c; j0 += kChunk, ++k) {
        const index_t j1 = j0 + kChunk < c ? j0 + kChunk : c;
        VF2 mv = vm::splatf(-INFINITY);
        index_t j = j0;
        for (; j + WF <= j1; j += WF) mv = vmax_f(mv, vm::loadf(x + j));
        if (j < j1) mv = vmax_f(mv, vm::load_partf(x + j, j1 - j, -INFINITY));
        const float mk = hmax_plain_f(mv);
        if (mk > M) {  // false for NaN: M is never NaN
            if (S != 0.0) S *= std::exp(double(M) - double(mk));  // (S = 0 while M = -inf)
            M = mk;
        }
        shift[k] = M;
        // while every element so far is -inf, e = exp(-inf - 0) = 0 (not NaN)
        const VF2 mvec = vm::splatf(M == -INFINITY ? 0.0f : M);
        VF2 acc = vm::splatf(0.0f);  // in float over one chunk (32 terms per lane), then float64
        for (j = j0; j + WF <= j1; j += WF) {
            __builtin_prefetch(x + j + kChunk, 0, 3);
            if (e) __builtin_prefetch(e + j + kChunk, 1, 3);
            VF2 v = vm::exp_lo_f(vm::loadf(x + j) - mvec);
            if (e) vm::storef(e + j, v);
            acc += v;
        }
        if (j < j1) {
            VF2 v = vm::exp_lo_f(vm::load_partf(x + j, j1 - j, mvec[0]) - mvec);
            v = vm::keep_firstf(v, j1 - j);
            if (e) vm::store_partf(e + j, v, j1 - j);
            acc += v;
        }
        V lo, hi;
        widen(acc, lo, hi);
        S += vm::hsum(lo) + vm::hsum(hi);
    }
    m = M;
    return S;
}
#endif

// y[j] := y[j] * a - b for j < c (the in-place gradient / normalisation pass)
template <class T>
inline void row_scale(T* y, index_t c, double a, double b) {
    index_t j = 0;
#if NNK_VM_VECTOR
    if constexpr (sizeof(T) == 4) {
        const float af = float(a), bf = float(b);
        for (; j + vm::WF <= c; j += vm::WF) vm::storef(y + j, vm::loadf(y + j) * af - bf);
        if (j < c) vm::store_partf(y + j, vm::load_partf(y + j, c - j, 0.0f) * af - bf, c - j);
        return;
    }
#endif
    for (; j + W <= c; j += W) vm::store(y + j, vm::load(y + j) * a - b);
    if (j < c) vm::store_part(y + j, vm::load_part(y + j, c - j, 0.0) * a - b, c - j);
}

// sum_j a[j] * b[j] (b null: sum_j a[j])
template <class T>
inline double row_dot(const T* a, const T* b, index_t c) {
    V s = vm::splat(0.0);
    index_t j = 0;
    for (; j + W <= c; j += W) s += b ? vm::load(a + j) * vm::load(b + j) : vm::load(a + j);
    if (j < c) s += b ? vm::load_part(a + j, c - j, 0.0) * vm::load_part(b + j, c - j, 0.0)
                      : vm::load_part(a + j, c - j, 0.0);
    return vm::hsum(s);
}

}  // namespace
}  // namespace NNK_NS
}  // namespace nnk
