"""Activation family, Numba backend: the same formulas as the C++ kernels,
one element (or one row) at a time, computed in float64 and rounded once.

Each kernel is a serial/parallel pair (``jit_pair``); ``pick`` chooses by size.
The activation is selected by an integer code that is loop-invariant.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._jit import jit, jit_pair, pick

__all__ = ["activation_forward", "activation_backward", "softmax_forward", "softmax_backward",
           "log_softmax_forward", "log_softmax_backward"]

CODES = {"relu": 0, "leaky_relu": 1, "elu": 2, "sigmoid": 3, "tanh": 4, "gelu": 5, "gelu_tanh": 6,
         "silu": 7, "softplus": 8}
#: element-ops per element, for the serial/parallel choice
_COST = (1, 1, 8, 8, 8, 8, 8, 8, 8)

INV_SQRT2 = 0.7071067811865476
INV_SQRT_2PI = 0.3989422804014327
SQRT_2_OVER_PI = 0.7978845608028654
GELU_C = 0.044715


@jit
def _sigmoid(v):
    if v < -745.0:  # exp(-v) overflows: the limit is 0 (avoid the inf/inf path)
        return 0.0
    return 1.0 / (1.0 + math.exp(-v))


@jit
def _softplus(v):
    # log(1 + exp(v)) without overflow
    if v != v:
        return v
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@jit
def _fwd(v, code, p0, p1):
    if code == 0:  # relu (NaN <= 0 is False: NaN propagates)
        return 0.0 if v <= 0.0 else v
    if code == 1:
        return v if v > 0.0 else v * p0
    if code == 2:
        return v if v > 0.0 else p0 * math.expm1(v)
    if code == 3:
        return _sigmoid(v)
    if code == 4:
        return math.tanh(v)
    if code == 5:
        return v * 0.5 * math.erfc(-v * INV_SQRT2)
    if code == 6:
        return 0.5 * v * (1.0 + math.tanh(SQRT_2_OVER_PI * (v + GELU_C * v * v * v)))
    if code == 7:
        return v * _sigmoid(v)
    bx = v * p0  # softplus
    return v if bx > p1 else _softplus(bx) / p0


@jit
def _deriv(v, code, p0, p1):
    if code == 0:  # relu'(0) = 0; NaN passes the gradient (as torch)
        return 0.0 if v <= 0.0 else 1.0
    if code == 1:
        return 1.0 if v > 0.0 else p0
    if code == 2:
        return 1.0 if v > 0.0 else p0 * math.exp(v)
    if code == 3:
        s = _sigmoid(v)
        return s * (1.0 - s)
    if code == 4:
        t = math.tanh(v)
        return 1.0 - t * t
    if code == 5:
        return 0.5 * math.erfc(-v * INV_SQRT2) + v * INV_SQRT_2PI * math.exp(-0.5 * v * v)
    if code == 6:
        t = math.tanh(SQRT_2_OVER_PI * (v + GELU_C * v * v * v))
        return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * v * v)
    if code == 7:
        s = _sigmoid(v)
        return s * (1.0 + v * (1.0 - s))
    bx = v * p0
    return 1.0 if bx > p1 else _sigmoid(bx)


def _act_forward(out, x, code, p0, p1):
    # out(n) := act(x(n)), flat C-contiguous arrays
    for i in prange(x.shape[0]):
        out[i] = _fwd(np.float64(x[i]), code, p0, p1)


def _act_backward(grad_x, grad_out, x, code, p0, p1):
    # grad_x(n) := grad_out(n) * act'(x(n)); relu selects (torch's threshold_backward):
    # where x <= 0 the gradient is 0 even if grad_out is NaN or inf
    for i in prange(x.shape[0]):
        if code == 0 and x[i] <= 0.0:
            grad_x[i] = 0.0
        else:
            grad_x[i] = np.float64(grad_out[i]) * _deriv(np.float64(x[i]), code, p0, p1)


_ACT_FORWARD = jit_pair(_act_forward)
_ACT_BACKWARD = jit_pair(_act_backward)


def activation_forward(out, x, name, param0, param1):
    code = CODES[name]
    pick(_ACT_FORWARD, x.size * _COST[code])(out.reshape(-1), x.reshape(-1), code, float(param0), float(param1))


def activation_backward(grad_x, grad_out, x, name, param0, param1):
    code = CODES[name]
    pick(_ACT_BACKWARD, x.size * _COST[code])(grad_x.reshape(-1), grad_out.reshape(-1), x.reshape(-1), code,
                                              float(param0), float(param1))


# ---- softmax over rows ---------------------------------------------------------

@jit
def _row_max(x):
    m = -np.inf
    for j in range(x.shape[0]):
        v = np.float64(x[j])
        if v > m or v != v:
            m = v
            if v != v:
                break
    return m


def _softmax_fwd(out, x, log):
    # out(R, C) := softmax(x) (log_softmax if log) per row
    for i in prange(x.shape[0]):
        m = _row_max(x[i])
        s = 0.0
        for j in range(x.shape[1]):
            e = math.exp(np.float64(x[i, j]) - m)
            if not log:
                out[i, j] = e
            s += e
        if log:
            ls = math.log(s)
            for j in range(x.shape[1]):
                out[i, j] = (np.float64(x[i, j]) - m) - ls
        else:
            inv = 1.0 / s
            for j in range(x.shape[1]):
                out[i, j] = np.float64(out[i, j]) * inv


def _softmax_bwd(grad_x, grad_out, y, log):
    # softmax: y (g - sum(g y)); log_softmax: g - exp(y) sum(g)
    for i in prange(y.shape[0]):
        s = 0.0
        for j in range(y.shape[1]):
            s += np.float64(grad_out[i, j]) * (1.0 if log else np.float64(y[i, j]))
        for j in range(y.shape[1]):
            g = np.float64(grad_out[i, j])
            if log:
                grad_x[i, j] = g - math.exp(np.float64(y[i, j])) * s
            else:
                grad_x[i, j] = np.float64(y[i, j]) * (g - s)


_SOFTMAX_FWD = jit_pair(_softmax_fwd)
_SOFTMAX_BWD = jit_pair(_softmax_bwd)


def softmax_forward(out, x):
    pick(_SOFTMAX_FWD, x.size * 8)(out, x, False)


def softmax_backward(grad_x, grad_out, out):
    pick(_SOFTMAX_BWD, out.size * 2)(grad_x, grad_out, out, False)


def log_softmax_forward(out, x):
    pick(_SOFTMAX_FWD, x.size * 8)(out, x, True)


def log_softmax_backward(grad_x, grad_out, out):
    pick(_SOFTMAX_BWD, out.size * 8)(grad_x, grad_out, out, True)
