"""optim family: one fused in-place update per optimizer (PyTorch's update rules).

Every kernel makes ONE pass over its arrays: for each element it reads the
parameter, its gradient and the optimizer state, and writes the new parameter
and state. No temporaries. The arrays are usually the flat buffers of a whole
parameter group (see :mod:`nnkernels.nn._flat`), so one call updates every
parameter of a model.

Contract: all arrays have the same dtype (float32/float64) and the same
shape, are C-contiguous and do not overlap (checked by the ops layer); they
are treated as flat vectors of ``n = param.size`` elements. In-place arrays
come first (param, then state), then the gradient (read only), then scalars.
Arithmetic is done in the arrays' dtype, in the order PyTorch's single-tensor
(for-loop) implementation uses on CPU, with the scalars rounded to that dtype.
Scalars derived from the step count (bias corrections, decayed learning
rate) are computed in double precision, as Python does in PyTorch.
"""

from __future__ import annotations

from typing import Optional, Protocol

import numpy as np


class OptimKernels(Protocol):
    def sgd_step(self, param: np.ndarray, momentum_buf: Optional[np.ndarray], grad: np.ndarray,
                 lr: float, momentum: float, dampening: float, weight_decay: float,
                 nesterov: bool, maximize: bool, first_step: bool) -> None:
        """SGD (torch.optim.SGD), param(n), momentum_buf(n) or None when momentum == 0:

            g = -grad if maximize else grad;  g += weight_decay * param (if weight_decay)
            if momentum: buf = g if first_step else momentum * buf + (1 - dampening) * g
                         g = g + momentum * buf if nesterov else buf
            param -= lr * g
        """

    def adam_step(self, param: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
                  max_exp_avg_sq: Optional[np.ndarray], grad: np.ndarray, step: int, lr: float,
                  beta1: float, beta2: float, eps: float, weight_decay: float, amsgrad: bool,
                  maximize: bool, decoupled: bool) -> None:
        """Adam / AdamW (torch.optim.Adam, AdamW), all arrays (n); ``step`` counts from 1:

            g = -grad if maximize else grad
            if weight_decay: param *= 1 - lr * wd (decoupled, AdamW) or g += wd * param (Adam)
            exp_avg = lerp(exp_avg, g, 1 - beta1);  exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) g^2
            v = max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq) if amsgrad else exp_avg_sq
            param -= lr / (1 - beta1^step) * exp_avg / (sqrt(v) / sqrt(1 - beta2^step) + eps)

        ``max_exp_avg_sq`` is None unless ``amsgrad``.
        """

    def adam_step_multi(self, params: list, exp_avgs: list, exp_avg_sqs: list,
                        max_exp_avg_sqs: Optional[list], grads: list, steps: list, lr: float,
                        beta1: float, beta2: float, eps: float, weight_decay: float, amsgrad: bool,
                        maximize: bool, decoupled: bool) -> None:
        """``adam_step`` for each parameter of a list (entry i with ``steps[i]``), in one call:
        the multi-tensor step of optimizers whose parameters are separate arrays
        (nnkernels.torch.Adam). Same contract per entry; entries share one dtype and
        do not overlap each other."""

    def rmsprop_step(self, param: np.ndarray, square_avg: np.ndarray,
                     momentum_buf: Optional[np.ndarray], grad_avg: Optional[np.ndarray],
                     grad: np.ndarray, lr: float, alpha: float, eps: float, weight_decay: float,
                     momentum: float, centered: bool, maximize: bool) -> None:
        """RMSprop (torch.optim.RMSprop), all arrays (n):

            g = -grad if maximize else grad;  g += weight_decay * param (if weight_decay)
            square_avg = alpha * square_avg + (1 - alpha) * g^2
            if centered: grad_avg = lerp(grad_avg, g, 1 - alpha); avg = sqrt(square_avg - grad_avg^2) + eps
            else:        avg = sqrt(square_avg) + eps
            if momentum > 0: buf = momentum * buf + g / avg; param -= lr * buf
            else:            param -= lr * g / avg

        ``momentum_buf`` is None unless momentum > 0; ``grad_avg`` None unless centered.
        """

    def adagrad_step(self, param: np.ndarray, state_sum: np.ndarray, grad: np.ndarray, step: int,
                     lr: float, lr_decay: float, weight_decay: float, eps: float,
                     maximize: bool) -> None:
        """Adagrad (torch.optim.Adagrad), all arrays (n); ``step`` counts from 1:

            g = -grad if maximize else grad;  g += weight_decay * param (if weight_decay)
            clr = lr / (1 + (step - 1) * lr_decay)
            state_sum += g^2;  param -= clr * g / (sqrt(state_sum) + eps)
        """
