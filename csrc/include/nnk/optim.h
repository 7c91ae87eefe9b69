// Optimizer updates: one fused, in-place pass per step (PyTorch's rules).
//
// Each kernel reads param, grad and the optimizer state once and writes the
// new param and state once: no temporaries. The arrays are flat vectors of n
// elements (usually a whole parameter group's flat buffer, so one call updates
// a model). Arithmetic is in T, in the order of PyTorch's single-tensor CPU
// implementation; hyperparameters arrive as double and are rounded to T once.
// Step-dependent scalars (bias corrections, decayed lr) are computed in double.
//
//   sgd     : g = ±grad [+ wd*p]; buf = first ? g : mom*buf + (1-damp)*g;
//             g = nesterov ? g + mom*buf : buf;  p -= lr*g
//   adam    : g = ±grad; p *= 1-lr*wd (decoupled) | g += wd*p;
//             m = lerp(m, g, 1-b1); v = b2*v + (1-b2)*g*g; [vmax = max(vmax, v)]
//             p -= lr/(1-b1^t) * m / (sqrt(v or vmax)*(1/sqrt(1-b2^t)) + eps)
//             (PyTorch divides by sqrt(1-b2^t): <= 1 ulp apart, one division less)
//   rmsprop : g = ±grad [+ wd*p]; s = a*s + (1-a)*g*g;
//             avg = sqrt(s [- ga*ga, ga = lerp(ga, g, 1-a)]) + eps;
//             mom > 0 ? (buf = mom*buf + g/avg; p -= lr*buf) : p -= lr*g/avg
//   adagrad : g = ±grad [+ wd*p]; clr = lr/(1+(t-1)*lr_decay); s += g*g;
//             p -= clr * g / (sqrt(s) + eps)
//
// Pointers that a configuration does not use (momentum_buf without momentum,
// max_exp_avg_sq without amsgrad, grad_avg without centered) may be null.
// Threads split the vector into disjoint contiguous chunks: results do not
// depend on the thread count.
#pragma once

#include "nnk/common.h"

namespace nnk {

template <class T>
struct SgdArgs {
    T* param;
    T* momentum_buf;  // null when momentum == 0
    const T* grad;
    index_t n;
    double lr, momentum, dampening, weight_decay;
    bool nesterov, maximize, first_step;
};

template <class T>
struct AdamArgs {
    T* param;
    T* exp_avg;
    T* exp_avg_sq;
    T* max_exp_avg_sq;  // null unless amsgrad
    const T* grad;
    index_t n;
    long long step;  // >= 1
    double lr, beta1, beta2, eps, weight_decay;
    bool amsgrad, maximize, decoupled;
};

template <class T>
struct RmspropArgs {
    T* param;
    T* square_avg;
    T* momentum_buf;  // null unless momentum > 0
    T* grad_avg;      // null unless centered
    const T* grad;
    index_t n;
    double lr, alpha, eps, weight_decay, momentum;
    bool centered, maximize;
};

template <class T>
struct AdagradArgs {
    T* param;
    T* state_sum;
    const T* grad;
    index_t n;
    long long step;  // >= 1
    double lr, lr_decay, weight_decay, eps;
    bool maximize;
};

struct OptimKernels {
    void (*sgd_f32)(const SgdArgs<float>&);
    void (*sgd_f64)(const SgdArgs<double>&);
    void (*adam_f32)(const AdamArgs<float>&);
    void (*adam_f64)(const AdamArgs<double>&);
    void (*rmsprop_f32)(const RmspropArgs<float>&);
    void (*rmsprop_f64)(const RmspropArgs<double>&);
    void (*adagrad_f32)(const AdagradArgs<float>&);
    void (*adagrad_f64)(const AdagradArgs<double>&);
};

NNK_DECLARE_PER_ISA(const OptimKernels& optim_kernels())

#ifndef NNK_NS  // not inside a per-ISA translation unit
inline const OptimKernels& optim() { return NNK_DISPATCH(optim_kernels); }
#endif

}  // namespace nnk
