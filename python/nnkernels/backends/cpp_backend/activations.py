"""Activation family, C++ backend: thin calls into nnkernels._C (the binding
checks the arguments again and releases the GIL)."""

from __future__ import annotations

from ..._native import _C

__all__ = ["activation_forward", "activation_backward", "softmax_forward", "softmax_backward",
           "log_softmax_forward", "log_softmax_backward"]


def activation_forward(out, x, name, param0, param1):
    _C.act_forward(out, x, name, param0, param1)


def activation_backward(grad_x, grad_out, x, name, param0, param1):
    _C.act_backward(grad_x, grad_out, x, name, param0, param1)


def softmax_forward(out, x):
    _C.softmax_forward(out, x, False)


def softmax_backward(grad_x, grad_out, out):
    _C.softmax_backward(grad_x, grad_out, out, False)


def log_softmax_forward(out, x):
    _C.softmax_forward(out, x, True)


def log_softmax_backward(grad_x, grad_out, out):
    _C.softmax_backward(grad_x, grad_out, out, True)
