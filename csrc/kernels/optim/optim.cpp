// Fused optimizer updates (contract in nnk/optim.h), compiled once per ISA.
//
// Every configuration flag is a template parameter, so each inner loop is a
// branch-free elementwise loop the compiler vectorises (omp simd) for the
// variant's ISA. The driver splits [0, n) into one contiguous chunk per thread,
// and each chunk runs with denormals flushed (nnk/fpenv.h: decayed state would
// otherwise cost a microcode assist per element, 12x slower).
#include <omp.h>

#include <cmath>

#include "nnk/fpenv.h"
#include "nnk/optim.h"
#include "nnk/parallel.h"

namespace nnk {
namespace NNK_NS {
namespace {

// Elementwise updates cost ~10-20 flops and ~20 bytes per element: below this
// many elements a fork/join costs more than the second core saves.
constexpr index_t kOptimMinPerThread = 1 << 15;


// torch.lerp(start, end, w) with w given as (w, 1 - w, |w| < 0.5)
template <class T>
inline T lerp(T start, T end, T w, T one_minus_w, bool small) {
    return small ? start + w * (end - start) : end - (end - start) * one_minus_w;
}

// NaN-propagating max (torch.maximum)
template <class T>
inline T nan_max(T a, T b) {
    return (a != a || a > b) ? a : b;
}

// ---- SGD -------------------------------------------------------------------
template <class T, bool MAXIMIZE, bool WD, bool MOM, bool FIRST, bool NESTEROV>
void sgd_range(const SgdArgs<T>& a, index_t lo, index_t hi) {
    const T neg_lr = T(-a.lr), wd = T(a.weight_decay), mom = T(a.momentum);
    const T one_m_damp = T(1.0 - a.dampening);
    T* __restrict p = a.param;
    T* __restrict buf = a.momentum_buf;
    const T* __restrict grad = a.grad;
#pragma omp simd
    for (index_t i = lo; i < hi; ++i) {
        T g = MAXIMIZE ? -grad[i] : grad[i];
        if (WD) g = g + wd * p[i];
        if (MOM) {
            const T b = FIRST ? g : buf[i] * mom + one_m_damp * g;
            buf[i] = b;
            g = NESTEROV ? g + mom * b : b;
        }
        p[i] = p[i] + neg_lr * g;
    }
}

template <class T, bool MAXIMIZE, bool WD>
void sgd_pick(const SgdArgs<T>& a, index_t lo, index_t hi) {
    if (a.momentum == 0.0) return sgd_range<T, MAXIMIZE, WD, false, false, false>(a, lo, hi);
    if (a.first_step)
        return a.nesterov ? sgd_range<T, MAXIMIZE, WD, true, true, true>(a, lo, hi)
                          : sgd_range<T, MAXIMIZE, WD, true, true, false>(a, lo, hi);
    return a.nesterov ? sgd_range<T, MAXIMIZE, WD, true, false, true>(a, lo, hi)
                      : sgd_range<T, MAXIMIZE, WD, true, false, false>(a, lo, hi);
}

template <class T>
void sgd(const SgdArgs<T>& a) {
    parallel_elems(a.n, kOptimMinPerThread, [&](index_t lo, index_t hi) {
        FlushDenormals ftz;
        const bool wd = a.weight_decay != 0.0;
        if (a.maximize)
            wd ? sgd_pick<T, true, true>(a, lo, hi) : sgd_pick<T, true, false>(a, lo, hi);
        else
            wd ? sgd_pick<T, false, true>(a, lo, hi) : sgd_pick<T, false, false>(a, lo, hi);
    });
}

// ---- Adam / AdamW ------------------------------------------------------------
template <class T>
struct AdamScalars {
    T b1w, b1w_c;  // lerp weight 1 - beta1 and its complement beta1
    bool b1_small;
    T b2, one_m_b2, inv_bc2_sqrt, eps, wd, decay_mul, neg_step_size;
};

// WD: 0 none, 1 L2 (Adam), 2 decoupled (AdamW)
template <class T, bool MAXIMIZE, int WD, bool AMSGRAD, bool B1_SMALL>
void adam_range(const AdamArgs<T>& a, const AdamScalars<T>& s, index_t lo, index_t hi) {
    T* __restrict p = a.param;
    T* __restrict m = a.exp_avg;
    T* __restrict v = a.exp_avg_sq;
    T* __restrict vmax = a.max_exp_avg_sq;
    const T* __restrict grad = a.grad;
#pragma omp simd
    for (index_t i = lo; i < hi; ++i) {
        T g = MAXIMIZE ? -grad[i] : grad[i];
        T pi = p[i];
        if (WD == 2) pi = pi * s.decay_mul;
        if (WD == 1) g = g + s.wd * pi;
        const T mi = lerp(m[i], g, s.b1w, s.b1w_c, B1_SMALL);
        m[i] = mi;
        T vi = v[i] * s.b2 + s.one_m_b2 * g * g;
        v[i] = vi;
        if (AMSGRAD) {
            vi = nan_max(vmax[i], vi);
            vmax[i] = vi;
        }
        // PyTorch divides sqrt(v) by sqrt(1 - b2^t); a multiplication by the
        // reciprocal (<= 1 ulp apart) leaves the divider to the one division
        // below: measured 169 -> 149 us for 243k floats, 47 -> 34 us for 60k.
        const T denom = std::sqrt(vi) * s.inv_bc2_sqrt + s.eps;
        p[i] = pi + s.neg_step_size * mi / denom;
    }
}

template <class T, bool MAXIMIZE, int WD>
void adam_pick(const AdamArgs<T>& a, const AdamScalars<T>& s, index_t lo, index_t hi) {
    if (a.amsgrad)
        s.b1_small ? adam_range<T, MAXIMIZE, WD, true, true>(a, s, lo, hi)
                   : adam_range<T, MAXIMIZE, WD, true, false>(a, s, lo, hi);
    else
        s.b1_small ? adam_range<T, MAXIMIZE, WD, false, true>(a, s, lo, hi)
                   : adam_range<T, MAXIMIZE, WD, false, false>(a, s, lo, hi);
}

template <class T>
void adam(const AdamArgs<T>& a) {
    AdamScalars<T> s;
    const double w1 = 1.0 - a.beta1;
    s.b1_small = std::fabs(w1) < 0.5;
    s.b1w = T(w1);
    s.b1w_c = T(1.0 - w1);
    s.b2 = T(a.beta2);
    s.one_m_b2 = T(1.0 - a.beta2);
    const double bc1 = 1.0 - std::pow(a.beta1, double(a.step));
    const double bc2 = 1.0 - std::pow(a.beta2, double(a.step));
    s.inv_bc2_sqrt = T(1.0 / std::sqrt(bc2));
    s.neg_step_size = T(-(a.lr / bc1));
    s.eps = T(a.eps);
    s.wd = T(a.weight_decay);
    s.decay_mul = T(1.0 - a.lr * a.weight_decay);
    const int wd = a.weight_decay == 0.0 ? 0 : (a.decoupled ? 2 : 1);
    parallel_elems(a.n, kOptimMinPerThread, [&](index_t lo, index_t hi) {
        FlushDenormals ftz;
        if (a.maximize) {
            if (wd == 0) adam_pick<T, true, 0>(a, s, lo, hi);
            else if (wd == 1) adam_pick<T, true, 1>(a, s, lo, hi);
            else adam_pick<T, true, 2>(a, s, lo, hi);
        } else {
            if (wd == 0) adam_pick<T, false, 0>(a, s, lo, hi);
            else if (wd == 1) adam_pick<T, false, 1>(a, s, lo, hi);
            else adam_pick<T, false, 2>(a, s, lo, hi);
        }
    });
}

// ---- RMSprop -----------------------------------------------------------------
template <class T, bool MAXIMIZE, bool WD, bool CENTERED, bool MOM>
void rmsprop_range(const RmspropArgs<T>& a, index_t lo, index_t hi) {
    const T alpha = T(a.alpha), one_m_alpha = T(1.0 - a.alpha), eps = T(a.eps);
    const T wd = T(a.weight_decay), mom = T(a.momentum), neg_lr = T(-a.lr);
    const bool aw_small = std::fabs(1.0 - a.alpha) < 0.5;
    const T aw = T(1.0 - a.alpha), aw_c = T(1.0 - (1.0 - a.alpha));
    T* __restrict p = a.param;
    T* __restrict sq = a.square_avg;
    T* __restrict buf = a.momentum_buf;
    T* __restrict gavg = a.grad_avg;
    const T* __restrict grad = a.grad;
#pragma omp simd
    for (index_t i = lo; i < hi; ++i) {
        T g = MAXIMIZE ? -grad[i] : grad[i];
        const T pi = p[i];
        if (WD) g = g + wd * pi;
        const T s = sq[i] * alpha + one_m_alpha * g * g;
        sq[i] = s;
        T avg;
        if (CENTERED) {
            const T ga = lerp(gavg[i], g, aw, aw_c, aw_small);
            gavg[i] = ga;
            avg = std::sqrt(s - ga * ga) + eps;
        } else {
            avg = std::sqrt(s) + eps;
        }
        if (MOM) {
            const T b = buf[i] * mom + g / avg;
            buf[i] = b;
            p[i] = pi + neg_lr * b;
        } else {
            p[i] = pi + neg_lr * g / avg;
        }
    }
}

template <class T, bool MAXIMIZE, bool WD>
void rmsprop_pick(const RmspropArgs<T>& a, index_t lo, index_t hi) {
    const bool mom = a.momentum > 0.0;
    if (a.centered)
        mom ? rmsprop_range<T, MAXIMIZE, WD, true, true>(a, lo, hi)
            : rmsprop_range<T, MAXIMIZE, WD, true, false>(a, lo, hi);
    else
        mom ? rmsprop_range<T, MAXIMIZE, WD, false, true>(a, lo, hi)
            : rmsprop_range<T, MAXIMIZE, WD, false, false>(a, lo, hi);
}

template <class T>
void rmsprop(const RmspropArgs<T>& a) {
    parallel_elems(a.n, kOptimMinPerThread, [&](index_t lo, index_t hi) {
        FlushDenormals ftz;
        const bool wd = a.weight_decay != 0.0;
        if (a.maximize)
            wd ? rmsprop_pick<T, true, true>(a, lo, hi) : rmsprop_pick<T, true, false>(a, lo, hi);
        else
            wd ? rmsprop_pick<T, false, true>(a, lo, hi) : rmsprop_pick<T, false, false>(a, lo, hi);
    });
}

// ---- Adagrad -----------------------------------------------------------------
template <class T, bool MAXIMIZE, bool WD>
void adagrad_range(const AdagradArgs<T>& a, T neg_clr, index_t lo, index_t hi) {
    const T wd = T(a.weight_decay), eps = T(a.eps);
    T* __restrict p = a.param;
    T* __restrict ssum = a.state_sum;
    const T* __restrict grad = a.grad;
#pragma omp simd
    for (index_t i = lo; i < hi; ++i) {
        T g = MAXIMIZE ? -grad[i] : grad[i];
        const T pi = p[i];
        if (WD) g = g + wd * pi;
        const T s = ssum[i] + g * g;
        ssum[i] = s;
        p[i] = pi + neg_clr * g / (std::sqrt(s) + eps);
    }
}

template <class T>
void adagrad(const AdagradArgs<T>& a) {
    const T neg_clr = T(-(a.lr / (1.0 + double(a.step - 1) * a.lr_decay)));
    parallel_elems(a.n, kOptimMinPerThread, [&](index_t lo, index_t hi) {
        FlushDenormals ftz;
        const bool wd = a.weight_decay != 0.0;
        if (a.maximize)
            wd ? adagrad_range<T, true, true>(a, neg_clr, lo, hi)
               : adagrad_range<T, true, false>(a, neg_clr, lo, hi);
        else
            wd ? adagrad_range<T, false, true>(a, neg_clr, lo, hi)
               : adagrad_range<T, false, false>(a, neg_clr, lo, hi);
    });
}

void sgd_f32(const SgdArgs<float>& a) { sgd<float>(a); }
void sgd_f64(const SgdArgs<double>& a) { sgd<double>(a); }
void adam_f32(const AdamArgs<float>& a) { adam<float>(a); }
void adam_f64(const AdamArgs<double>& a) { adam<double>(a); }
void rmsprop_f32(const RmspropArgs<float>& a) { rmsprop<float>(a); }
void rmsprop_f64(const RmspropArgs<double>& a) { rmsprop<double>(a); }
void adagrad_f32(const AdagradArgs<float>& a) { adagrad<float>(a); }
void adagrad_f64(const AdagradArgs<double>& a) { adagrad<double>(a); }

}  // namespace

const OptimKernels& optim_kernels() {
    static const OptimKernels table{&sgd_f32,     &sgd_f64,     &adam_f32,    &adam_f64,
                                    &rmsprop_f32, &rmsprop_f64, &adagrad_f32, &adagrad_f64};
    return table;
}

}  // namespace NNK_NS
}  // namespace nnk
