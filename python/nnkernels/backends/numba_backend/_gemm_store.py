"""Activation applied by the Numba GEMM's epilogue (scalar, by code)."""

from __future__ import annotations

import math

from ._jit import jit


@jit
def act(x, code, param):
    """Activation by code (0 none, 1 relu, 2 leaky_relu, 3 gelu, 4 gelu_tanh, 5 silu)."""
    if code == 1:  # relu (NaN propagates: NaN <= 0 is False)
        return 0.0 if x <= 0 else x
    if code == 2:  # leaky_relu
        return x if x > 0 else x * param
    if code == 3:  # gelu (erf)
        return 0.5 * x * (1.0 + math.erf(x * 0.7071067811865476))
    if code == 4:  # gelu (tanh approximation)
        return 0.5 * x * (1.0 + math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
    if code == 5:  # silu
        if x < -80.0:
            return x * math.exp(x)
        return x / (1.0 + math.exp(-x))
    return x

