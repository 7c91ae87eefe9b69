"""Fused training step for Sequential/MLP (issue 8): the planner.

``Sequential.train_step(x, y, loss_fn, optimizer)`` calls :func:`train_step`
here. When the model is a plain stack of Linear + elementwise activations
(Identity, and Dropout that is inactive: eval mode or p == 0, are skipped),
the loss is CrossEntropyLoss (class-index targets, no weight, no label
smoothing, mean) or MSELoss (mean), and the optimizer is SGD, Adam, AdamW or
RMSprop (one parameter group holding exactly the model's parameters, no
amsgrad), ONE call into the current backend's fused step does forward, loss,
backward and the optimizer update (see backends/interface/fused.py and
docs/fused-step.md). Anything else runs the layer-by-layer path
(nnkernels.train._layer_train_step) with the same results.

The plan (layer table, pointers to the optimizer's flat buffers, workspace) is
built once per (model, loss, optimizer) and cached on the model; every call
re-checks, cheaply, that it still describes the model (same flat buffers,
parameters still bound to them, same state arrays) and re-reads the
hyper-parameters, so schedulers and load_state_dict keep working.

Dropout in training mode with p > 0 is not fused (its masks come from
NumPy's generator in the layer path; a native RNG would give other masks):
such models take the layer path.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..backends import get_backend, resolve
from ..backends.interface.fused import MlpSpec, OptimConfig
from .activation import GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Tanh
from .layers import Dropout, Identity, Linear
from .loss import CrossEntropyLoss, MSELoss

_STATE_KEYS = {
    "sgd": ("momentum_buffer",),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
    "rmsprop": ("square_avg", "momentum_buffer", "grad_avg"),
}


def _activation_of(m) -> Optional[tuple]:
    if isinstance(m, ReLU):
        return ("relu", 0.0)
    if isinstance(m, LeakyReLU):
        return ("leaky_relu", m.negative_slope)
    if isinstance(m, GELU):
        return ("gelu" if m.approximate == "none" else "gelu_tanh", 0.0)
    if isinstance(m, SiLU):
        return ("silu", 0.0)
    if isinstance(m, Tanh):
        return ("tanh", 0.0)
    if isinstance(m, Sigmoid):
        return ("sigmoid", 0.0)
    return None


def layer_table(model, training: bool):
    """[(Linear, activation, param)] for a fusable module list, else None."""
    layers: list = []
    for m in model:
        if isinstance(m, Linear):
            layers.append([m, "none", 0.0])
        elif isinstance(m, Identity):
            continue
        elif isinstance(m, Dropout):
            if training and m.p > 0.0:
                return None
        else:
            act = _activation_of(m)
            if act is None or not layers or layers[-1][1] != "none":
                return None
            layers[-1][1], layers[-1][2] = act
    if not layers:
        return None
    for a, b in zip(layers, layers[1:]):
        if a[0].out_features != b[0].in_features:
            return None
    return layers


def _optimizer_kind(optimizer) -> Optional[str]:
    from ..optim.optimizer import SGD, Adam, RMSprop
    if isinstance(optimizer, Adam):
        g = optimizer.param_groups[0]
        if g["amsgrad"]:
            return None
        return "adamw" if g["decoupled_weight_decay"] else "adam"
    if isinstance(optimizer, SGD):
        return "sgd"
    if isinstance(optimizer, RMSprop):
        return "rmsprop"
    return None


def _config(kind: str, g: dict) -> OptimConfig:
    if kind == "sgd":
        return OptimConfig(weight_decay=g["weight_decay"], momentum=g["momentum"],
                           dampening=g["dampening"], nesterov=bool(g["nesterov"]),
                           maximize=bool(g["maximize"]))
    if kind in ("adam", "adamw"):
        b1, b2 = g["betas"]
        return OptimConfig(weight_decay=g["weight_decay"], beta1=b1, beta2=b2, eps=g["eps"],
                           maximize=bool(g["maximize"]))
    return OptimConfig(weight_decay=g["weight_decay"], momentum=g["momentum"], alpha=g["alpha"],
                       eps=g["eps"], centered=bool(g["centered"]), maximize=bool(g["maximize"]))


def _state_flags(kind: str, g: dict) -> tuple:
    if kind == "sgd":
        return (g["momentum"] != 0,)
    if kind == "rmsprop":
        return (g["momentum"] > 0, bool(g["centered"]))
    return ()


def _needed_state(kind: str, g: dict) -> set:
    if kind == "sgd":
        return {"momentum_buffer"} if g["momentum"] != 0 else set()
    if kind == "rmsprop":
        need = {"square_avg"}
        if g["momentum"] > 0:
            need.add("momentum_buffer")
        if g["centered"]:
            need.add("grad_avg")
        return need
    return {"exp_avg", "exp_avg_sq"}


def _loss_kind(loss_fn) -> Optional[str]:
    if type(loss_fn) is CrossEntropyLoss:
        if loss_fn.reduction == "mean" and loss_fn.weight is None and loss_fn.label_smoothing == 0.0:
            return "cross_entropy"
    elif type(loss_fn) is MSELoss:
        if loss_fn.reduction == "mean":
            return "mse"
    return None


class FusedPlan:
    """A backend's fused step bound to (model, loss kind, optimizer)."""

    def __init__(self, model, layers, loss: str, optimizer, kind: str, backend: str) -> None:
        flat = optimizer._flats[0]
        st = optimizer.state[0]
        index = {id(p): i for i, p in enumerate(flat.params)}
        w_off, b_off, dims = [], [], [layers[0][0].in_features]
        for lin, _, _ in layers:
            w_off.append(flat.offsets[index[id(lin.weight)]])
            b_off.append(flat.offsets[index[id(lin.bias)]] if lin.bias is not None else -1)
            dims.append(lin.out_features)
        self.group = g = optimizer.param_groups[0]
        self.flags = _state_flags(kind, g)
        # SGD: the momentum buffer starts as the first gradient (PyTorch)
        self.sgd_first = kind == "sgd" and "momentum_buffer" not in st
        # the optimizer's own (lazily created) flat state arrays, only those the layer
        # path would create; unused slots get a private dummy the kernel never touches
        needed = _needed_state(kind, g)
        dummy = None
        state = []
        for k in _STATE_KEYS[kind]:
            if k in needed:
                state.append(optimizer._buf(flat, st, k))
            else:
                if dummy is None:
                    dummy = np.zeros(flat.data.shape, dtype=flat.dtype)
                state.append(dummy)
        self.optimizer, self.flat, self.kind, self.loss = optimizer, flat, kind, loss
        self.state_keys = tuple(k for k in _STATE_KEYS[kind] if k in needed)
        self.state = tuple(st[k] for k in self.state_keys)
        state = tuple(state)
        self.modules = tuple(model)
        self.config = _config(kind, self.group)
        self.spec = MlpSpec(tuple(dims), tuple(a for _, a, _ in layers), tuple(p for _, _, p in layers),
                            tuple(w_off), tuple(b_off), flat.data, flat.grad, state, loss, kind,
                            self.config)
        self.backend = backend
        self.impl = resolve(backend).mlp_step_plan(self.spec)

    def still_valid(self, model, optimizer) -> bool:
        """Same modules, flat buffers, state arrays and parameters bound to them."""
        if optimizer is not self.optimizer or tuple(model) != self.modules:
            return False
        if len(optimizer._flats) != 1 or optimizer._flats[0] is not self.flat:
            return False
        if _state_flags(self.kind, self.group) != self.flags or optimizer.param_groups[0] is not self.group:
            return False
        st = optimizer.state[0]
        for k, a in zip(self.state_keys, self.state):
            if st.get(k) is not a:
                return False
        data, grad = self.flat.data, self.flat.grad
        for p in self.flat.params:
            if p.data.base is not data or p.grad.base is not grad:
                return False
        return True

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        g = self.group
        cfg = _config(self.kind, g)
        if cfg != self.config:
            self.config = cfg
            self.impl.set_optimizer(cfg)
        st = self.optimizer.state[0]
        st["step"] += 1
        t = st["step"]
        if self.kind == "sgd":  # the kernel reads t only as "first step of the momentum buffer"
            t = 1 if self.sgd_first else 2
        try:
            loss = self.impl.step(x, y, float(g["lr"]), int(t))
        except BaseException:
            st["step"] -= 1
            raise
        self.sgd_first = False
        return loss


