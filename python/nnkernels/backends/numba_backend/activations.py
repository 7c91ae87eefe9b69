"""Activation family, Numba backend: the same formulas as the C++ kernels
(csrc/kernels/act), written as loops LLVM vectorises.

- Elementary functions come from ``_vmath`` (branch-free exp, tanh, erfc...;
  ``math.exp`` would be a scalar libm call that blocks vectorisation).
- Each kernel source is compiled once per dtype (``per_dtype``): float32
  data is computed in float32 lanes, float64 in float64.
- Elementwise kernels: one loop per activation, chosen by an integer code
  outside the loop; large inputs are split into chunks over threads
  (``prange``), small ones run serially.
- Softmax: one row per iteration, serial or parallel twin by size.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..._threads import sync_numba_threads
from ._jit import PARALLEL_MIN_WORK, call_readonly_inputs, vjit, vjit_parallel
from ._vmath import SUM_LANES, log_d, per_dtype, prefer_wide_vectors, row_dot, row_sum_lanes
# The names the elementwise kernels use, bound here to the float64 functions;
# ``per_dtype`` compiles each kernel once per dtype with them rebound.
from ._vmath import normal_cdf_d as v_normal_cdf
from ._vmath import exp_d as v_exp
from ._vmath import expm1_d as v_expm1
from ._vmath import row_max_d as v_row_max
from ._vmath import sigmoid_d as v_sigmoid
from ._vmath import softplus_d as v_softplus
from ._vmath import tanh_d as v_tanh
from ._vmath import tanh_sech2_d as v_tanh_sech2

cast = np.float64

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

#: elements per parallel task
CHUNK = 1 << 14


# Elementwise kernels: one straight-line loop per activation, vectorised by
# LLVM (no libm calls: _vmath's exp/tanh/erfc...). Arithmetic in the data's
# type (float32 data: float32 lanes, twice as many per register); constants
# are cast with ``like``. The forms follow csrc/kernels/act/elementwise.cpp.

def _act_forward_flat(out, x, code, p0, p1):
    # out(n) := act(x(n)); loops run over range(n) from 0, so LLVM knows that
    # no index is negative (no wraparound select in the vector loop)
    prefer_wide_vectors()
    zero = cast(0.0)
    one = cast(1.0)
    half = cast(0.5)
    a = cast(p0)
    thr = cast(p1)
    if code == 0:  # relu (NaN <= 0 is False: NaN propagates)
        for i in range(x.shape[0]):
            v = x[i]
            out[i] = zero if v <= zero else v
    elif code == 1:  # leaky_relu
        for i in range(x.shape[0]):
            v = x[i]
            out[i] = v if v > zero else v * a
    elif code == 2:  # elu
        for i in range(x.shape[0]):
            v = x[i]
            out[i] = v if v > zero else a * v_expm1(v)
    elif code == 3:
        for i in range(x.shape[0]):
            out[i] = v_sigmoid(x[i])
    elif code == 4:
        for i in range(x.shape[0]):
            out[i] = v_tanh(x[i])
    elif code == 5:  # gelu: x Phi(x)
        for i in range(x.shape[0]):
            v = x[i]
            cdf, _ = v_normal_cdf(v)
            out[i] = v * cdf
    elif code == 6:  # gelu_tanh
        c = cast(SQRT_2_OVER_PI)
        k = cast(GELU_C)
        for i in range(x.shape[0]):
            v = x[i]
            out[i] = half * v * (one + v_tanh(c * (v + k * v * v * v)))
    elif code == 7:  # silu
        for i in range(x.shape[0]):
            v = x[i]
            out[i] = v * v_sigmoid(v)
    else:  # softplus: x where beta x > threshold, else log(1 + exp(beta x)) / beta
        for i in range(x.shape[0]):
            v = x[i]
            bx = v * a
            out[i] = v if bx > thr else v_softplus(bx) / a


def _act_backward_flat(grad_x, grad_out, x, code, p0, p1):
    # grad_x(n) := grad_out(n) * act'(x(n)), PyTorch's value at kinks
    prefer_wide_vectors()
    zero = cast(0.0)
    one = cast(1.0)
    half = cast(0.5)
    a = cast(p0)
    thr = cast(p1)
    if code == 0:  # relu'(0) = 0; where x <= 0 the gradient is 0 even if grad_out is NaN (torch)
        for i in range(x.shape[0]):
            grad_x[i] = zero if x[i] <= zero else grad_out[i]
    elif code == 1:
        for i in range(x.shape[0]):
            g = grad_out[i]
            grad_x[i] = g if x[i] > zero else g * a
    elif code == 2:
        for i in range(x.shape[0]):
            v = x[i]
            g = grad_out[i]
            grad_x[i] = g if v > zero else g * (a * v_exp(v))
    elif code == 3:
        for i in range(x.shape[0]):
            s = v_sigmoid(x[i])
            grad_x[i] = grad_out[i] * (s * (one - s))
    elif code == 4:
        for i in range(x.shape[0]):
            _, sech2 = v_tanh_sech2(x[i])
            grad_x[i] = grad_out[i] * sech2
    elif code == 5:  # Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi)
        d = cast(INV_SQRT_2PI)
        for i in range(x.shape[0]):
            v = x[i]
            cdf, e = v_normal_cdf(v)
            grad_x[i] = grad_out[i] * (cdf + v * (d * e))
    elif code == 6:
        c = cast(SQRT_2_OVER_PI)
        k = cast(GELU_C)
        k3 = cast(3.0 * GELU_C)
        inf = cast(np.inf)
        for i in range(x.shape[0]):
            v = x[i]
            t, sech2 = v_tanh_sech2(c * (v + k * v * v * v))
            dinner = c * (one + k3 * v * v)
            second = half * v * sech2 * dinner
            # 0 once sech2 underflows (|x| huge: v^3 = inf); x = +-inf gives NaN, as torch
            second = zero if (sech2 == zero) & (abs(v) < inf) else second
            grad_x[i] = grad_out[i] * (half * (one + t) + second)
    elif code == 7:
        for i in range(x.shape[0]):
            v = x[i]
            s = v_sigmoid(v)
            grad_x[i] = grad_out[i] * (s * (one + v * (one - s)))
    else:
        for i in range(x.shape[0]):
            v = x[i]
            g = grad_out[i]
            bx = v * a
            grad_x[i] = g if bx > thr else g * v_sigmoid(bx)


def _act_forward_parallel(out, x, code, p0, p1):
    n = x.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(n, (c + 1) * CHUNK)
        _act_forward_flat(out[lo:hi], x[lo:hi], code, p0, p1)


def _act_backward_parallel(grad_x, grad_out, x, code, p0, p1):
    n = x.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo, hi = c * CHUNK, min(n, (c + 1) * CHUNK)
        _act_backward_flat(grad_x[lo:hi], grad_out[lo:hi], x[lo:hi], code, p0, p1)


_FWD = per_dtype(_act_forward_flat, vjit)
_BWD = per_dtype(_act_backward_flat, vjit)
_FWD_PAR = per_dtype(_act_forward_parallel, vjit_parallel, _act_forward_flat=_FWD)
_BWD_PAR = per_dtype(_act_backward_parallel, vjit_parallel, _act_backward_flat=_BWD)


def activation_forward(out, x, name, param0, param1):
    code = CODES[name]
    n = x.size
    if n == 0:
        return
    if n * _COST[code] < PARALLEL_MIN_WORK:
        call_readonly_inputs(_FWD[x.dtype], (1,), out.reshape(-1), x.reshape(-1), code, float(param0),
                             float(param1))
    else:
        sync_numba_threads()
        call_readonly_inputs(_FWD_PAR[x.dtype], (1,), out.reshape(-1), x.reshape(-1), code, float(param0),
                             float(param1))


def activation_backward(grad_x, grad_out, x, name, param0, param1):
    code = CODES[name]
    n = x.size
    if n == 0:
        return
    if n * _COST[code] < PARALLEL_MIN_WORK:
        call_readonly_inputs(_BWD[x.dtype], (1, 2), grad_x.reshape(-1), grad_out.reshape(-1), x.reshape(-1), code,
                             float(param0), float(param1))
    else:
        sync_numba_threads()
        call_readonly_inputs(_BWD_PAR[x.dtype], (1, 2), grad_x.reshape(-1), grad_out.reshape(-1), x.reshape(-1),
                             code, float(param0), float(param1))


# ---- softmax over rows ---------------------------------------------------------
# Per row, vectorisable passes (as the cross-entropy kernel): m = max (integer
# keys), e = exp(x - m) into out, s = sum e (lane sums), out *= 1/s;
# log_softmax: out = (x - m) - log s, in float64 then rounded. Rows go in
# blocks of about ROW_BLOCK elements per parallel task (one scratch per block).

ROW_BLOCK = 2048


def _softmax_fwd(out, x, log):
    # out(R, C) := softmax(x) (log_softmax if log) per row
    n, c = x.shape
    rows = max(1, ROW_BLOCK // max(c, 1))
    for b in prange((n + rows - 1) // rows):
        prefer_wide_vectors()
        acc = np.empty(SUM_LANES)
        for i in range(b * rows, min(n, (b + 1) * rows)):
            xi = x[i]
            oi = out[i]
            m = v_row_max(xi)
            for j in range(c):
                oi[j] = v_exp(xi[j] - m)
            s = row_sum_lanes(oi, acc)
            if log:
                mm = np.float64(m)
                ls = log_d(s)
                for j in range(c):
                    oi[j] = (np.float64(xi[j]) - mm) - ls
            else:
                inv = cast(1.0 / s)
                for j in range(c):
                    oi[j] = oi[j] * inv


def _softmax_bwd(grad_x, grad_out, y, log):
    # softmax: y (g - sum(g y)); log_softmax: g - exp(y) sum(g)
    n, c = y.shape
    rows = max(1, ROW_BLOCK // max(c, 1))
    for b in prange((n + rows - 1) // rows):
        prefer_wide_vectors()
        acc = np.empty(SUM_LANES)
        for i in range(b * rows, min(n, (b + 1) * rows)):
            gi = grad_out[i]
            yi = y[i]
            gxi = grad_x[i]
            if log:
                sg = cast(row_sum_lanes(gi, acc))
                for j in range(c):
                    gxi[j] = gi[j] - v_exp(yi[j]) * sg
            else:
                dot = cast(row_dot(gi, yi))
                for j in range(c):
                    gxi[j] = yi[j] * (gi[j] - dot)


_SOFTMAX_FWD = (per_dtype(_softmax_fwd, vjit), per_dtype(_softmax_fwd, vjit_parallel, "_parallel"))
_SOFTMAX_BWD = (per_dtype(_softmax_bwd, vjit), per_dtype(_softmax_bwd, vjit_parallel, "_parallel"))


def _pick_rows(pair, x, work):
    if work < PARALLEL_MIN_WORK:
        return pair[0][x.dtype]
    sync_numba_threads()
    return pair[1][x.dtype]


def softmax_forward(out, x):
    call_readonly_inputs(_pick_rows(_SOFTMAX_FWD, x, x.size * 8), (1,), out, x, False)


def softmax_backward(grad_x, grad_out, out):
    call_readonly_inputs(_pick_rows(_SOFTMAX_BWD, out, out.size * 2), (1, 2), grad_x, grad_out, out, False)


def log_softmax_forward(out, x):
    call_readonly_inputs(_pick_rows(_SOFTMAX_FWD, x, x.size * 8), (1,), out, x, True)


def log_softmax_backward(grad_x, grad_out, out):
    call_readonly_inputs(_pick_rows(_SOFTMAX_BWD, out, out.size * 8), (1, 2), grad_x, grad_out, out, True)
