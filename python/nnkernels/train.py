"""Training loop: fit, evaluate, predict, EarlyStopping, History.

``fit`` is deliberately a plain loop: one epoch = shuffled mini-batches of
``train_step`` (forward, loss, backward, optional clipping, optimizer step),
then validation, scheduler, callbacks and early stopping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from . import nn
from .data import DataLoader
from .optim.lr_scheduler import OneCycleLR, ReduceLROnPlateau
from .utils import clip_grad_norm_

__all__ = ["fit", "evaluate", "predict", "train_step", "EarlyStopping", "History"]


@dataclass
class History:
    """Per-epoch records of one ``fit`` call (lists indexed by epoch)."""

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)  # classification losses only
    lr: list = field(default_factory=list)
    seconds: list = field(default_factory=list)  # wall time of each epoch (train + validation)
    stopped_epoch: Optional[int] = None  # set when early stopping ended training
    best_epoch: Optional[int] = None

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def as_dict(self) -> dict:
        return {"train_loss": self.train_loss, "val_loss": self.val_loss,
                "val_accuracy": self.val_accuracy, "lr": self.lr, "seconds": self.seconds,
                "stopped_epoch": self.stopped_epoch, "best_epoch": self.best_epoch}


class EarlyStopping:
    """Stop when ``monitor`` ("val_loss", "train_loss" or "val_accuracy") has not
    improved by more than ``min_delta`` for ``patience`` epochs; with
    ``restore_best`` the model gets the weights of its best epoch back."""

    def __init__(self, patience: int = 5, min_delta: float = 0.0, monitor: str = "val_loss",
                 mode: Optional[str] = None, restore_best: bool = True) -> None:
        if monitor not in ("val_loss", "train_loss", "val_accuracy"):
            raise ValueError(f"monitor: expected 'val_loss', 'train_loss' or 'val_accuracy', got {monitor!r}")
        self.patience = int(patience)
        self.min_delta = abs(float(min_delta))
        self.monitor = monitor
        self.mode = mode or ("max" if monitor == "val_accuracy" else "min")
        self.restore_best = restore_best
        self.reset()

    def reset(self) -> None:
        self.best = np.inf if self.mode == "min" else -np.inf
        self.best_epoch: Optional[int] = None
        self.best_state = None
        self.wait = 0

    def update(self, epoch: int, value: float, model: nn.Module) -> bool:
        """Record this epoch's value; True when training should stop."""
        better = (value < self.best - self.min_delta) if self.mode == "min" else \
            (value > self.best + self.min_delta)
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = model.state_dict()
            return False
        self.wait += 1
        return self.wait >= self.patience


def _loader(data, batch_size: int, shuffle: bool, seed) -> DataLoader:
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return DataLoader(data[0], data[1], batch_size=batch_size, shuffle=shuffle, seed=seed)
    raise TypeError("data: expected an (X, y) pair or a DataLoader")


def _is_classification(loss_fn) -> bool:
    return isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss, nn.BCEWithLogitsLoss, nn.BCELoss))


def _n_correct(loss_fn, out: np.ndarray, y: np.ndarray) -> int:
    if isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)):
        if y.ndim == out.ndim:  # class probabilities
            y = y.argmax(axis=-1)
        return int(np.sum(out.argmax(axis=-1) == y))
    threshold = 0.0 if isinstance(loss_fn, nn.BCEWithLogitsLoss) else 0.5
    return int(np.sum((out > threshold) == (y > 0.5)))


def _cast_input(model: nn.Module, x: np.ndarray) -> np.ndarray:
    # Data stored as uint8/float64 is converted batch by batch to the model's dtype.
    return x if x.dtype == model.dtype else x.astype(model.dtype)


def train_step(model: nn.Module, loss_fn, optimizer, x: np.ndarray, y: np.ndarray,
               clip_grad_norm: Optional[float] = None) -> float:
    """One optimisation step on a batch; returns the batch loss."""
    fused = getattr(model, "train_step", None)
    if fused is not None and clip_grad_norm is None:
        # Issue 8 hook: a model with a fused native train step does all of the below in one call.
        return float(fused(x, y, loss_fn, optimizer))
    optimizer.zero_grad()
    out = model(x)
    loss = loss_fn(out, y)
    model.backward(loss_fn.backward(), need_input_grad=False)
    if clip_grad_norm is not None:
        clip_grad_norm_(model.parameters(), clip_grad_norm)
    optimizer.step()
    return loss