def _plan_for(model, loss_fn, optimizer):
    """The cached plan, a new one, or None (not fusable)."""
    loss = _loss_kind(loss_fn)
    kind = _optimizer_kind(optimizer) if loss is not None else None
    if kind is None or len(optimizer.param_groups) != 1:
        return None
    backend = get_backend()
    cache = model.__dict__.setdefault("_fused_plans", {})
    key = (id(optimizer), loss, kind, backend, model.training)
    plan = cache.get(key)
    if plan is not None and plan.still_valid(model, optimizer):
        return plan
    cache.pop(key, None)
    layers = layer_table(model, model.training)
    if layers is None:
        return None
    flat = optimizer._flats[0]
    params = [p for lin, _, _ in layers for p in (lin.weight, lin.bias) if p is not None]
    if {id(p) for p in params} != {id(p) for p in flat.params} or len(params) != len(flat.params):
        return None
    try:
        flat.check_bound()
    except RuntimeError:
        return None
    if flat.dtype != model.dtype:
        return None
    plan = FusedPlan(model, layers, loss, optimizer, kind, backend)
    cache.clear()  # one live plan per model
    cache[key] = plan
    return plan


def _prepare(model, plan, x, y):
    """x, y as the fused step takes them, or None (fall back)."""
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[0] == 0:
        return None
    if x.dtype != model.dtype:
        x = x.astype(model.dtype)
    if x.strides[1] != x.itemsize:
        x = np.ascontiguousarray(x)
    y = np.asarray(y)
    if plan.loss == "cross_entropy":
        if y.ndim != 1 or y.shape[0] != x.shape[0] or y.dtype.kind not in "iu":
            return None
        if y.dtype != np.int64 or not y.flags.c_contiguous:
            y = np.ascontiguousarray(y, dtype=np.int64)
    else:
        if y.shape != (x.shape[0], plan.spec.dims[-1]):
            return None
        if y.dtype != model.dtype or not y.flags.c_contiguous:
            y = np.ascontiguousarray(y, dtype=model.dtype)
    return x, y


