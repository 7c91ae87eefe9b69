"""Training loop: fit, evaluate, predict, EarlyStopping, History.

``fit`` is deliberately a plain loop: one epoch = shuffled mini-batches of
``train_step`` (forward, loss, backward, optional clipping, optimizer step),
then validation, scheduler, callbacks and early stopping.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from . import nn, random as nnk_random
from .checkpoint import load_checkpoint, save_checkpoint
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
    fused: bool = False  # every training step ran as one fused native call (docs/fused-step.md)
    best_epoch: Optional[int] = None

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def as_dict(self) -> dict:
        return {"train_loss": self.train_loss, "val_loss": self.val_loss,
                "val_accuracy": self.val_accuracy, "lr": self.lr, "seconds": self.seconds,
                "stopped_epoch": self.stopped_epoch, "best_epoch": self.best_epoch, "fused": self.fused}


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
        # Issue 8: a model with a train_step (Sequential, MLP) runs one fused native call when it
        # can and falls back to the layer path itself (model.last_step_fused says which ran).
        return float(fused(x, y, loss_fn, optimizer))
    return _layer_train_step(model, loss_fn, optimizer, x, y, clip_grad_norm)


def _layer_train_step(model, loss_fn, optimizer, x, y, clip_grad_norm: Optional[float] = None) -> float:
    """The layer-by-layer step: zero_grad, forward, loss, backward, [clip], step."""
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
        progress: bool = True, shuffle: bool = True, seed=None, checkpoint=None,
        checkpoint_every: int = 1, resume=None) -> History:
    """Train ``model`` for ``epochs`` epochs; returns a :class:`History`.

    ``train``/``val``: ``(X, y)`` arrays or DataLoaders. ``scheduler`` is
    stepped once per batch (OneCycleLR), with the monitored loss
    (ReduceLROnPlateau: val loss, else train loss) or once per epoch (others).
    ``callbacks``: ``cb(epoch, logs, model)`` after each epoch; returning True
    stops training. ``progress``: a tqdm bar per epoch.

    ``checkpoint``: a file path; every ``checkpoint_every`` epochs (and after
    the last one) the model, optimizer, scheduler, early-stopping state,
    history, epoch and every random generator's state are written to it
    atomically (:mod:`nnkernels.checkpoint`). ``resume``: a checkpoint path
    to continue from; with the same arguments, the resumed run ends with
    bitwise the same weights as an uninterrupted one. Callbacks' own state
    is not saved.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs: expected an int >= 0, got {epochs!r}")
    _check_checkpoint_args(checkpoint, checkpoint_every, resume)
    train_dl = _loader(train, batch_size, shuffle, seed)
    val_data = None if val is None else _loader(val, batch_size, False, None)
    classification = _is_classification(loss_fn)
    per_batch_sched = isinstance(scheduler, OneCycleLR)
    hist = History()
    all_fused = True
    if early_stopping is not None:
        early_stopping.reset()
    start_epoch = 0
    if resume is not None:
        start_epoch, finished = _restore(resume, model, optimizer, scheduler, early_stopping, hist,
                                         _generators(model, train_dl))
        if finished:  # the checkpointed run had stopped early: nothing left to do
            start_epoch = epochs

    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        batches = _progress(train_dl, progress, f"epoch {epoch + 1}/{epochs}")
        for xb, yb in batches:
            loss = train_step(model, loss_fn, optimizer, _cast_input(model, xb), yb, clip_grad_norm)
            all_fused = all_fused and bool(getattr(model, "last_step_fused", False)) and clip_grad_norm is None
            total += loss * len(xb)
            count += len(xb)
            if per_batch_sched:
                scheduler.step()
            if progress:
                batches.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if progress:
            batches.close()
        hist.train_loss.append(total / max(count, 1))
        hist.fused = all_fused and count > 0
        hist.lr.append(optimizer.param_groups[0]["lr"])

        logs = {"epoch": epoch, "train_loss": hist.train_loss[-1], "fused": hist.fused}
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

        stop = any(bool(cb(epoch, logs, model)) for cb in callbacks)
        if early_stopping is not None:
            key = early_stopping.monitor
            if key not in logs:
                raise ValueError(f"early_stopping monitors {key!r}, which needs val= data")
            if early_stopping.update(epoch, logs[key], model):
                stop = True
                hist.stopped_epoch = epoch
        if checkpoint is not None and (stop or (epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
            save_checkpoint(checkpoint, _training_state(epoch + 1, stop, model, optimizer, scheduler,
                                                        early_stopping, hist, _generators(model, train_dl)))
        if stop:
            break

    if early_stopping is not None:
        hist.best_epoch = early_stopping.best_epoch
        if early_stopping.restore_best and early_stopping.best_state is not None:
            model.load_state_dict(early_stopping.best_state)
    return hist


# ---- checkpoints (issue 10) -------------------------------------------------------

def _check_checkpoint_args(checkpoint, checkpoint_every, resume) -> None:
    for name, v in (("checkpoint", checkpoint), ("resume", resume)):
        if v is not None and not isinstance(v, (str, os.PathLike)):
            raise TypeError(f"{name}: expected a file path (str or os.PathLike) or None, got {type(v).__name__}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, np.integer)) \
            or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every: expected a positive int (epochs), got {checkpoint_every!r}")
    if resume is not None and not os.path.isfile(resume):
        raise ValueError(f"resume: no checkpoint file at {os.fspath(resume)!r}")


def _generators(model: nn.Module, loader: DataLoader) -> dict:
    """Every random generator training draws from, by a stable name: the global
    one (dropout, shuffling without a seed), the loader's, and modules' own."""
    gens = {"global": nnk_random.get_rng()}
    if loader._rng is not None:
        gens["loader"] = loader._rng
    for name, m in model.named_modules():
        if isinstance(getattr(m, "_rng", None), np.random.Generator):
            gens[f"module:{name}"] = m._rng
    return gens


def _training_state(next_epoch, finished, model, optimizer, scheduler, early_stopping, hist, gens) -> dict:
    sched = None
    if scheduler is not None:  # callables (e.g. a lambda schedule) are rebuilt by the caller
        sched = {k: v for k, v in scheduler.state_dict().items() if not callable(v)}
    es = None
    if early_stopping is not None:
        es = {"best": early_stopping.best, "best_epoch": early_stopping.best_epoch,
              "wait": early_stopping.wait,
              "best_state": None if early_stopping.best_state is None else dict(early_stopping.best_state)}
    return {"epoch": next_epoch, "finished": bool(finished), "model": dict(model.state_dict()),
            "optimizer": optimizer.state_dict(), "scheduler": sched, "early_stopping": es,
            "history": hist.as_dict(), "rng": {k: g.bit_generator.state for k, g in gens.items()}}


def _restore(path, model, optimizer, scheduler, early_stopping, hist, gens) -> tuple[int, bool]:
    """Load a checkpoint into the training objects; returns (epoch to start at, stopped early)."""
    st = load_checkpoint(path)
    for part, obj in (("scheduler", scheduler), ("early_stopping", early_stopping)):
        if (st[part] is None) != (obj is None):
            raise ValueError(f"resume: the checkpoint {'has' if st[part] is not None else 'has no'} "
                             f"{part} state but fit was called {'without' if obj is None else 'with'} one")
    if set(st["rng"]) != set(gens):
        raise ValueError(f"resume: the checkpoint's random generators {sorted(st['rng'])} differ from "
                         f"this run's {sorted(gens)} (pass the same seed= and model)")
    try:
        model.load_state_dict(st["model"])
        optimizer.load_state_dict(st["optimizer"])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"resume: checkpoint {os.fspath(path)!r} does not match the model/optimizer: {exc}") from exc
    if scheduler is not None:
        scheduler.load_state_dict(st["scheduler"])
    if early_stopping is not None:
        es = st["early_stopping"]
        early_stopping.best, early_stopping.best_epoch = es["best"], es["best_epoch"]
        early_stopping.wait, early_stopping.best_state = es["wait"], es["best_state"]
    for k, v in st["history"].items():
        setattr(hist, k, v)
    for k, g in gens.items():
        g.bit_generator.state = st["rng"][k]
    return st["epoch"], st["finished"]


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
    parts.append(f"fused={logs.get('fused', False)}")
    tqdm.write("  ".join(parts))


def predict(model: nn.Module, X, *, batch_size: int = 1024) -> np.ndarray:
    """``model(X)`` in eval mode, in batches (the previous mode is restored)."""
    X = np.asarray(X)
    if hasattr(model, "predict"):  # Sequential/MLP: fused native forward when possible
        outs = [model.predict(_cast_input(model, np.ascontiguousarray(X[i:i + batch_size])))
                for i in range(0, X.shape[0], batch_size)]
        if not outs:
            return np.empty((0,), dtype=model.dtype)
        return np.concatenate(outs, axis=0)
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
                value = loss_fn.value if hasattr(loss_fn, "value") else loss_fn  # no gradient needed
                total += value(out, yb) * len(xb)
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
