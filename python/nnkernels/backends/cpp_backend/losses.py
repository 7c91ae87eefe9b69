"""Loss family, C++ backend: thin calls into nnkernels._C (the binding checks
the arguments again, including the class-index range, and releases the GIL)."""

from __future__ import annotations

from ..._native import _C

__all__ = ["softmax_cross_entropy", "nll_loss", "pointwise_loss"]


def softmax_cross_entropy(grad, losses, logits, target, weight, ignore_index, label_smoothing, mean):
    return _C.cross_entropy(grad, losses, logits, target, weight, ignore_index, label_smoothing, mean)


def nll_loss(grad, losses, log_probs, target, weight, ignore_index, mean):
    return _C.nll_loss(grad, losses, log_probs, target, weight, ignore_index, mean)


def pointwise_loss(grad, losses, input, target, pos_weight, name, param, scale):
    return _C.pointwise_loss(grad, losses, input, target, pos_weight, name, param, scale)
