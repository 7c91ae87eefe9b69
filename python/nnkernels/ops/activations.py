"""Activation ops: forward ``ops.<name>(x, **params)`` and backward
``ops.<name>_backward(grad_out, x, **params)`` (gradient w.r.t. ``x``), with
PyTorch's semantics, including the derivative at kinks (relu'(0) = 0) and NaN
propagation; plus softmax / log_softmax over the last axis, whose backward
ops take the forward *output*.

Inputs: float32 or float64 arrays of any shape (lists are converted);
non-contiguous inputs are copied once. Outputs are new C-contiguous arrays of
the input's dtype, or ``out=`` (C-contiguous, right shape/dtype, written in
place and returned). ``backend=`` picks "cpp", "numba" or "numpy".
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..backends import resolve
from ._checks import as_float_array, check_finite_scalar, check_out, same_dtype

__all__ = [
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "elu", "elu_backward",
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward", "gelu", "gelu_backward",
    "silu", "silu_backward", "softplus", "softplus_backward",
    "softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
]


def _contig(x: np.ndarray) -> np.ndarray:
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def _output(out, name, shape, dt, *inputs):
    if out is None:
        return np.empty(shape, dtype=dt)
    check_out(out, name, shape, dt, *inputs)
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array")
    return out


def _fwd(x, kname, p0, p1, out, backend):
    x = _contig(as_float_array(x, "x"))
    out = _output(out, "out", x.shape, x.dtype, x)
    resolve(backend).activation_forward(out, x, kname, p0, p1)
    return out


def _bwd(grad_out, x, kname, p0, p1, out, backend):
    x = _contig(as_float_array(x, "x"))
    grad_out = _contig(as_float_array(grad_out, "grad_out"))
    dt = same_dtype(grad_out=grad_out, x=x)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out: expected the shape of x {x.shape}, got {grad_out.shape}")
    out = _output(out, "out", x.shape, dt, x, grad_out)
    resolve(backend).activation_backward(out, grad_out, x, kname, p0, p1)
    return out


# ---- elementwise activations ------------------------------------------------

def relu(x, *, out: Optional[np.ndarray] = None, backend: Optional[str] = None) -> np.ndarray:
    """max(x, 0); NaN stays NaN."""
    return _fwd(x, "relu", 0.0, 0.0, out, backend)


def relu_backward(grad_out, x, *, out=None, backend=None) -> np.ndarray:
    """grad_out where x > 0, else 0 (relu'(0) = 0)."""
    return _bwd(grad_out, x, "relu", 0.0, 0.0, out, backend)


def leaky_relu(x, negative_slope: float = 0.01, *, out=None, backend=None) -> np.ndarray:
    """x if x > 0 else negative_slope * x."""
    return _fwd(x, "leaky_relu", check_finite_scalar(negative_slope, "negative_slope"), 0.0, out, backend)


def leaky_relu_backward(grad_out, x, negative_slope: float = 0.01, *, out=None, backend=None) -> np.ndarray:
    """grad_out if x > 0 else negative_slope * grad_out (slope at 0)."""
    return _bwd(grad_out, x, "leaky_relu", check_finite_scalar(negative_slope, "negative_slope"), 0.0,
                out, backend)


def elu(x, alpha: float = 1.0, *, out=None, backend=None) -> np.ndarray:
    """x if x > 0 else alpha * (exp(x) - 1)."""
    return _fwd(x, "elu", check_finite_scalar(alpha, "alpha"), 0.0, out, backend)


def elu_backward(grad_out, x, alpha: float = 1.0, *, out=None, backend=None) -> np.ndarray:
    """grad_out if x > 0 else grad_out * alpha * exp(x) (alpha at 0)."""
    return _bwd(grad_out, x, "elu", check_finite_scalar(alpha, "alpha"), 0.0, out, backend)


def sigmoid(x, *, out=None, backend=None) -> np.ndarray:
    """1 / (1 + exp(-x))."""
    return _fwd(x, "sigmoid", 0.0, 0.0, out, backend)


def sigmoid_backward(grad_out, x, *, out=None, backend=None) -> np.ndarray:
    """grad_out * s * (1 - s), s = sigmoid(x)."""
    return _bwd(grad_out, x, "sigmoid", 0.0, 0.0, out, backend)


def tanh(x, *, out=None, backend=None) -> np.ndarray:
    """Hyperbolic tangent."""
    return _fwd(x, "tanh", 0.0, 0.0, out, backend)


def tanh_backward(grad_out, x, *, out=None, backend=None) -> np.ndarray:
    """grad_out * (1 - tanh(x)^2)."""
    return _bwd(grad_out, x, "tanh", 0.0, 0.0, out, backend)


def _gelu_kernel(approximate) -> str:
    if approximate == "none":
        return "gelu"
    if approximate == "tanh":
        return "gelu_tanh"
    raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")


def gelu(x, approximate: str = "none", *, out=None, backend=None) -> np.ndarray:
    """0.5 x (1 + erf(x / sqrt 2)); approximate="tanh": 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)))."""
    return _fwd(x, _gelu_kernel(approximate), 0.0, 0.0, out, backend)


def gelu_backward(grad_out, x, approximate: str = "none", *, out=None, backend=None) -> np.ndarray:
    """grad_out * gelu'(x) (for the chosen approximation)."""
    return _bwd(grad_out, x, _gelu_kernel(approximate), 0.0, 0.0, out, backend)


def silu(x, *, out=None, backend=None) -> np.ndarray:
    """x * sigmoid(x) (a.k.a. swish)."""
    return _fwd(x, "silu", 0.0, 0.0, out, backend)


def silu_backward(grad_out, x, *, out=None, backend=None) -> np.ndarray:
    """grad_out * s * (1 + x (1 - s)), s = sigmoid(x)."""
    return _bwd(grad_out, x, "silu", 0.0, 0.0, out, backend)


def _softplus_params(beta, threshold):
    beta = check_finite_scalar(beta, "beta")
    if beta == 0.0:
        raise ValueError("beta: must be non-zero")
    return beta, check_finite_scalar(threshold, "threshold")


def softplus(x, beta: float = 1.0, threshold: float = 20.0, *, out=None, backend=None) -> np.ndarray:
    """log(1 + exp(beta x)) / beta, or x where beta x > threshold (PyTorch)."""
    b, t = _softplus_params(beta, threshold)
    return _fwd(x, "softplus", b, t, out, backend)


def softplus_backward(grad_out, x, beta: float = 1.0, threshold: float = 20.0, *, out=None,
                      backend=None) -> np.ndarray:
    """grad_out * sigmoid(beta x), or grad_out where beta x > threshold."""
    b, t = _softplus_params(beta, threshold)
    return _bwd(grad_out, x, "softplus", b, t, out, backend)


# ---- softmax over the last axis ---------------------------------------------

def _rows(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim == 0:
        raise ValueError(f"{name}: expected at least 1 dimension, got a scalar")
    return x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x


def _softmax_fwd(x, kernel, out, backend):
    x = _contig(as_float_array(x, "x"))
    out = _output(out, "out", x.shape, x.dtype, x)
    if out.size:  # nothing to compute for an empty array (no kernel needs to handle it)
        getattr(resolve(backend), kernel)(_rows(out, "x"), _rows(x, "x"))
    return out


def _softmax_bwd(grad_out, y, kernel, out, backend):
    y = _contig(as_float_array(y, "out"))
    grad_out = _contig(as_float_array(grad_out, "grad_out"))
    dt = same_dtype(grad_out=grad_out, out=y)
    if grad_out.shape != y.shape:
        raise ValueError(f"grad_out: expected the shape of the forward output {y.shape}, got {grad_out.shape}")
    res = _output(out, "grad_input", y.shape, dt, y, grad_out)
    if res.size:
        getattr(resolve(backend), kernel)(_rows(res, "out"), _rows(grad_out, "grad_out"), _rows(y, "out"))
    return res


def softmax(x, *, out=None, backend=None) -> np.ndarray:
    """Softmax over the last axis (max-subtracted: huge logits do not overflow)."""
    return _softmax_fwd(x, "softmax_forward", out, backend)


def softmax_backward(grad_out, output, *, out=None, backend=None) -> np.ndarray:
    """Gradient w.r.t. the softmax input, given ``output = softmax(x)``: y * (g - sum(g * y))."""
    return _softmax_bwd(grad_out, output, "softmax_backward", out, backend)


def log_softmax(x, *, out=None, backend=None) -> np.ndarray:
    """log(softmax(x)) over the last axis, computed as x - max - log(sum(exp(x - max)))."""
    return _softmax_fwd(x, "log_softmax_forward", out, backend)


def log_softmax_backward(grad_out, output, *, out=None, backend=None) -> np.ndarray:
    """Gradient w.r.t. the log_softmax input, given ``output = log_softmax(x)``: g - exp(y) sum(g)."""
    return _softmax_bwd(grad_out, output, "log_softmax_backward", out, backend)
