"""GEMM family: matrix multiply with fused epilogue, bias gradient, Linear."""

from __future__ import annotations

from typing import Optional, Protocol

import numpy as np

#: activations a GEMM epilogue can apply (after the bias), PyTorch semantics
EPILOGUES = ("relu", "gelu", "gelu_tanh", "silu", "leaky_relu")


class GemmKernels(Protocol):
    def gemm(self, out: np.ndarray, a: np.ndarray, b: np.ndarray, alpha: float, beta: float,
             bias: Optional[np.ndarray] = None, activation: Optional[str] = None,
             activation_param: float = 0.0) -> None:
        """out(m, n) := act(alpha * a(m, k) @ b(k, n) + beta * out + bias(n)).

        ``a``, ``b`` and ``out`` may have any strides (transposed or sliced
        views); ``beta == 0`` means ``out`` is not read. ``bias`` is
        C-contiguous (n,) or None; ``activation`` one of EPILOGUES or None
        (``activation_param`` is leaky_relu's negative slope).
        """

    def colsum(self, out: np.ndarray, x: np.ndarray, accumulate: bool) -> None:
        """out(n) := [out +] x(m, n).sum(axis=0), rows summed in order (bias gradient).

        ``x`` has unit stride along its last axis.
        """

    def linear_forward(self, out: np.ndarray, x: np.ndarray, weight: np.ndarray,
                       bias: Optional[np.ndarray], activation: Optional[str] = None,
                       activation_param: float = 0.0) -> None:
        """out(N, out_f) := act(x(N, in_f) @ weight(out_f, in_f).T + bias), bias in the epilogue."""

    def linear_backward(self, grad_x: Optional[np.ndarray], grad_weight: Optional[np.ndarray],
                        grad_bias: Optional[np.ndarray], grad_out: np.ndarray, x: np.ndarray,
                        weight: np.ndarray, accumulate: bool, activation: Optional[str] = None,
                        pre_activation: Optional[np.ndarray] = None,
                        activation_param: float = 0.0) -> None:
        """Gradients of Linear given grad_out(N, out_f), x(N, in_f), weight(out_f, in_f).

        With ``activation`` (one of EPILOGUES), the layer is y = act(z), z = x @ weight.T + b,
        ``grad_out`` is dL/dy and ``pre_activation`` is z (N, out_f), C-contiguous; the
        kernels use g = grad_out * act'(z) (fused into the packing of grad_out where the
        backend packs). Without it, g = grad_out. Then
        grad_x(N, in_f) := g @ weight (always overwritten; skipped if None);
        grad_weight(out_f, in_f) [+]= g.T @ x; grad_bias(out_f) [+]= g.sum(0)
        (added to the existing values when ``accumulate``; each skipped if None).
        """
