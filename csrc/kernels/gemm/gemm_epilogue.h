// GEMM epilogues (PyTorch semantics), included inside per-ISA translation units.
//
//  * apply_epilogue      scalar activation (reference, strided-C path, f64)
//  * epilogue_vec        the same on a whole register (GCC vector extension,
//                        so the one source becomes zmm/ymm/xmm code): bias add
//                        and activation fused into the microkernel's store
//  * activation_deriv    act'(z) for the backward pass, applied to grad_out
//                        while it is packed (gemm_driver.cpp, colsum.cpp)
//
// Vector float32 transcendental functions use exp (Cephes-style, ~1 ulp) and
// the Numerical-Recipes erfc (relative error < 1.2e-7); float64 goes through
// the C library per lane (exact to the last bit like the scalar path). NaN
// propagates: every clamp is written `x > hi ? hi : x`, false for NaN.
#pragma once

#include <cmath>
#include <cstring>

#include "nnk/gemm.h"

namespace nnk {
namespace NNK_NS {

template <class T>
inline T apply_epilogue(T x, Epilogue op, T param) {
    switch (op) {
        case Epilogue::relu:
            return x > T(0) ? x : (x != x ? x : T(0));
        case Epilogue::leaky_relu:
            return x > T(0) ? x : x * param;
        case Epilogue::gelu:
            return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
        case Epilogue::gelu_tanh: {
            const T k0 = T(0.79788456080286535588), k1 = T(0.044715);
            return T(0.5) * x * (T(1) + std::tanh(k0 * (x + k1 * x * x * x)));
        }
        case Epilogue::silu:
            return x / (T(1) + std::exp(-x));
        default:
            return x;
    }
}

// d act(z) / dz, PyTorch's backward formulas (relu'(0) = 0, relu'(NaN) = 0).
template <class T>
inline T activation_deriv(T z, Epilogue op, T param) {
    switch (op) {
        case Epilogue::relu:
            return z > T(0) ? T(1) : T(0);
        case Epilogue::leaky_relu:
            return z > T(0) ? T(1) : param;
        case Epilogue::gelu: {
            const T cdf = T(0.5) * (T(1) + std::erf(z * T(0.70710678118654752440)));
            const T pdf = std::exp(T(-0.5) * z * z) * T(0.39894228040143267794);
            return cdf + z * pdf;
        }
        case Epilogue::gelu_tanh: {
            const T k0 = T(0.79788456080286535588), k1 = T(0.044715);
            const T t = std::tanh(k0 * (z + k1 * z * z * z));
            return T(0.5) * (T(1) + t) + T(0.5) * z * (T(1) - t * t) * k0 * (T(1) + T(3) * k1 * z * z);
        }
        case Epilogue::silu: {
            const T s = T(1) / (T(1) + std::exp(-z));
            return s * (T(1) + z * (T(1) - s));
        }
        default:
            return T(1);
    }
}

// ---- vector epilogue -------------------------------------------------------

#if defined(NNK_ISA_AVX512)
constexpr int kEpiVecBytes = 64;
#elif defined(NNK_ISA_AVX2)
constexpr int kEpiVecBytes = 32;
#else
constexpr int kEpiVecBytes = 16;
#endif

template <class T>
struct EpiVec;
template <>
struct EpiVec<float> {
    typedef float type __attribute__((vector_size(kEpiVecBytes)));
    typedef int itype __attribute__((vector_size(kEpiVecBytes)));
};
template <>
struct EpiVec<double> {
    typedef double type __attribute__((vector_size(kEpiVecBytes)));
};

namespace vmath {

using VF = EpiVec<float>::type;
using VI = EpiVec<float>::itype;

inline VF splat(float x) { return VF{} + x; }

// exp(x), x clamped to [-87.3, 88.7] (NaN passes through the clamps).
inline VF exp(VF x) {
    x = x > 88.7228f ? splat(88.7228f) : x;
    x = x < -87.3365f ? splat(-87.3365f) : x;
    VF t = x * 1.44269504088896341f + 0.5f;
    // A NaN lane converts to INT_MIN and i - 1 below would overflow (UB, found
    // by UBSan): give it exponent 0; the lane stays NaN through r.
    t = t == t ? t : splat(0.0f);
    VI i = __builtin_convertvector(t, VI);  // truncation, then fix to floor
    VF fi = __builtin_convertvector(i, VF);
    i = fi > t ? i - 1 : i;
    fi = __builtin_convertvector(i, VF);
    VF r = x - fi * 0.693359375f;
    r = r - fi * -2.12194440e-4f;
    VF p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    VI bits = (i + 127) << 23;
    VF scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}

// x / (1 + exp(-y)): silu (y = x) and the tanh-GELU (y = 2u).
inline VF x_sigmoid(VF x, VF y) { return x / (1.0f + exp(-y)); }

// 0.5 x (1 + erf(x / sqrt 2)) through erfc(|x| / sqrt 2) (no cancellation for x < 0).
inline VF gelu(VF x) {
    VF z = x < 0.0f ? -x : x;
    z = z * 0.70710678118654752f;
    VF t = 1.0f / (1.0f + 0.5f * z);
    VF q = splat(0.17087277f);
    q = q * t - 0.82215223f;
    q = q * t + 1.48851587f;
    q = q * t - 1.13520398f;
    q = q * t + 0.27886807f;
    q = q * t - 0.18628806f;
    q = q * t + 0.09678418f;
    q = q * t + 0.37409196f;
    q = q * t + 1.00002368f;
    q = q * t - 1.26551223f;
    VF erfc = t * exp(q - z * z);
    VF half = 0.5f * x * erfc;
    return x < 0.0f ? half : x - half;
}

}  // namespace vmath

// One register of C after alpha/beta/bias: apply the activation.
inline EpiVec<float>::type epilogue_vec(EpiVec<float>::type x, Epilogue op, float param) {
    using VF = EpiVec<float>::type;
    switch (op) {
        case Epilogue::relu:
            return x < 0.0f ? VF{} : x;  // NaN < 0 is false: NaN stays
        case Epilogue::leaky_relu:
            return x > 0.0f ? x : x * param;
        case Epilogue::silu:
            return vmath::x_sigmoid(x, x);
        case Epilogue::gelu_tanh: {
            VF u = 0.79788456080286535588f * (x + 0.044715f * x * x * x);
            return vmath::x_sigmoid(x, 2.0f * u);
        }
        case Epilogue::gelu:
            return vmath::gelu(x);
        default:
            return x;
    }
}

inline EpiVec<double>::type epilogue_vec(EpiVec<double>::type x, Epilogue op, double param) {
    using VD = EpiVec<double>::type;
    switch (op) {
        case Epilogue::relu:
            return x < 0.0 ? VD{} : x;
        case Epilogue::leaky_relu:
            return x > 0.0 ? x : x * param;
        case Epilogue::none:
            return x;
        default: {  // transcendental: the C library, lane by lane
            constexpr int W = kEpiVecBytes / 8;
            double lanes[W];
            std::memcpy(lanes, &x, sizeof(x));
            for (int l = 0; l < W; ++l) lanes[l] = apply_epilogue(lanes[l], op, param);
            std::memcpy(&x, lanes, sizeof(x));
            return x;
        }
    }
}

// Store `count` (<= vector width) lanes of one row of a C tile:
//   c[j * csc] := act(alpha * acc[j] + beta * c[j * csc] + bias[j])
// beta == 0 never reads C. Full unit-stride vectors take the fast path.
template <class T>
inline void store_vec(T* c, index_t csc, int count, typename EpiVec<T>::type acc, T alpha, T beta,
                      const T* bias, Epilogue op, T param) {
    using V = typename EpiVec<T>::type;
    constexpr int W = kEpiVecBytes / sizeof(T);
    V x = acc;
    if (alpha != T(1)) x = x * alpha;
    if (csc == 1 && count == W) {
        if (beta != T(0)) {
            V cv;
            std::memcpy(&cv, c, sizeof(V));
            x = x + beta * cv;
        }
        if (bias) {
            V bv;
            std::memcpy(&bv, bias, sizeof(V));
            x = x + bv;
        }
        if (op != Epilogue::none) x = epilogue_vec(x, op, param);
        std::memcpy(c, &x, sizeof(V));
        return;
    }
    T lanes[W] = {}, cl[W] = {}, bl[W] = {};
    if (beta != T(0))
        for (int l = 0; l < count; ++l) cl[l] = c[l * csc];
    if (bias)
        for (int l = 0; l < count; ++l) bl[l] = bias[l];
    V cv, bv;
    std::memcpy(&cv, cl, sizeof(V));
    std::memcpy(&bv, bl, sizeof(V));
    if (beta != T(0)) x = x + beta * cv;
    if (bias) x = x + bv;
    if (op != Epilogue::none) x = epilogue_vec(x, op, param);
    std::memcpy(lanes, &x, sizeof(V));
    for (int l = 0; l < count; ++l) c[l * csc] = lanes[l];
}

}  // namespace NNK_NS
}  // namespace nnk
