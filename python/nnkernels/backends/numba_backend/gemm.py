"""GEMM family, Numba backend: a blocked, register-tiled, parallel GEMM.

Tiles of C (RB rows x NB columns) are independent tasks split across threads
(no two threads write the same memory); each accumulates over the whole k
before the epilogue (alpha, beta, bias, activation) is applied once.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._jit import jit, jit_pair, pick

__all__ = ["gemm", "colsum", "linear_forward", "linear_backward"]

RB = 4    # rows of C per tile (unrolled: 4 broadcasts of A per k)
NB = 256  # columns of C per tile (RB x NB accumulators stay in L1)

ACT_CODES = {None: 0, "relu": 1, "leaky_relu": 2, "gelu": 3, "gelu_tanh": 4, "silu": 5}


@jit
def _act(x, code, param):
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


def _gemm_tiles(out, a, b, alpha, beta, bias, has_bias, act, act_param):
    # out(m, n) := act(alpha * a(m, k) @ b(k, n) + beta * out + bias(n)); b C-contiguous
    m, k = a.shape
    n = b.shape[1]
    nrb = (m + RB - 1) // RB
    nnb = (n + NB - 1) // NB
    for t in prange(nrb * nnb):  # one tile of C per task; plain range in the serial twin
        i0 = (t // nnb) * RB
        j0 = (t % nnb) * NB
        i1 = min(i0 + RB, m)
        j1 = min(j0 + NB, n)
        w = j1 - j0
        acc = np.zeros((RB, NB), dtype=out.dtype)
        if i1 - i0 == RB:
            for p in range(k):
                a0 = a[i0, p]
                a1 = a[i0 + 1, p]
                a2 = a[i0 + 2, p]
                a3 = a[i0 + 3, p]
                for j in range(w):
                    bv = b[p, j0 + j]
                    acc[0, j] += a0 * bv
                    acc[1, j] += a1 * bv
                    acc[2, j] += a2 * bv
                    acc[3, j] += a3 * bv
        else:
            for r in range(i1 - i0):
                for p in range(k):
                    ar = a[i0 + r, p]
                    for j in range(w):
                        acc[r, j] += ar * b[p, j0 + j]
        for r in range(i1 - i0):
            for j in range(w):
                x = alpha * acc[r, j]
                if beta != 0.0:
                    x += beta * out[i0 + r, j0 + j]
                if has_bias:
                    x += bias[j0 + j]
                out[i0 + r, j0 + j] = _act(x, act, act_param)


_gemm_pair = jit_pair(_gemm_tiles)


def _empty_bias(dtype):
    return np.zeros(1, dtype=dtype)


def gemm(out, a, b, alpha, beta, bias=None, activation=None, activation_param=0.0):
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0:
        return
    if alpha == 0.0:  # a @ b is not read (BLAS/PyTorch semantics): an empty k
        a, b = a[:, :0], b[:0]
    bc = np.ascontiguousarray(b)  # one pass over B (k x n) for m x n x k work
    has_bias = bias is not None
    kern = pick(_gemm_pair, m * n * max(k, 1))
    kern(out, a, bc, out.dtype.type(alpha), out.dtype.type(beta),
         bias if has_bias else _empty_bias(out.dtype), has_bias, ACT_CODES[activation],
         out.dtype.type(activation_param))


def _colsum(out, x, accumulate, zero):
    # out(n) (+)= sum over rows of x(m, n); rows in order; threads split columns
    m, n = x.shape
    nchunks = (n + 63) // 64
    for c in prange(nchunks):
        j0 = c * 64
        j1 = min(j0 + 64, n)
        for j in range(j0, j1):
            s = out[j] if accumulate else zero
            for i in range(m):
                s += x[i, j]
            out[j] = s


_colsum_pair = jit_pair(_colsum)


def colsum(out, x, accumulate):
    if x.shape[1] == 0:
        return
    pick(_colsum_pair, x.size)(out, x, accumulate, out.dtype.type(0))


def linear_forward(out, x, weight, bias, activation=None, activation_param=0.0):
    # out(N, O) = act(x(N, I) @ weight(O, I).T + bias)
    gemm(out, x, weight.T, 1.0, 0.0, bias, activation, activation_param)


def linear_backward(grad_x, grad_weight, grad_bias, grad_out, x, weight, accumulate):
    beta = 1.0 if accumulate else 0.0
    if grad_x is not None:
        gemm(grad_x, grad_out, weight, 1.0, 0.0)
    if grad_weight is not None:
        gemm(grad_weight, grad_out.T, x, 1.0, beta)
    if grad_bias is not None:
        colsum(grad_bias, grad_out, accumulate)
