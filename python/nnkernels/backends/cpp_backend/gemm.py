"""GEMM family, C++ backend: thin calls into nnkernels._C (the binding checks
arguments again and releases the GIL)."""

from __future__ import annotations

import numpy as np

from ..._native import _C

__all__ = ["gemm", "colsum", "linear_forward", "linear_backward"]


def gemm(out, a, b, alpha, beta, bias=None, activation=None, activation_param=0.0):
    _C.gemm(out, a, b, alpha, beta, bias, activation or "none", activation_param)


def colsum(out, x, accumulate):
    _C.colsum(out, x, accumulate)


def linear_forward(out, x, weight, bias, activation=None, activation_param=0.0):
    # out(N, O) = act(x(N, I) @ weight(O, I).T + bias): weight.T is a strided view, packed by the GEMM
    _C.gemm(out, x, weight.T, 1.0, 0.0, bias, activation or "none", activation_param)


def linear_backward(grad_x, grad_weight, grad_bias, grad_out, x, weight, accumulate,
                    activation=None, pre_activation=None, activation_param=0.0):
    # g = grad_out * act'(z), computed once by the vectorised activation kernel into
    # a scratch array that the two GEMMs and the column sum then read as plain
    # operands. (The GEMM can also apply act'(z) while it packs grad_out, but that
    # is a scalar per-element pass repeated by each of the three consumers: at
    # batch 64 x 256 outputs it cost 3x more than the whole derivative pass.)
    beta = 1.0 if accumulate else 0.0
    g = grad_out
    if activation is not None:
        g = np.empty(grad_out.shape, dtype=grad_out.dtype)
        # relu / leaky_relu (slope > 0) read act' off the sign of z or of the output
        _C.act_backward(g, grad_out, pre_activation, activation, activation_param, 0.0)
    if grad_x is not None:
        _C.gemm(grad_x, g, weight, 1.0, 0.0, None, "none", 0.0)
    if grad_weight is not None:
        _C.gemm(grad_weight, g.T, x, 1.0, beta, None, "none", 0.0)
    if grad_bias is not None:
        _C.colsum(grad_bias, g, accumulate)