def train_step(model, x, y, loss_fn, optimizer) -> float:
    """Fused step when possible, else the layer path; sets ``model.last_step_fused``."""
    plan = _plan_for(model, loss_fn, optimizer)
    if plan is not None:
        xy = _prepare(model, plan, x, y)
        if xy is not None:
            try:
                loss = plan.step(*xy)
            except ValueError as exc:
                # a class index outside [0, C) (e.g. ignore_index): nothing was updated yet,
                # the layer path handles it (or raises its own error)
                if "class index" not in str(exc):
                    raise
            else:
                model.last_step_fused = True
                return loss
    from ..train import _layer_train_step
    model.last_step_fused = False
    return _layer_train_step(model, loss_fn, optimizer, x, y)


def predict(model, x: np.ndarray) -> Optional[np.ndarray]:
    """Fused forward (eval-mode semantics) when the model's parameters live in one
    flat buffer of a live fused plan; None if not possible (caller falls back)."""
    plans = model.__dict__.get("_fused_plans")
    if not plans:
        return None
    plan = next(iter(plans.values()))
    if not plan.still_valid(model, plan.optimizer) or layer_table(model, False) is None:
        return None
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[0] == 0:
        return None
    if x.dtype != model.dtype:
        x = x.astype(model.dtype)
    if x.strides[1] != x.itemsize:
        x = np.ascontiguousarray(x)
    out = np.empty((x.shape[0], plan.spec.dims[-1]), dtype=model.dtype)
    plan.impl.forward(out, x)
    return out
