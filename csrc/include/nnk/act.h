// Activations and softmax: the contract shared by the kernels and the bindings.
//
// Elementwise (flat arrays of n elements, C-contiguous, PyTorch semantics):
//   forward:  out[i]    := act(x[i])
//   backward: grad_x[i] := grad_out[i] * act'(x[i])      (derivative w.r.t. x)
//   p0/p1: leaky_relu negative_slope; elu alpha; softplus beta, threshold.
// Softmax over rows of a C-contiguous (rows, cols) array:
//   softmax_forward:  out := exp(x - max) / sum        (log: x - max - log(sum))
//   softmax_backward: grad_x := y * (g - sum(g * y))   (log: g - exp(y) * sum(g)),
//                     y = the forward output.
// float32 kernels run on native float lanes in the AVX2 / AVX-512 variants
// (vmath.h "_f" functions, max rel. error <= 2e-7 vs float64, erfc 3.6e-7);
// float64 data, and float32 in the generic variant, use float64 lanes.
// Large inputs are split across OpenMP threads by elements / rows; results
// do not depend on the thread count.
#pragma once

#include "nnk/common.h"

namespace nnk {

enum class Act : int { relu = 0, leaky_relu, elu, sigmoid, tanh, gelu, gelu_tanh, silu, softplus };

// Elementary functions exposed for the accuracy tests (vmath.h); the "_f"
// ones are the native-float32-lane versions (float64 lanes for float64 data
// and in the generic variant).
enum class MathFn : int { exp = 0, expm1, log, log1p, tanh, erf, erfc, sigmoid,
                          exp_f, expm1_f, log_f, log1p_f, tanh_f, sigmoid_f, erf_f, erfc_f };

struct ActKernels {
    const char* name;
    void (*forward_f32)(float* out, const float* x, index_t n, Act act, double p0, double p1);
    void (*forward_f64)(double* out, const double* x, index_t n, Act act, double p0, double p1);
    void (*backward_f32)(float* grad_x, const float* grad_out, const float* x, index_t n, Act act,
                         double p0, double p1);
    void (*backward_f64)(double* grad_x, const double* grad_out, const double* x, index_t n, Act act,
                         double p0, double p1);
    void (*softmax_forward_f32)(float* out, const float* x, index_t rows, index_t cols, bool log);
    void (*softmax_forward_f64)(double* out, const double* x, index_t rows, index_t cols, bool log);
    void (*softmax_backward_f32)(float* grad_x, const float* grad_out, const float* y, index_t rows,
                                 index_t cols, bool log);
    void (*softmax_backward_f64)(double* grad_x, const double* grad_out, const double* y, index_t rows,
                                 index_t cols, bool log);
    void (*math_f32)(float* out, const float* x, index_t n, MathFn fn);
    void (*math_f64)(double* out, const double* x, index_t n, MathFn fn);
};

NNK_DECLARE_PER_ISA(const ActKernels& act_kernels())

#ifndef NNK_NS
inline const ActKernels& act() { return NNK_DISPATCH(act_kernels); }
#endif

}  // namespace nnk
