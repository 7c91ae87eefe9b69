// Elementwise activations, forward and backward (contract in nnk/act.h), and
// the elementary-function kernels used by the accuracy tests.
//
// One loop applies a lane function to a register at a time; each activation
// is a pair of small lambdas. float32 data in the AVX2 / AVX-512 variants:
// mapf1 / mapf2 on native float lanes (vmath.h "_f" functions, one path for
// every input value); float64 data (and the generic variant):
// map1 / map2 on float64 lanes, float32 widened on load and rounded on store.
#include <cmath>

#include "act_internal.h"
#include "nnk/act.h"
#include "nnk/vmath.h"
#include "nnk/parallel.h"

namespace nnk {
namespace NNK_NS {
namespace {

using vm::splat;
using vm::V;
using vm::W;

constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluC = 0.044715;

// out[i] = f(x[i]), i < n
template <class T, class F>
void map1(T* out, const T* x, index_t n, index_t cost, F f) {
    parallel_chunks(n, n * cost, 64, [&](index_t lo, index_t hi) {
        index_t i = lo;
        for (; i + W <= hi; i += W) vm::store(out + i, f(vm::load(x + i)));
        if (i < hi) vm::store_part(out + i, f(vm::load_part(x + i, hi - i, 0.0)), hi - i);
    });
}

// out[i] = f(g[i], x[i]), i < n
template <class T, class F>
void map2(T* out, const T* g, const T* x, index_t n, index_t cost, F f) {
    parallel_chunks(n, n * cost, 64, [&](index_t lo, index_t hi) {
        index_t i = lo;
        for (; i + W <= hi; i += W) vm::store(out + i, f(vm::load(g + i), vm::load(x + i)));
        if (i < hi)
            vm::store_part(out + i, f(vm::load_part(g + i, hi - i, 0.0), vm::load_part(x + i, hi - i, 0.0)),
                           hi - i);
    });
}

// Phi(x) = 0.5 (1 + erf(x / sqrt 2)) = 0.5 erfc(-x / sqrt 2): accurate for x << 0 too
inline V gelu_cdf(V x) { return 0.5 * vm::erfc(-x * kInvSqrt2); }
inline V gelu_tanh_inner(V x) { return kSqrt2OverPi * (x + kGeluC * x * x * x); }

#if NNK_VM_VECTOR
using vm::splatf;
using vm::VF2;
using vm::WF;

// Software prefetch 4 KiB ahead of the loop (one line per 16-float step):
// the math-heavy loops are compute-bound, and the hardware prefetcher alone
// does not run far enough ahead to hide the memory latency (measured at 4M
// floats: tanh 1.59 -> 1.28 ms, gelu 2.14 -> 1.76 ms; 256 floats ahead gains
// less, 4096 no more).
constexpr index_t kPrefetchAhead = 1024;
inline void prefetch_ahead(float* out, const float* a, const float* b = nullptr) {
    __builtin_prefetch(a + kPrefetchAhead, 0, 3);
    if (b) __builtin_prefetch(b + kPrefetchAhead, 0, 3);
    __builtin_prefetch(out + kPrefetchAhead, 1, 3);
}

// float32 on native float lanes: out[i] = f(x[i])
template <class F>
void mapf1(float* out, const float* x, index_t n, index_t cost, F f) {
    parallel_chunks(n, n * cost, 64, [&](index_t lo, index_t hi) {
        index_t i = lo;
        for (; i + 2 * WF <= hi; i += 2 * WF) {  // two independent vectors per step
            prefetch_ahead(out + i, x + i);
            prefetch_ahead(out + i + WF, x + i + WF);
            VF2 y0 = f(vm::loadf(x + i)), y1 = f(vm::loadf(x + i + WF));
            vm::storef(out + i, y0);
            vm::storef(out + i + WF, y1);
        }
        for (; i + WF <= hi; i += WF) vm::storef(out + i, f(vm::loadf(x + i)));
        if (i < hi) vm::store_partf(out + i, f(vm::load_partf(x + i, hi - i, 0.0f)), hi - i);
    });
}

template <class F>
void mapf2(float* out, const float* g, const float* x, index_t n, index_t cost, F f) {
    parallel_chunks(n, n * cost, 64, [&](index_t lo, index_t hi) {
        index_t i = lo;
        for (; i + 2 * WF <= hi; i += 2 * WF) {
            prefetch_ahead(out + i, x + i, g + i);
            prefetch_ahead(out + i + WF, x + i + WF, g + i + WF);
            VF2 y0 = f(vm::loadf(g + i), vm::loadf(x + i)), y1 = f(vm::loadf(g + i + WF), vm::loadf(x + i + WF));
            vm::storef(out + i, y0);
            vm::storef(out + i + WF, y1);
        }
        for (; i + WF <= hi; i += WF) vm::storef(out + i, f(vm::loadf(g + i), vm::loadf(x + i)));
        if (i < hi)
            vm::store_partf(out + i, f(vm::load_partf(g + i, hi - i, 0.0f), vm::load_partf(x + i, hi - i, 0.0f)),
                            hi - i);
    });
}
#endif

// Elementwise cost (element-ops) for the parallel threshold.
constexpr index_t kCheap = 1, kTranscendental = 8;

// float32 activations on native float lanes (vmath.h "_f" functions).
// Returns false for the generic variant (float64 lanes = the C library).
inline bool act_forward_f32_native(float* out, const float* x, index_t n, Act act, double p0, double p1) {
#if NNK_VM_VECTOR
    const float a = float(p0), b = float(p0), thr = float(p1);
    switch (act) {
        case Act::relu:
            mapf1(out, x, n, kCheap, [](VF2 v) { return v <= 0.0f ? splatf(0.0f) : v; });
            return true;
        case Act::leaky_relu:
            mapf1(out, x, n, kCheap, [=](VF2 v) { return v > 0.0f ? v : v * a; });
            return true;
        case Act::elu:
            mapf1(out, x, n, kTranscendental, [=](VF2 v) { return v > 0.0f ? v : a * vm::expm1_f(v); });
            return true;
        case Act::sigmoid:
            mapf1(out, x, n, kTranscendental, [](VF2 v) { return vm::sigmoid_f(v); });
            return true;
        case Act::tanh:
            mapf1(out, x, n, kTranscendental, [](VF2 v) { return vm::tanh_f(v); });
            return true;
        case Act::gelu:  // x Phi(x)
            mapf1(out, x, n, kTranscendental, [](VF2 v) {
                VF2 pdf;
                return v * vm::normal_cdf_f(v, pdf);
            });
            return true;
        case Act::gelu_tanh:
            // 0.5 x (1 + tanh(u)) = x sigmoid(2u): no cancellation where tanh(u) -> -1
            mapf1(out, x, n, kTranscendental, [](VF2 v) {
                VF2 two_u = float(2.0 * kSqrt2OverPi) * (v + float(kGeluC) * v * v * v);
                return v * vm::sigmoid_f(two_u);
            });
            return true;
        case Act::silu:
            mapf1(out, x, n, kTranscendental, [](VF2 v) { return v * vm::sigmoid_f(v); });
            return true;
        case Act::softplus:
            mapf1(out, x, n, kTranscendental, [=](VF2 v) {
                VF2 bx = v * b;
                return bx > thr ? v : vm::softplus_f(bx) / b;
            });
            return true;
        default:
            return false;
    }
#else
    (void)out, (void)x, (void)n, (void)act, (void)p0, (void)p1;
    return false;
#endif
}

inline bool act_backward_f32_native(float* gx, const float* go, const float* x, index_t n, Act act, double p0,
                                    double p1) {
#if NNK_VM_VECTOR
    const float a = float(p0), b = float(p0), thr = float(p1);
    switch (act) {
        case Act::relu:
            mapf2(gx, go, x, n, kCheap, [](VF2 g, VF2 v) { return v <= 0.0f ? splatf(0.0f) : g; });
            return true;
        case Act::leaky_relu:
            mapf2(gx, go, x, n, kCheap, [=](VF2 g, VF2 v) { return v > 0.0f ? g : g * a; });
            return true;
        case Act::elu:
            mapf2(gx, go, x, n, kTranscendental, [=](VF2 g, VF2 v) { return v > 0.0f ? g : g * (a * vm::exp_f(v)); });
            return true;
        case Act::sigmoid:
            mapf2(gx, go, x, n, kTranscendental, [](VF2 g, VF2 v) {
                VF2 grad;
                vm::sigmoid_grad_f(v, grad);
                return g * grad;
            });
            return true;
        case Act::tanh:
            mapf2(gx, go, x, n, kTranscendental, [](VF2 g, VF2 v) { return g * vm::tanh_grad_f(v); });
            return true;
        case Act::gelu:  // Phi(x) + x phi(x)
            mapf2(gx, go, x, n, kTranscendental, [](VF2 g, VF2 v) {
                VF2 e;  // exp(-x^2 / 2)
                VF2 cdf = vm::normal_cdf_f(v, e);
                return g * (cdf + v * (float(kInvSqrt2Pi) * e));
            });
            return true;
        case Act::gelu_tanh:
            // d/dx x sigmoid(2u) = sigmoid(2u) + x sigmoid'(2u) 2u'
            mapf2(gx, go, x, n, kTranscendental, [](VF2 g, VF2 v) {
                VF2 two_u = float(2.0 * kSqrt2OverPi) * (v + float(kGeluC) * v * v * v);
                VF2 dsig;
                VF2 sig = vm::sigmoid_grad_f(two_u, dsig);
                VF2 two_du = float(2.0 * kSqrt2OverPi) * (1.0f + float(3.0 * kGeluC) * v * v);
                VF2 second = v * dsig * two_du;  // 0 once dsig underflows (|x| huge: v^3 = inf)
                second = (dsig == 0.0f) & (vm::vabsf(v) < INFINITY) ? splatf(0.0f) : second;  // inf: NaN, as torch
                return g * (sig + second);
            });
            return true;
        case Act::silu:
            mapf2(gx, go, x, n, kTranscendental, [](VF2 g, VF2 v) {  // s + x s (1 - s)
                VF2 grad;
                VF2 sg = vm::sigmoid_grad_f(v, grad);
                return g * (sg + v * grad);
            });
            return true;
        case Act::softplus:
            mapf2(gx, go, x, n, kTranscendental, [=](VF2 g, VF2 v) {
                VF2 bx = v * b;
                return bx > thr ? g : g * vm::sigmoid_f(bx);
            });
            return true;
        default:
            return false;
    }
#else
    (void)gx, (void)go, (void)x, (void)n, (void)act, (void)p0, (void)p1;
    return false;
#endif
}

template <class T>
void act_forward(T* out, const T* x, index_t n, Act act, double p0, double p1) {
    // out(n) := act(x(n))
    if constexpr (sizeof(T) == 4) {
        if (act_forward_f32_native(out, x, n, act, p0, p1)) return;
    }
    switch (act) {
        case Act::relu:  // NaN <= 0 is false: NaN propagates
            return map1(out, x, n, kCheap, [](V v) { return v <= 0.0 ? splat(0.0) : v; });
        case Act::leaky_relu:
            return map1(out, x, n, kCheap, [=](V v) { return v > 0.0 ? v : v * p0; });
        case Act::elu:
            return map1(out, x, n, kTranscendental, [=](V v) { return v > 0.0 ? v : p0 * vm::expm1(v); });
        case Act::sigmoid:
            return map1(out, x, n, kTranscendental, [](V v) { return vm::sigmoid(v); });
        case Act::tanh:
            return map1(out, x, n, kTranscendental, [](V v) { return vm::tanh(v); });
        case Act::gelu:
            return map1(out, x, n, kTranscendental, [](V v) { return v * gelu_cdf(v); });
        case Act::gelu_tanh:
            return map1(out, x, n, kTranscendental,
                        [](V v) { return 0.5 * v * (1.0 + vm::tanh(gelu_tanh_inner(v))); });
        case Act::silu:
            return map1(out, x, n, kTranscendental, [](V v) { return v * vm::sigmoid(v); });
        case Act::softplus:  // x where beta x > threshold, else log(1 + exp(beta x)) / beta
            return map1(out, x, n, kTranscendental, [=](V v) {
                V bx = v * p0;
                return bx > p1 ? v : vm::softplus(bx) / p0;
            });
    }
}

template <class T>
void act_backward(T* grad_x, const T* grad_out, const T* x, index_t n, Act act, double p0, double p1) {
    // grad_x(n) := grad_out(n) * act'(x(n)), PyTorch's value at kinks
    if constexpr (sizeof(T) == 4) {
        if (act_backward_f32_native(grad_x, grad_out, x, n, act, p0, p1)) return;
    }
    switch (act) {
        case Act::relu:  // relu'(0) = 0; NaN input passes the gradient (as torch)
            return map2(grad_x, grad_out, x, n, kCheap, [](V g, V v) { return v <= 0.0 ? splat(0.0) : g; });
        case Act::leaky_relu:
            return map2(grad_x, grad_out, x, n, kCheap, [=](V g, V v) { return v > 0.0 ? g : g * p0; });
        case Act::elu:
            return map2(grad_x, grad_out, x, n, kTranscendental,
                        [=](V g, V v) { return v > 0.0 ? g : g * (p0 * vm::exp(v)); });
        case Act::sigmoid:
            return map2(grad_x, grad_out, x, n, kTranscendental, [](V g, V v) {
                V s = vm::sigmoid(v);
                return g * (s * (1.0 - s));
            });
        case Act::tanh:
            return map2(grad_x, grad_out, x, n, kTranscendental, [](V g, V v) {
                V t = vm::tanh(v);
                return g * (1.0 - t * t);
            });
        case Act::gelu:  // Phi(x) + x phi(x)
            return map2(grad_x, grad_out, x, n, kTranscendental, [](V g, V v) {
                return g * (gelu_cdf(v) + v * (kInvSqrt2Pi * vm::exp(-0.5 * v * v)));
            });
        case Act::gelu_tanh:
            return map2(grad_x, grad_out, x, n, kTranscendental, [](V g, V v) {
                V t = vm::tanh(gelu_tanh_inner(v));
                V dinner = kSqrt2OverPi * (1.0 + 3.0 * kGeluC * v * v);
                return g * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * dinner);
            });
        case Act::silu:
            return map2(grad_x, grad_out, x, n, kTranscendental, [](V g, V v) {
                V s = vm::sigmoid(v);
                return g * (s * (1.0 + v * (1.0 - s)));
            });
        case Act::softplus:
            return map2(grad_x, grad_out, x, n, kTranscendental, [=](V g, V v) {
                V bx = v * p0;
                return bx > p1 ? g : g * vm::sigmoid(bx);
            });
    }
}

template <class T>
void math_fn(T* out, const T* x, index_t n, MathFn fn) {
#if NNK_VM_VECTOR
    if constexpr (sizeof(T) == 4) {
        switch (fn) {  // the native float32 functions used by the float32 activations
            case MathFn::exp_f: return mapf1(out, x, n, kTranscendental, [](VF2 v) { return vm::exp_f(v); });
            case MathFn::expm1_f: return mapf1(out, x, n, kTranscendental, [](VF2 v) { return vm::expm1_f(v); });
            case MathFn::log_f: return mapf1(out, x, n, kTranscendental, [](VF2 v) { return vm::log_f(v); });
            case MathFn::log1p_f: return mapf1(out, x, n, kTranscendental, [](VF2 v) { return vm::log1p_f(v); });
            case MathFn::tanh_f: return mapf1(out, x, n, kTranscendental, [](VF2 v) { return vm::tanh_f(v); });
            case MathFn::sigmoid_f:
                return mapf1(out, x, n, kTranscendental, [](VF2 v) { return vm::sigmoid_f(v); });
            case MathFn::erf_f: return mapf1(out, x, n, kTranscendental, [](VF2 v) { return vm::erf_f(v); });
            case MathFn::erfc_f: return mapf1(out, x, n, kTranscendental, [](VF2 v) { return vm::erfc_f(v); });
            default: break;
        }
    }
#endif
    switch (fn) {
        case MathFn::exp_f: fn = MathFn::exp; break;  // float64 lanes (generic, or float64 data)
        case MathFn::expm1_f: fn = MathFn::expm1; break;
        case MathFn::log_f: fn = MathFn::log; break;
        case MathFn::log1p_f: fn = MathFn::log1p; break;
        case MathFn::tanh_f: fn = MathFn::tanh; break;
        case MathFn::sigmoid_f: fn = MathFn::sigmoid; break;
        case MathFn::erf_f: fn = MathFn::erf; break;
        case MathFn::erfc_f: fn = MathFn::erfc; break;
        default: break;
    }
    switch (fn) {
        case MathFn::exp: return map1(out, x, n, kTranscendental, [](V v) { return vm::exp(v); });
        case MathFn::expm1: return map1(out, x, n, kTranscendental, [](V v) { return vm::expm1(v); });
        case MathFn::log: return map1(out, x, n, kTranscendental, [](V v) { return vm::log(v); });
        case MathFn::log1p: return map1(out, x, n, kTranscendental, [](V v) { return vm::log1p(v); });
        case MathFn::tanh: return map1(out, x, n, kTranscendental, [](V v) { return vm::tanh(v); });
        case MathFn::erf: return map1(out, x, n, kTranscendental, [](V v) { return vm::erf(v); });
        case MathFn::erfc: return map1(out, x, n, kTranscendental, [](V v) { return vm::erfc(v); });
        case MathFn::sigmoid: return map1(out, x, n, kTranscendental, [](V v) { return vm::sigmoid(v); });
        default: return;
    }
}

}  // namespace

const ActKernels& act_kernels() {
    static const ActKernels k = {
        NNK_VARIANT_NAME,
        &act_forward<float>,
        &act_forward<double>,
        &act_backward<float>,
        &act_backward<double>,
        &softmax_forward_f32,
        &softmax_forward_f64,
        &softmax_backward_f32,
        &softmax_backward_f64,
        &math_fn<float>,
        &math_fn<double>,
    };
    return k;
}

}  // namespace NNK_NS
}  // namespace nnk
