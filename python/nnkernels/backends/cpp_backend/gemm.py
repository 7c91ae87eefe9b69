"""GEMM family, C++ backend: thin calls into nnkernels._C (the binding checks
arguments again and releases the GIL)."""

from __future__ import annotations

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
    # g = grad_out * act'(z): the factor is applied while grad_out is packed (never stored)
    beta = 1.0 if accumulate else 0.0
    act = activation or "none"
    z = pre_activation
    if grad_x is not None:
        _C.gemm(grad_x, grad_out, weight, 1.0, 0.0, None, "none", 0.0, act, z, activation_param)
    if grad_weight is not None:
        _C.gemm(grad_weight, grad_out.T, x, 1.0, beta, None, "none", 0.0, act,
                None if z is None else z.T, activation_param)
    if grad_bias is not None:
        _C.colsum(grad_bias, grad_out, accumulate, act, z, activation_param)
