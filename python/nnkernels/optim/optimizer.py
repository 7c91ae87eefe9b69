"""Optimizers with PyTorch's update rules and defaults; each step is one fused
native call per parameter group over flat buffers.

On construction every parameter group is moved into a flat buffer
(:func:`nnkernels.nn.flatten_parameters`): each ``Parameter.data``/``.grad``
becomes a view of one contiguous array, and the optimizer state (exp_avg, ...)
is one flat array per kind. ``step()`` then makes one call to the fused
kernel (``<name>_step`` of the current backend, see
:mod:`nnkernels.ops.optim`) per group. The optimizer owns and has validated
its flat arrays, so it calls the backend kernel directly (the C++ binding
still checks every in-place array).
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import numpy as np

from ..backends import resolve
from ..nn._flat import FlatBuffer, flatten_parameters
from ..nn.parameter import Parameter

_required = object()


class Optimizer:
    """Base class: param groups, flat buffers, zero_grad, state_dict.

    Subclasses define ``defaults`` handling and ``_step_group(group, flat, state)``.
    ``state[i]`` is a dict of flat arrays (and a ``"step"`` count) for group i.
    """

    _state_keys: tuple = ()

    def __init__(self, params, defaults: dict) -> None:
        if isinstance(params, Parameter):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Parameters or dicts, but got a Parameter")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self._flats: list[FlatBuffer] = []
        self.state: list[dict[str, Any]] = []
        seen: set[int] = set()
        for g in groups:
            self.add_param_group(g, _seen=seen)

    def add_param_group(self, group: dict, _seen: Optional[set] = None) -> None:
        if not isinstance(group, dict):
            raise TypeError(f"param group must be a dict, got {type(group).__name__}")
        ps = group["params"]
        ps = [ps] if isinstance(ps, Parameter) else list(ps)
        for p in ps:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer can only optimize Parameters, got {type(p).__name__}")
        seen = _seen if _seen is not None else {id(p) for g in self.param_groups for p in g["params"]}
        for p in ps:
            if id(p) in seen:
                raise ValueError("some parameters appear in more than one parameter group")
            seen.add(id(p))
        g = dict(group)
        g["params"] = ps
        for k, v in self.defaults.items():
            if v is _required and k not in g:
                raise ValueError(f"parameter group didn't specify a value of required optimization "
                                 f"parameter {k}")
            g.setdefault(k, v)
        self._validate(g)
        self.param_groups.append(g)
        self._flats.append(flatten_parameters(ps))
        self.state.append({"step": 0})

    def _validate(self, g: dict) -> None:
        if not 0.0 <= g["lr"]:
            raise ValueError(f"Invalid learning rate: {g['lr']}")

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero every gradient (one fill per flat buffer). Gradients are never set
        to None: they are views the modules accumulate into."""
        for flat in self._flats:
            flat.grad.fill(0)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            loss = closure()
        for g, flat, st in zip(self.param_groups, self._flats, self.state):
            flat.check_bound()
            st["step"] += 1
            self._step_group(g, flat, st)
        return loss

    def _step_group(self, group: dict, flat: FlatBuffer, state: dict) -> None:
        raise NotImplementedError

    def _buf(self, flat: FlatBuffer, state: dict, key: str, fill: float = 0.0) -> np.ndarray:
        """The flat state array ``key`` (created filled with ``fill`` on first use)."""
        a = state.get(key)
        if a is None:
            a = np.full(flat.data.shape, fill, dtype=flat.dtype)
            state[key] = a
        return a

    # ---- state_dict: PyTorch's layout (per-parameter state, params as indices) ----
    def state_dict(self) -> dict:
        groups, state = [], {}
        idx = 0
        for g, flat, st in zip(self.param_groups, self._flats, self.state):
            gd = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            gd["params"] = list(range(idx, idx + len(g["params"])))
            for i in range(len(g["params"])):
                ps = {k: flat.view(v, i).copy() for k, v in st.items()
                      if isinstance(v, np.ndarray)}
                if st["step"] or ps:
                    ps["step"] = float(st["step"])
                    state[idx + i] = ps
            idx += len(g["params"])
            groups.append(gd)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for g, sg in zip(self.param_groups, groups):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match "
                                 "the size of optimizer's group")
        saved = state_dict["state"]
        for g, sg, flat, st in zip(self.param_groups, groups, self._flats, self.state):
            for k, v in sg.items():
                if k != "params":
                    g[k] = copy.deepcopy(v)
            st.clear()
            st["step"] = 0
            per = [saved.get(i, saved.get(str(i))) for i in sg["params"]]
            steps = {int(float(np.asarray(ps["step"]))) for ps in per if ps is not None and "step" in ps}
            if len(steps) > 1:
                raise ValueError(f"parameters of one group have different step counts {sorted(steps)}")
            st["step"] = steps.pop() if steps else 0
            keys = {k for ps in per if ps is not None for k in ps if k != "step"}
            for k in keys:
                buf = np.zeros(flat.data.shape, dtype=flat.dtype)
                for i, ps in enumerate(per):
                    if ps is None or k not in ps:
                        raise ValueError(f"state {k!r} missing for parameter {sg['params'][i]}")
                    v = ps[k]
                    v = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
                    dst = flat.view(buf, i)
                    if v.shape != dst.shape:
                        raise ValueError(f"state {k!r} of parameter {sg['params'][i]}: shape "
                                         f"{v.shape}, expected {dst.shape}")
                    dst[...] = v
                st[k] = buf

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)


