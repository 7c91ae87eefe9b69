// Scalar epilogue activations applied while a tile is stored (PyTorch
// semantics). Included inside per-ISA translation units.
#pragma once

#include <cmath>

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

}  // namespace NNK_NS
}  // namespace nnk