def fit(model: nn.Module, loss_fn, optimizer, train, val=None, *, epochs: int = 1,
        batch_size: int = 64, scheduler=None, early_stopping: Optional[EarlyStopping] = None,
        clip_grad_norm: Optional[float] = None, callbacks: Sequence[Callable] = (),
        progress: bool = True, shuffle: bool = True, seed=None) -> History:
    """Train ``model`` for ``epochs`` epochs; returns a :class:`History`.

    ``train``/``val``: ``(X, y)`` arrays or DataLoaders. ``scheduler`` is
    stepped once per batch (OneCycleLR), with the monitored loss
    (ReduceLROnPlateau: val loss, else train loss) or once per epoch (others).
    ``callbacks``: ``cb(epoch, logs, model)`` after each epoch; returning True
    stops training. ``progress``: a tqdm bar per epoch.
    """
    train_dl = _loader(train, batch_size, shuffle, seed)
    val_data = None if val is None else _loader(val, batch_size, False, None)
    classification = _is_classification(loss_fn)
    per_batch_sched = isinstance(scheduler, OneCycleLR)
    hist = History()
    if early_stopping is not None:
        early_stopping.reset()
    start_epoch = 0
    # Issue 10 hook (resume=): restore model/optimizer/scheduler/history and set start_epoch here.

    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        batches = _progress(train_dl, progress, f"epoch {epoch + 1}/{epochs}")
        for xb, yb in batches:
            loss = train_step(model, loss_fn, optimizer, _cast_input(model, xb), yb, clip_grad_norm)
            total += loss * len(xb)
            count += len(xb)
            if per_batch_sched:
                scheduler.step()
            if progress:
                batches.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if progress:
            batches.close()
        hist.train_loss.append(total / max(count, 1))
        hist.lr.append(optimizer.param_groups[0]["lr"])

        logs = {"epoch": epoch, "train_loss": hist.train_loss[-1]}
        if val_data is not None:
            res = evaluate(model, val_data.X, val_data.y, loss_fn=loss_fn,
                           batch_size=max(val_data.batch_size, 1024))
            hist.val_loss.append(res["loss"])
            logs["val_loss"] = res["loss"]
            if classification:
                hist.val_accuracy.append(res["accuracy"])
                logs["val_accuracy"] = res["accuracy"]

        if scheduler is not None and not per_batch_sched:
            if isinstance(scheduler, ReduceLROnPlateau):
                scheduler.step(logs.get("val_loss", logs["train_loss"]))
            else:
                scheduler.step()
        hist.seconds.append(time.perf_counter() - t0)
        logs["seconds"] = hist.seconds[-1]
        if progress:
            _print_epoch(logs, epochs)

        # Issue 10 hook (checkpoint=): save model/optimizer/scheduler/history here.
        stop = any(bool(cb(epoch, logs, model)) for cb in callbacks)
        if early_stopping is not None:
            key = early_stopping.monitor
            if key not in logs:
                raise ValueError(f"early_stopping monitors {key!r}, which needs val= data")
            if early_stopping.update(epoch, logs[key], model):
                stop = True
                hist.stopped_epoch = epoch
        if stop:
            break

    if early_stopping is not None:
        hist.best_epoch = early_stopping.best_epoch
        if early_stopping.restore_best and early_stopping.best_state is not None:
            model.load_state_dict(early_stopping.best_state)
    return hist


def _progress(dl, enabled: bool, desc: str):
    if not enabled:
        return dl
    from tqdm import tqdm
    return tqdm(dl, desc=desc, total=len(dl), leave=False, unit="batch", dynamic_ncols=True)


def _print_epoch(logs: dict, epochs: int) -> None:
    from tqdm import tqdm
    parts = [f"epoch {logs['epoch'] + 1}/{epochs}", f"train_loss {logs['train_loss']:.4f}"]
    if "val_loss" in logs:
        parts.append(f"val_loss {logs['val_loss']:.4f}")
    if "val_accuracy" in logs:
        parts.append(f"val_acc {logs['val_accuracy']:.4f}")
    parts.append(f"{logs['seconds']:.2f}s")
    tqdm.write("  ".join(parts))


def predict(model: nn.Module, X, *, batch_size: int = 1024) -> np.ndarray:
    """``model(X)`` in eval mode, in batches (the previous mode is restored)."""
    X = np.asarray(X)
    was_training = model.training
    model.eval()
    try:
        outs = [model(_cast_input(model, np.ascontiguousarray(X[i:i + batch_size])))
                for i in range(0, X.shape[0], batch_size)]
    finally:
        model.train(was_training)
    if not outs:
        return np.empty((0,), dtype=model.dtype)
    return np.concatenate(outs, axis=0)


def evaluate(model: nn.Module, X, y, *, loss_fn=None, batch_size: int = 1024) -> dict:
    """Loss (sample-weighted mean over batches; needs ``loss_fn``) and, for
    classification (integer ``y`` or a classification loss), accuracy — in eval mode."""
    X, y = np.asarray(X), np.asarray(y)
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    classification = _is_classification(loss_fn) if loss_fn is not None else y.dtype.kind in "iu"
    acc_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    try:
        for i in range(0, X.shape[0], batch_size):
            xb = _cast_input(model, np.ascontiguousarray(X[i:i + batch_size]))
            yb = y[i:i + batch_size]
            out = model(xb)
            if loss_fn is not None:
                total += loss_fn(out, yb) * len(xb)
            if classification:
                correct += _n_correct(acc_fn, out, yb)
    finally:
        model.train(was_training)
    n = max(X.shape[0], 1)
    res = {}
    if loss_fn is not None:
        res["loss"] = total / n
    if classification:
        res["accuracy"] = correct / n
    return res
