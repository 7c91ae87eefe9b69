"""Loss ops. Each returns ``(loss, grad_input)`` from one call:

- ``loss``: for reduction "mean"/"sum" a NumPy scalar of the input's dtype
  (``np.float32`` / ``np.float64``; ``float(loss)`` gives a Python float);
  for reduction "none" an array of per-sample losses with PyTorch's shape:
  (N,) for softmax_cross_entropy / nll_loss (0-d for an unbatched (C,) input),
  the input's shape for the elementwise losses.
- ``grad_input``: d loss / d input, the input's shape and dtype (for
  reduction "none": the gradient of the *sum* of the per-sample losses), or
  None when ``with_grad=False``.

Semantics are PyTorch's (``torch.nn.functional``), including weighted means
with ``weight`` and ``ignore_index``. Bad input raises TypeError/ValueError
naming the argument (a class index out of range names the index and its
position). ``backend=`` picks "cpp", "numba" or "numpy".
"""

from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

from .._native import _C
from ..backends import get_backend, resolve
from ._checks import FLOAT_DTYPES, as_float_array, check_finite_scalar, require_ndim

__all__ = ["softmax_cross_entropy", "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "huber_loss",
           "binary_cross_entropy", "bce_with_logits", "kl_div"]

_REDUCTIONS = ("mean", "sum", "none")
_INT64 = np.dtype(np.int64)


def _contig(x: np.ndarray) -> np.ndarray:
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def _reduction(reduction, allowed=_REDUCTIONS) -> str:
    if reduction not in allowed:
        raise ValueError(f"reduction: expected one of {allowed}, got {reduction!r}")
    return reduction


def _int_arg(v, name: str) -> int:
    if type(v) is int:
        return v
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    return int(v)


def _logits_2d(x, name: str):
    x = _contig(as_float_array(x, name))
    if x.ndim not in (1, 2):
        raise ValueError(f"{name}: expected shape (N, C) or (C,), got {x.shape}")
    if x.shape[-1] == 0:
        raise ValueError(f"{name}: expected at least one class, got shape {x.shape}")
    return x, (x if x.ndim == 2 else x.reshape(1, -1))


def _as_target_array(target) -> np.ndarray:
    if isinstance(target, np.ndarray):
        return target
    if isinstance(target, (list, tuple, numbers.Number, np.generic)) and not isinstance(target, bool):
        return np.asarray(target)
    raise TypeError(f"target: expected a numpy array, got {type(target).__name__}")


def _class_indices(t: np.ndarray, x: np.ndarray, c: int, ignore_index: int, check: bool = True) -> np.ndarray:
    """target as C-contiguous int64 (N,), every entry in [0, C) or == ignore_index (``check=False``:
    left to a backend whose kernel makes the same check with the same error, the C++ one)."""
    want = (x.shape[0],) if x.ndim == 2 else ()
    if t.shape != want:
        raise ValueError(f"target: class indices must have shape {want} for input of shape {x.shape}, "
                         f"got {t.shape} (batch sizes differ)")
    if t.ndim != 1:
        t = t.reshape(-1)
    if t.dtype != _INT64:
        t = t.astype(np.int64)
    t = _contig(t)
    if check:
        # one native pass (with the GIL held): ValueError naming the first bad index and its position
        _C.check_class_indices(t, c, ignore_index)
    return t


def _weight(weight, c: int, dt) -> Optional[np.ndarray]:
    if weight is None:
        return None
    w = as_float_array(weight, "weight")
    require_ndim(w, "weight", 1)
    if w.shape[0] != c:
        raise ValueError(f"weight: expected shape ({c},) (one weight per class), got {w.shape}")
    return _contig(w.astype(dt, copy=False))


def _result(total: float, losses, reduction: str, dt, unbatched: bool):
    if reduction == "none":
        return losses.reshape(()) if unbatched else losses
    return dt.type(total)


