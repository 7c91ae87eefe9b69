"""Activation formulas used by the NumPy GEMM epilogue (PyTorch semantics)."""

from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


def erf(x: np.ndarray) -> np.ndarray:
    """Elementwise erf (SciPy's when available, else math.erf), in x's dtype."""
    try:
        from scipy.special import erf as sp_erf
    except ImportError:  # pragma: no cover
        return _erf(x).astype(x.dtype, copy=False)
    return sp_erf(x).astype(x.dtype, copy=False)


def apply_activation(x: np.ndarray, name: str, param: float = 0.0) -> np.ndarray:
    dt = x.dtype.type
    if name == "relu":
        return np.where(x > 0, x, np.where(np.isnan(x), x, dt(0)))
    if name == "leaky_relu":
        return np.where(x > 0, x, x * dt(param))
    if name == "gelu":
        return dt(0.5) * x * (dt(1) + erf(x * dt(1 / math.sqrt(2))))
    if name == "gelu_tanh":
        return dt(0.5) * x * (dt(1) + np.tanh(dt(math.sqrt(2 / math.pi)) * (x + dt(0.044715) * x**3)))
    if name == "silu":
        with np.errstate(over="ignore"):
            return x / (dt(1) + np.exp(-x))
    raise ValueError(f"activation: unknown activation {name!r}")
