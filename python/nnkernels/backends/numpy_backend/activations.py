"""Activation family, NumPy backend: the readable reference (PyTorch semantics).

Every formula is written once, plainly; the C++ and Numba backends are
tested against it and against PyTorch.
"""

from __future__ import annotations

import math

import numpy as np

from ._act import erf

__all__ = ["activation_forward", "activation_backward", "softmax_forward", "softmax_backward",
           "log_softmax_forward", "log_softmax_backward"]

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_C = 0.044715


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _forward(x, name, p0, p1):
    if name == "relu":
        return np.maximum(x, 0)  # np.maximum propagates NaN, like torch.relu
    if name == "leaky_relu":
        return np.where(x > 0, x, x * p0)
    if name == "elu":
        return np.where(x > 0, x, p0 * np.expm1(x))
    if name == "sigmoid":
        return _sigmoid(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "gelu":
        return 0.5 * x * (1.0 + erf(x * INV_SQRT_2))
    if name == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x)))
    if name == "silu":
        return x * _sigmoid(x)
    if name == "softplus":
        bx = p0 * x
        return np.where(bx > p1, x, np.log1p(np.exp(bx)) / p0)
    raise ValueError(f"activation: unknown activation {name!r}")


def _derivative(x, name, p0, p1):
    """act'(x), PyTorch's convention at kinks (relu'(0) = 0, elu'(0) = alpha)."""
    if name == "relu":
        # torch: grad where relu(x) > 0 ... it tests `result <= 0`, so NaN passes the gradient
        return np.where(x <= 0, 0.0, 1.0)
    if name == "leaky_relu":
        return np.where(x > 0, 1.0, p0)
    if name == "elu":
        return np.where(x > 0, 1.0, p0 * np.exp(x))  # NaN -> NaN, as torch
    if name == "sigmoid":
        s = _sigmoid(x)
        return s * (1.0 - s)
    if name == "tanh":
        t = np.tanh(x)
        return 1.0 - t * t
    if name == "gelu":
        return 0.5 * (1.0 + erf(x * INV_SQRT_2)) + x * INV_SQRT_2PI * np.exp(-0.5 * x * x)
    if name == "gelu_tanh":
        t = np.tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x))
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x)
    if name == "silu":
        s = _sigmoid(x)
        return s * (1.0 + x * (1.0 - s))
    if name == "softplus":
        bx = p0 * x
        z = np.exp(bx)
        return np.where(bx > p1, 1.0, z / (z + 1.0))
    raise ValueError(f"activation: unknown activation {name!r}")


def activation_forward(out, x, name, param0, param1):
    # out(n) := act(x(n)); computed in float64, rounded once to out's dtype
    with np.errstate(all="ignore"):
        out[...] = _forward(x.astype(np.float64), name, param0, param1)


def activation_backward(grad_x, grad_out, x, name, param0, param1):
    # grad_x(n) := grad_out(n) * act'(x(n))
    with np.errstate(all="ignore"):
        if name == "relu":  # torch's threshold_backward selects: 0 where x <= 0, even for a NaN/inf grad_out
            grad_x[...] = np.where(x <= 0, 0.0, grad_out)
            return
        d = _derivative(x.astype(np.float64), name, param0, param1)
        grad_x[...] = grad_out.astype(np.float64) * d


def _log_softmax(x):
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0) if False else m  # keep PyTorch's inf - inf = NaN
    z = x - m
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def softmax_forward(out, x):
    # out(R, C) := exp(x - max) / sum(exp(x - max))
    with np.errstate(all="ignore"):
        xd = x.astype(np.float64)
        e = np.exp(xd - np.max(xd, axis=-1, keepdims=True))
        out[...] = e / np.sum(e, axis=-1, keepdims=True)


def softmax_backward(grad_x, grad_out, out):
    # grad_x(R, C) := y * (g - sum(g * y)), y = softmax output
    with np.errstate(all="ignore"):
        y = out.astype(np.float64)
        g = grad_out.astype(np.float64)
        grad_x[...] = y * (g - np.sum(g * y, axis=-1, keepdims=True))


def log_softmax_forward(out, x):
    # out(R, C) := x - max - log(sum(exp(x - max)))
    with np.errstate(all="ignore"):
        out[...] = _log_softmax(x.astype(np.float64))


def log_softmax_backward(grad_x, grad_out, out):
    # grad_x(R, C) := g - exp(y) * sum(g), y = log_softmax output
    with np.errstate(all="ignore"):
        g = grad_out.astype(np.float64)
        grad_x[...] = g - np.exp(out.astype(np.float64)) * np.sum(g, axis=-1, keepdims=True)