def softmax_cross_entropy(logits, target, *, reduction: str = "mean", label_smoothing: float = 0.0,
                          ignore_index: int = -100, weight=None, with_grad: bool = True,
                          backend: Optional[str] = None):
    """Fused softmax + cross-entropy: ``(loss, d loss / d logits)`` from one pass over the logits.

    ``logits``: (N, C) or (C,). ``target``: class indices of any integer dtype,
    shape (N,) (or () for unbatched), or class probabilities with the logits'
    shape — as ``torch.nn.functional.cross_entropy``, whose meaning of
    ``weight`` (C,), ``ignore_index`` and ``label_smoothing`` is kept: the
    "mean" of index targets divides by the summed weights of the non-ignored
    targets; the "mean" of probability targets divides by N.
    """
    if (type(logits) is np.ndarray and type(target) is np.ndarray and logits.ndim == 2 and target.ndim == 1
            and logits.dtype in FLOAT_DTYPES and target.dtype == _INT64 and logits.shape[1] > 0
            and target.shape[0] == logits.shape[0] and logits.flags.c_contiguous and target.flags.c_contiguous
            and weight is None and type(ignore_index) is int and type(label_smoothing) is float
            and label_smoothing == 0.0 and reduction in ("mean", "sum") and with_grad
            and (backend or get_backend()) in ("cpp", "numba")):
        # The training-loop call (float (N, C) logits, int64 (N,) indices, defaults) on the C++ backend,
        # whose binding makes every remaining check with the same errors (class-index range included):
        # the general path below costs ~1 us more per call, felt at small N. The Numba backend: the
        # same, with the native class-index check first.
        grad = np.empty_like(logits)
        if (backend or get_backend()) == "cpp":
            total = _C.cross_entropy(grad, None, logits, target, None, ignore_index, 0.0, reduction == "mean")
        else:
            _C.check_class_indices(target, logits.shape[1], ignore_index)
            total = resolve("numba").softmax_cross_entropy(grad, None, logits, target, None, ignore_index, 0.0,
                                                           reduction == "mean")
        return logits.dtype.type(total), grad
    x, x2 = _logits_2d(logits, "logits")
    n, c = x2.shape
    dt = x.dtype
    reduction = _reduction(reduction)
    ignore_index = _int_arg(ignore_index, "ignore_index")
    eps = check_finite_scalar(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {eps}")
    w = _weight(weight, c, dt)
    t = _as_target_array(target)
    be = resolve(backend)
    if t.dtype.kind in "iu":
        # the C++ binding makes the same class-index check (same ValueError) in its own pass
        t2 = _class_indices(t, x, c, ignore_index, check=be.name != "cpp")
    elif t.dtype.kind == "f":
        if t.shape != x.shape:
            raise ValueError(f"target: class probabilities must have the logits' shape {x.shape}, "
                             f"got {t.shape}")
        t2 = _contig(t.astype(dt, copy=False)).reshape(x2.shape)
    else:
        raise TypeError(f"target: expected integer class indices or float class probabilities, "
                        f"got dtype {t.dtype}")
    grad = np.empty(x.shape, dtype=dt) if with_grad else None
    losses = np.empty(n, dtype=dt) if reduction == "none" else None
    total = be.softmax_cross_entropy(
        grad if grad is None or x.ndim == 2 else grad.reshape(x2.shape), losses, x2, t2, w, ignore_index, eps,
        reduction == "mean")
    return _result(total, losses, reduction, dt, x.ndim == 1), grad


#: PyTorch's name for the same op
cross_entropy = softmax_cross_entropy


def nll_loss(log_probs, target, *, weight=None, ignore_index: int = -100, reduction: str = "mean",
             with_grad: bool = True, backend: Optional[str] = None):
    """Negative log-likelihood of log-probabilities (N, C) or (C,) at integer class indices.

    ``loss_n = -weight[y_n] * log_probs[n, y_n]``; "mean" divides by the summed
    weights of the non-ignored targets (PyTorch).
    """
    x, x2 = _logits_2d(log_probs, "log_probs")
    n, c = x2.shape
    dt = x.dtype
    reduction = _reduction(reduction)
    ignore_index = _int_arg(ignore_index, "ignore_index")
    w = _weight(weight, c, dt)
    t = _as_target_array(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"target: expected integer class indices, got dtype {t.dtype}")
    t2 = _class_indices(t, x, c, ignore_index)
    grad = np.empty(x.shape, dtype=dt) if with_grad else None
    losses = np.empty(n, dtype=dt) if reduction == "none" else None
    total = resolve(backend).nll_loss(None if grad is None else grad.reshape(x2.shape), losses, x2, t2, w,
                                      ignore_index, reduction == "mean")
    return _result(total, losses, reduction, dt, x.ndim == 1), grad


# ---- elementwise losses -------------------------------------------------------

def _pair(input, target):
    x = _contig(as_float_array(input, "input"))
    t = _as_target_array(target)
    if t.dtype.kind in "iub" and not isinstance(target, np.ndarray):
        t = t.astype(x.dtype)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"target: expected a float32 or float64 array, got dtype {t.dtype}")
    if t.shape != x.shape:
        raise ValueError(f"target: expected the input's shape {x.shape}, got {t.shape}")
    return x, _contig(t.astype(x.dtype, copy=False))


