"""GEMM family, NumPy reference (readable; the oracle for the other backends)."""

from __future__ import annotations

import numpy as np

from ._act import apply_activation

__all__ = ["gemm", "colsum", "linear_forward", "linear_backward"]


def gemm(out, a, b, alpha, beta, bias=None, activation=None, activation_param=0.0):
    # out(m, n) := act(alpha * a @ b + beta * out + bias)
    # alpha == 0: a @ b is not computed, so NaN/inf in a or b do not reach out
    # (BLAS and torch.addmm semantics; beta == 0 likewise ignores out).
    r = np.matmul(a, b) if alpha != 0.0 else np.zeros(out.shape, out.dtype)
    if alpha != 1.0:
        r *= alpha
    if beta != 0.0:
        r += beta * out
    if bias is not None:
        r += bias
    if activation is not None:
        r = apply_activation(r, activation, activation_param)
    out[...] = r


def colsum(out, x, accumulate):
    # out(n) (+)= sum over rows of x(m, n)
    s = x.sum(axis=0, dtype=x.dtype)
    if accumulate:
        out += s
    else:
        out[...] = s


def linear_forward(out, x, weight, bias, activation=None, activation_param=0.0):
    # out(N, O) = act(x(N, I) @ weight(O, I).T + bias(O))
    gemm(out, x, weight.T, 1.0, 0.0, bias, activation, activation_param)


def linear_backward(grad_x, grad_weight, grad_bias, grad_out, x, weight, accumulate):
    # grad_x(N, I) = grad_out(N, O) @ weight(O, I); grad_weight(O, I) [+]= grad_out.T @ x; grad_bias(O) [+]= sum_N grad_out
    beta = 1.0 if accumulate else 0.0
    if grad_x is not None:
        gemm(grad_x, grad_out, weight, 1.0, 0.0)
    if grad_weight is not None:
        gemm(grad_weight, grad_out.T, x, 1.0, beta)
    if grad_bias is not None:
        colsum(grad_bias, grad_out, accumulate)