def _check_nonneg(name: str, v: float, what: str) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
    if not 0.0 <= v < float("inf"):
        raise ValueError(f"Invalid {what} value: {v} ({name} must be a finite number >= 0)")


class SGD(Optimizer):
    """torch.optim.SGD: momentum (buffer initialised to the first gradient),
    dampening, Nesterov, L2 weight decay, maximize."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False) -> None:
        _check_nonneg("lr", lr, "learning rate")
        _check_nonneg("momentum", momentum, "momentum")
        _check_nonneg("weight_decay", weight_decay, "weight_decay")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _step_group(self, g, flat, st):
        buf = None
        first = False
        if g["momentum"] != 0:
            first = "momentum_buffer" not in st
            buf = self._buf(flat, st, "momentum_buffer")
        resolve().sgd_step(flat.data, buf, flat.grad, float(g["lr"]), float(g["momentum"]),
                           float(g["dampening"]), float(g["weight_decay"]), bool(g["nesterov"]),
                           bool(g["maximize"]), first)


class Adam(Optimizer):
    """torch.optim.Adam (``decoupled_weight_decay=True``: AdamW)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False) -> None:
        _check_nonneg("lr", lr, "learning rate")
        _check_nonneg("eps", eps, "epsilon")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        _check_nonneg("weight_decay", weight_decay, "weight_decay")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _step_group(self, g, flat, st):
        m = self._buf(flat, st, "exp_avg")
        v = self._buf(flat, st, "exp_avg_sq")
        vmax = self._buf(flat, st, "max_exp_avg_sq") if g["amsgrad"] else None
        beta1, beta2 = g["betas"]
        resolve().adam_step(flat.data, m, v, vmax, flat.grad, st["step"], float(g["lr"]),
                            float(beta1), float(beta2), float(g["eps"]), float(g["weight_decay"]),
                            bool(g["amsgrad"]), bool(g["maximize"]),
                            bool(g["decoupled_weight_decay"]))


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (default 1e-2)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True)


class RMSprop(Optimizer):
    """torch.optim.RMSprop (centered, momentum, weight decay, maximize)."""

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 maximize: bool = False) -> None:
        _check_nonneg("lr", lr, "learning rate")
        _check_nonneg("eps", eps, "epsilon")
        _check_nonneg("momentum", momentum, "momentum")
        _check_nonneg("weight_decay", weight_decay, "weight_decay")
        _check_nonneg("alpha", alpha, "alpha")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    def _step_group(self, g, flat, st):
        sq = self._buf(flat, st, "square_avg")
        buf = self._buf(flat, st, "momentum_buffer") if g["momentum"] > 0 else None
        gavg = self._buf(flat, st, "grad_avg") if g["centered"] else None
        resolve().rmsprop_step(flat.data, sq, buf, gavg, flat.grad, float(g["lr"]),
                               float(g["alpha"]), float(g["eps"]), float(g["weight_decay"]),
                               float(g["momentum"]), bool(g["centered"]), bool(g["maximize"]))


class Adagrad(Optimizer):
    """torch.optim.Adagrad (lr_decay, weight decay, initial_accumulator_value)."""

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *,
                 maximize: bool = False) -> None:
        _check_nonneg("lr", lr, "learning rate")
        _check_nonneg("lr_decay", lr_decay, "lr_decay")
        _check_nonneg("weight_decay", weight_decay, "weight_decay")
        _check_nonneg("initial_accumulator_value", initial_accumulator_value,
                      "initial_accumulator_value")
        _check_nonneg("eps", eps, "epsilon")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))
        for g, flat, st in zip(self.param_groups, self._flats, self.state):
            self._buf(flat, st, "sum", g["initial_accumulator_value"])

    def _step_group(self, g, flat, st):
        s = self._buf(flat, st, "sum", g["initial_accumulator_value"])
        resolve().adagrad_step(flat.data, s, flat.grad, st["step"], float(g["lr"]),
                               float(g["lr_decay"]), float(g["weight_decay"]), float(g["eps"]),
                               bool(g["maximize"]))
