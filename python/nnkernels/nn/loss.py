"""Loss modules with PyTorch's constructor arguments.

``loss = loss_fn(input, target)`` returns a Python float (an array for
reduction="none") and keeps d loss / d input, computed in the same fused
call; ``loss_fn.backward()`` returns it (for reduction="none", pass the
gradient of the per-element losses: ``loss_fn.backward(grad_losses)``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import ops


class _Loss:
    """Base: subclasses implement ``_compute(input, target) -> (loss, grad)``."""

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = reduction
        self._grad: Optional[np.ndarray] = None

    def __call__(self, input, target):
        if not isinstance(input, np.ndarray):
            raise TypeError(f"input: expected a numpy array, got {type(input).__name__}")
        loss, grad = self._compute(input, target)
        self._grad = grad
        if self.reduction == "none":
            return loss
        return float(loss)

    forward = __call__

    def value(self, input, target):
        """The loss only (no gradient computed or kept), e.g. for evaluation."""
        loss, _ = self._compute(input, target, with_grad=False)
        return loss if self.reduction == "none" else float(loss)

    def backward(self, grad_output=None) -> np.ndarray:
        """d loss / d input of the last call (times ``grad_output`` if given)."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call the loss first")
        g = self._grad
        if self.reduction == "none":
            if grad_output is None:
                raise ValueError("grad_output: required for reduction='none' (the gradient of the "
                                 "per-element losses)")
            go = np.asarray(grad_output, dtype=g.dtype)
            if go.shape != g.shape:  # per-sample losses (N,) against (N, C) logits
                go = go.reshape(go.shape + (1,) * (g.ndim - go.ndim))
            return g * go
        if grad_output is not None:
            return g * g.dtype.type(grad_output)
        return g

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class CrossEntropyLoss(_Loss):
    """Softmax + cross-entropy on logits (N, C), targets as class indices or probabilities."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        self.weight = weight
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def _compute(self, input, target, with_grad=True):
        return ops.softmax_cross_entropy(input, target, reduction=self.reduction,
                                         label_smoothing=self.label_smoothing,
                                         ignore_index=self.ignore_index, weight=self.weight,
                                         with_grad=with_grad)


class NLLLoss(_Loss):
    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight = weight
        self.ignore_index = ignore_index

    def _compute(self, input, target, with_grad=True):
        return ops.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                            reduction=self.reduction, with_grad=with_grad)


class MSELoss(_Loss):
    def _compute(self, input, target, with_grad=True):
        return ops.mse_loss(input, target, reduction=self.reduction, with_grad=with_grad)


class L1Loss(_Loss):
    def _compute(self, input, target, with_grad=True):
        return ops.l1_loss(input, target, reduction=self.reduction, with_grad=with_grad)


class HuberLoss(_Loss):
    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        self.delta = delta

    def _compute(self, input, target, with_grad=True):
        return ops.huber_loss(input, target, delta=self.delta, reduction=self.reduction, with_grad=with_grad)


class BCELoss(_Loss):
    """Binary cross-entropy on probabilities. (``weight=`` is not supported.)"""

    def _compute(self, input, target, with_grad=True):
        return ops.binary_cross_entropy(input, target, reduction=self.reduction, with_grad=with_grad)


class BCEWithLogitsLoss(_Loss):
    def __init__(self, reduction: str = "mean", pos_weight=None) -> None:
        super().__init__(reduction)
        self.pos_weight = pos_weight

    def _compute(self, input, target, with_grad=True):
        return ops.bce_with_logits(input, target, pos_weight=self.pos_weight, reduction=self.reduction,
                                   with_grad=with_grad)


class KLDivLoss(_Loss):
    def __init__(self, reduction: str = "mean", log_target: bool = False) -> None:
        super().__init__(reduction)
        self.log_target = log_target

    def _compute(self, input, target, with_grad=True):
        return ops.kl_div(input, target, reduction=self.reduction, log_target=self.log_target,
                          with_grad=with_grad)
