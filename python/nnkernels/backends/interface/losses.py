"""Loss family: every kernel computes the loss and its gradient w.r.t. the
input in one call (the gradient of the reduced loss; for reduction "none" the
gradient of the sum of the per-sample losses).

Common arguments: ``grad`` (input's shape) or None (loss only); ``losses``
(per-sample / per-element losses, unscaled) or None; the return value is
the reduced loss ``scale * sum(losses)`` as a Python float (accumulated in
float64, rows in a fixed order).
"""

from __future__ import annotations

from typing import Optional, Protocol

import numpy as np

#: kernel-level names of the pointwise losses and the meaning of ``param``:
#:   mse          (x - t)^2
#:   l1           |x - t|
#:   huber        param = delta
#:   bce          -(t log x + (1 - t) log(1 - x)), logs clamped at -100
#:   bce_logits   (1 - t) x + lw * softplus(-x), lw = 1 + (pos_weight - 1) t
#:   kl_div       t (log t - x)           (t = 0 contributes 0)
#:   kl_div_log   exp(t) (t - x)          (target given as log-probabilities)
POINTWISE_LOSSES = ("mse", "l1", "huber", "bce", "bce_logits", "kl_div", "kl_div_log")


class LossKernels(Protocol):
    def softmax_cross_entropy(self, grad: Optional[np.ndarray], losses: Optional[np.ndarray],
                              logits: np.ndarray, target: np.ndarray, weight: Optional[np.ndarray],
                              ignore_index: int, label_smoothing: float, mean: bool) -> float:
        """Fused softmax + cross-entropy, forward and backward in one pass over logits(N, C).

        ``target``: int64 (N,) class indices (already checked to be in [0, C)
        or == ignore_index) or float (N, C) class probabilities (logits' dtype).
        ``weight``: (C,) class weights or None. With eps = label_smoothing and
        lp = log_softmax(logits), per-sample losses are (PyTorch):
          indices: (1-eps) w[y] (-lp[y]) + eps/C sum_c w[c] (-lp[c]); 0 if y == ignore_index
          probs:   -sum_c w[c] t'[c] lp[c], t' = (1-eps) t + eps/C
        ``mean``: divide by sum of w[y] over non-ignored rows (indices) or by N
        (probabilities); else the scale is 1. grad(N, C) := scale * dloss/dlogits.
        """

    def nll_loss(self, grad: Optional[np.ndarray], losses: Optional[np.ndarray], log_probs: np.ndarray,
                 target: np.ndarray, weight: Optional[np.ndarray], ignore_index: int, mean: bool) -> float:
        """Negative log-likelihood of log_probs(N, C) at int64 target(N,): loss_n = -w[y] lp[n, y].

        ``mean`` divides by sum of w[y] over non-ignored rows. grad(N, C) is
        -scale * w[y] at (n, y), 0 elsewhere.
        """

    def pointwise_loss(self, grad: Optional[np.ndarray], losses: Optional[np.ndarray], input: np.ndarray,
                       target: np.ndarray, pos_weight: Optional[np.ndarray], name: str, param: float,
                       scale: float) -> float:
        """Elementwise loss ``name`` (see POINTWISE_LOSSES) of input and target (same shape).

        Arrays are C-contiguous (R, K) (the ops layer flattens leading axes,
        K = input.shape[-1]); ``pos_weight`` (K,) is used by bce_logits only
        (None means 1).
        losses := per-element losses; grad := scale * dloss/dinput; returns
        scale * sum(losses).
        """
