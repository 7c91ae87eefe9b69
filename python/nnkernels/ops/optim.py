"""Optimizer update ops: one fused, in-place pass per call (PyTorch's rules).

Each op updates ``param`` and its state arrays in place from ``grad`` and
returns ``param``. The arrays are usually the flat buffers of a parameter
group (:func:`nnkernels.nn.flatten_parameters`), so one call updates every
parameter of a model. In-place arrays must be exactly ``param``'s dtype and
shape, C-contiguous and writeable: they are never converted or copied (a
silent copy would drop the update). The formulas are in
:mod:`nnkernels.backends.interface.optim`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..backends import resolve
from ._checks import FLOAT_DTYPES, check_finite_scalar, check_range

__all__ = ["sgd_step", "adam_step", "rmsprop_step", "adagrad_step"]


def _check_arrays(written: dict, read: dict) -> None:
    """param first in ``written``; every array like param; in-place ones writeable; no overlap."""
    items = [(k, v, True) for k, v in written.items()] + [(k, v, False) for k, v in read.items()]
    pname, p, _ = items[0]
    for name, a, w in items:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}: expected a numpy array, got {type(a).__name__}")
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: expected dtype float32 or float64, got {a.dtype}")
        if a.dtype != p.dtype:
            raise TypeError(f"dtype mismatch: {pname} is {p.dtype} but {name} is {a.dtype} "
                            "(optimizer state is updated in place and never converted)")
        if a.shape != p.shape:
            raise ValueError(f"{name}: expected shape {p.shape} (like {pname}), got {a.shape}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: expected a C-contiguous array")
        if w and not a.flags.writeable:
            raise ValueError(f"{name}: array is read-only but is updated in place")
    for i, (n1, a1, w1) in enumerate(items):
        for n2, a2, w2 in items[i + 1:]:
            if (w1 or w2) and a1.size and np.may_share_memory(a1, a2):
                raise ValueError(f"{n1} and {n2} overlap in memory")


def _step_count(step) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step: expected an int, got {type(step).__name__}")
    if step < 1:
        raise ValueError(f"step: expected a step count >= 1, got {step}")
    return int(step)


def _needed(a, name: str, why: str):
    if a is None:
        raise ValueError(f"{name}: required when {why}")
    return a


def sgd_step(param: np.ndarray, grad: np.ndarray, momentum_buf: Optional[np.ndarray] = None, *,
             lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
             nesterov: bool = False, maximize: bool = False, first_step: bool = False,
             backend: Optional[str] = None) -> np.ndarray:
    """One torch.optim.SGD step in place. ``momentum_buf`` is needed when
    ``momentum != 0``; on ``first_step`` it is initialised to the gradient
    (as PyTorch does), afterwards ``buf = momentum * buf + (1 - dampening) * g``."""
    lr, momentum, weight_decay = (check_range(v, n, 0.0) for v, n in (
        (lr, "lr"), (momentum, "momentum"), (weight_decay, "weight_decay")))
    dampening = check_finite_scalar(dampening, "dampening")
    written = {"param": param}
    if momentum != 0.0:
        written["momentum_buf"] = _needed(momentum_buf, "momentum_buf", "momentum != 0")
    _check_arrays(written, {"grad": grad})
    resolve(backend).sgd_step(param, written.get("momentum_buf"), grad, lr, momentum, dampening,
                              weight_decay, bool(nesterov), bool(maximize), bool(first_step))
    return param


def adam_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, *,
              step: int, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
              eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
              max_exp_avg_sq: Optional[np.ndarray] = None, maximize: bool = False,
              decoupled: bool = False, backend: Optional[str] = None) -> np.ndarray:
    """One torch.optim.Adam step in place (``decoupled=True``: AdamW's decoupled
    weight decay). ``step`` is the step number counting from 1 (for the bias
    corrections); ``max_exp_avg_sq`` is needed when ``amsgrad``."""
    step = _step_count(step)
    lr, eps, weight_decay = (check_range(v, n, 0.0) for v, n in (
        (lr, "lr"), (eps, "eps"), (weight_decay, "weight_decay")))
    beta1, beta2 = (check_range(v, n, 0.0, 1.0, hi_open=True) for v, n in ((beta1, "beta1"), (beta2, "beta2")))
    written = {"param": param, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    if amsgrad:
        written["max_exp_avg_sq"] = _needed(max_exp_avg_sq, "max_exp_avg_sq", "amsgrad=True")
    _check_arrays(written, {"grad": grad})
    resolve(backend).adam_step(param, exp_avg, exp_avg_sq, written.get("max_exp_avg_sq"), grad, step,
                               lr, beta1, beta2, eps, weight_decay, bool(amsgrad), bool(maximize),
                               bool(decoupled))
    return param


def rmsprop_step(param: np.ndarray, grad: np.ndarray, square_avg: np.ndarray, *, lr: float = 1e-2,
                 alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False,
                 momentum_buf: Optional[np.ndarray] = None, grad_avg: Optional[np.ndarray] = None,
                 maximize: bool = False, backend: Optional[str] = None) -> np.ndarray:
    """One torch.optim.RMSprop step in place. ``momentum_buf`` is needed when
    ``momentum > 0``, ``grad_avg`` when ``centered``."""
    lr, alpha, eps, weight_decay, momentum = (check_range(v, n, 0.0) for v, n in (
        (lr, "lr"), (alpha, "alpha"), (eps, "eps"), (weight_decay, "weight_decay"),
        (momentum, "momentum")))
    written = {"param": param, "square_avg": square_avg}
    if momentum > 0.0:
        written["momentum_buf"] = _needed(momentum_buf, "momentum_buf", "momentum > 0")
    if centered:
        written["grad_avg"] = _needed(grad_avg, "grad_avg", "centered=True")
    _check_arrays(written, {"grad": grad})
    resolve(backend).rmsprop_step(param, square_avg, written.get("momentum_buf"),
                                  written.get("grad_avg"), grad, lr, alpha, eps, weight_decay,
                                  momentum, bool(centered), bool(maximize))
    return param


def adagrad_step(param: np.ndarray, grad: np.ndarray, state_sum: np.ndarray, *, step: int,
                 lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 eps: float = 1e-10, maximize: bool = False,
                 backend: Optional[str] = None) -> np.ndarray:
    """One torch.optim.Adagrad step in place; ``step`` counts from 1."""
    step = _step_count(step)
    lr, lr_decay, weight_decay, eps = (check_range(v, n, 0.0) for v, n in (
        (lr, "lr"), (lr_decay, "lr_decay"), (weight_decay, "weight_decay"), (eps, "eps")))
    _check_arrays({"param": param, "state_sum": state_sum}, {"grad": grad})
    resolve(backend).adagrad_step(param, state_sum, grad, step, lr, lr_decay, weight_decay, eps,
                                  bool(maximize))
    return param
