"""Activation family: elementwise activations and (log-)softmax over rows.

Semantics are PyTorch's, including the derivative at kinks (relu'(0) = 0,
leaky_relu'(0) = negative_slope, elu'(0) = alpha) and NaN propagation.
Elementwise kernels see C-contiguous arrays of any shape as flat vectors;
softmax kernels see C-contiguous (R, C) arrays, one softmax per row.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

#: kernel-level activation names and the meaning of (param0, param1)
#:   relu                      -
#:   leaky_relu   param0 = negative_slope
#:   elu          param0 = alpha
#:   sigmoid, tanh, silu       -
#:   gelu         exact, 0.5 x (1 + erf(x / sqrt 2))
#:   gelu_tanh    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
#:   softplus     param0 = beta, param1 = threshold
ACTIVATIONS = ("relu", "leaky_relu", "elu", "sigmoid", "tanh", "gelu", "gelu_tanh", "silu", "softplus")


class ActivationKernels(Protocol):
    def activation_forward(self, out: np.ndarray, x: np.ndarray, name: str, param0: float,
                           param1: float) -> None:
        """out(n) := act(x(n)) for a name in ACTIVATIONS (same shape, flat view)."""

    def activation_backward(self, grad_x: np.ndarray, grad_out: np.ndarray, x: np.ndarray,
                            name: str, param0: float, param1: float) -> None:
        """grad_x(n) := grad_out(n) * act'(x(n)) (derivative w.r.t. the input x)."""

    def softmax_forward(self, out: np.ndarray, x: np.ndarray) -> None:
        """out(R, C) := exp(x - max) / sum(exp(x - max)) over each row."""

    def softmax_backward(self, grad_x: np.ndarray, grad_out: np.ndarray, out: np.ndarray) -> None:
        """grad_x(R, C) := out * (grad_out - sum(grad_out * out)) per row; ``out`` is softmax(x)."""

    def log_softmax_forward(self, out: np.ndarray, x: np.ndarray) -> None:
        """out(R, C) := x - max - log(sum(exp(x - max))) over each row."""

    def log_softmax_backward(self, grad_x: np.ndarray, grad_out: np.ndarray, out: np.ndarray) -> None:
        """grad_x(R, C) := grad_out - exp(out) * sum(grad_out) per row; ``out`` is log_softmax(x)."""