def _as_2d(a: np.ndarray) -> np.ndarray:
    k = a.shape[-1] if a.ndim else 1
    r = int(np.prod(a.shape[:-1])) if a.ndim else 1
    return a.reshape(r, k)


def _pointwise(name, input, target, reduction, with_grad, backend, param=0.0, pos_weight=None,
               allowed=_REDUCTIONS):
    x, t = _pair(input, target)
    reduction = _reduction(reduction, allowed)
    dt = x.dtype
    if reduction == "mean":
        scale = 1.0 / x.size if x.size else float("nan")
    elif reduction == "batchmean":
        nb = x.shape[0] if x.ndim else 1
        scale = 1.0 / nb if nb else float("nan")
    else:
        scale = 1.0
    grad = np.empty(x.shape, dtype=dt) if with_grad else None
    losses = np.empty(x.shape, dtype=dt) if reduction == "none" else None
    total = resolve(backend).pointwise_loss(
        None if grad is None else _as_2d(grad), None if losses is None else _as_2d(losses),
        _as_2d(x), _as_2d(t), pos_weight, name, param, scale)
    return (losses if reduction == "none" else dt.type(total)), grad


def mse_loss(input, target, *, reduction: str = "mean", with_grad: bool = True, backend=None):
    """Mean squared error (input - target)^2; gradient 2 (input - target) / n for "mean"."""
    return _pointwise("mse", input, target, reduction, with_grad, backend)


def l1_loss(input, target, *, reduction: str = "mean", with_grad: bool = True, backend=None):
    """|input - target|; gradient sign(input - target) (0 at equality)."""
    return _pointwise("l1", input, target, reduction, with_grad, backend)


def huber_loss(input, target, *, delta: float = 1.0, reduction: str = "mean", with_grad: bool = True,
               backend=None):
    """0.5 d^2 if |d| < delta else delta (|d| - delta/2), d = input - target."""
    delta = check_finite_scalar(delta, "delta")
    if delta <= 0:
        raise ValueError(f"delta: expected a positive value, got {delta}")
    return _pointwise("huber", input, target, reduction, with_grad, backend, param=delta)


def binary_cross_entropy(input, target, *, reduction: str = "mean", with_grad: bool = True, backend=None):
    """-(t log p + (1 - t) log(1 - p)) on probabilities p in [0, 1], logs clamped at -100 (PyTorch)."""
    x, _ = _pair(input, target)
    if x.size:
        bad = (x < 0) | (x > 1)  # NaN passes (and propagates)
        if bad.any():
            pos = np.unravel_index(int(np.argmax(bad)), x.shape)
            raise ValueError(f"input: all elements must be probabilities in [0, 1]; got {x[pos]} at "
                             f"position {tuple(int(i) for i in pos)}")
    return _pointwise("bce", input, target, reduction, with_grad, backend)


def bce_with_logits(input, target, *, pos_weight=None, reduction: str = "mean", with_grad: bool = True,
                    backend=None):
    """Binary cross-entropy on logits (numerically stable; PyTorch's
    ``binary_cross_entropy_with_logits``). ``pos_weight``: a number or an array
    of shape (K,) broadcast along the last axis (K = input.shape[-1])."""
    x = as_float_array(input, "input")
    pw = None
    if pos_weight is not None:
        k = x.shape[-1] if x.ndim else 1
        pw = np.asarray(pos_weight) if not isinstance(pos_weight, np.ndarray) else pos_weight
        if pw.dtype.kind not in "iuf":
            raise TypeError(f"pos_weight: expected a float array or number, got dtype {pw.dtype}")
        if pw.ndim > 1 or (pw.ndim == 1 and pw.shape[0] not in (1, k)):
            raise ValueError(f"pos_weight: expected a number or shape ({k},), got {pw.shape}")
        pw = np.ascontiguousarray(np.broadcast_to(pw.astype(x.dtype), (k,)))
    return _pointwise("bce_logits", input, target, reduction, with_grad, backend, pos_weight=pw)


def kl_div(input, target, *, reduction: str = "mean", log_target: bool = False, with_grad: bool = True,
           backend=None):
    """KL divergence with ``input`` = log-probabilities: target (log target - input)
    (``exp(target) (target - input)`` when ``log_target``). Reductions: "mean"
    (over all elements, as PyTorch), "batchmean", "sum", "none"."""
    return _pointwise("kl_div_log" if log_target else "kl_div", input, target, reduction, with_grad,
                      backend, allowed=("mean", "batchmean", "sum", "none"))
