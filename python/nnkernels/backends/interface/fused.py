"""fused family: a whole MLP training step (forward, loss, backward, optimizer
update) in one call, over flat parameter / gradient / optimizer-state buffers.

The model is a stack of L Linear layers, each followed by an elementwise
activation (``"none"`` for a bare Linear)::

    h[-1] = x;  z[l] = h[l-1] @ W[l].T + b[l];  h[l] = act[l](z[l])
    loss  = cross_entropy(h[L-1], labels) | mse(h[L-1], target)      (mean)

Every parameter lives in one flat C-contiguous buffer ``params``: weight ``l``
is ``params[w_off[l] : w_off[l] + dims[l+1]*dims[l]]`` viewed as the ordinary
(out, in) row-major array, bias ``l`` is ``params[b_off[l] : b_off[l] + dims[l+1]]``
(``b_off[l] == -1``: no bias). ``grads`` and every optimizer ``state`` buffer
have the same length and layout, so the update is one pass over the buffer.

State buffers per optimizer (PyTorch's names):
``sgd``: (momentum_buffer,) — ``adam``/``adamw``: (exp_avg, exp_avg_sq) —
``rmsprop``: (square_avg, momentum_buffer, grad_avg) — ``none``: ().
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

#: activations the fused step supports (after each Linear), PyTorch semantics
FUSED_ACTIVATIONS = ("none", "relu", "leaky_relu", "gelu", "gelu_tanh", "silu", "tanh", "sigmoid")
#: codes shared by the C++ (nnk::FusedAct) and Numba implementations
ACT_CODE = {name: i for i, name in enumerate(FUSED_ACTIVATIONS)}
FUSED_LOSSES = ("cross_entropy", "mse")
FUSED_OPTIMIZERS = ("none", "sgd", "adam", "adamw", "rmsprop")
#: number of state buffers each optimizer takes
STATE_BUFFERS = {"none": 0, "sgd": 1, "adam": 2, "adamw": 2, "rmsprop": 3}


@dataclass
class OptimConfig:
    """Optimizer hyper-parameters (torch.optim defaults). ``lr`` and the step
    count are passed to every ``step`` call (schedulers change ``lr``)."""

    weight_decay: float = 0.0
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    alpha: float = 0.99
    centered: bool = False
    maximize: bool = False
    decay_bias: bool = True  # False: weight_decay on the weights only, not the biases


@dataclass
class MlpSpec:
    """A fusable MLP: layer table plus its flat buffers (see the module doc)."""

    dims: tuple
    activations: tuple
    act_params: tuple
    w_off: tuple
    b_off: tuple
    params: np.ndarray
    grads: np.ndarray
    state: tuple
    loss: str
    optimizer: str
    config: OptimConfig = field(default_factory=OptimConfig)

    @property
    def n_layers(self) -> int:
        return len(self.w_off)


class MlpStepPlan(Protocol):
    """A fused step bound to one model; owns its workspace (allocated on the
    first call for a batch size and reused: a step allocates nothing after that)."""

    def set_optimizer(self, config: OptimConfig) -> None:
        """Replace the hyper-parameters other than lr (read on every later step)."""

    def step(self, x: np.ndarray, y: np.ndarray, lr: float, t: int) -> float:
        """One training step on ``x`` (N, dims[0]) and ``y`` (int64 (N,) labels for
        cross_entropy, (N, dims[L]) targets for mse); ``t`` is the 1-based step
        count after this update. Overwrites ``grads`` with this batch's
        gradients, updates ``params`` and ``state`` in place, returns the mean loss."""

    def epoch(self, x: np.ndarray, y: np.ndarray, order: np.ndarray, batch_size: int, lr: np.ndarray,
              weight_decay: np.ndarray, eps: np.ndarray, t0: int, losses: np.ndarray,
              sq_norms: np.ndarray | None = None) -> None:
        """An epoch of steps in one call. Batch ``b`` is rows
        ``order[b*batch_size:(b+1)*batch_size]`` of ``x`` and ``y`` (the data
        set), trained as ``step`` does with ``lr[b]``, ``weight_decay[b]`` and
        ``eps[b]`` at step ``t0 + b + 1`` (the other hyper-parameters from
        :meth:`set_optimizer`). ``losses[b]`` := its mean loss; ``sq_norms[b]``
        (optional) := the sum of squares of the weights (not the biases)
        before its update. Every per-batch array is float64 with one entry per
        batch. The parameters and state after it are the same as after the
        loop of steps."""

    def forward(self, out: np.ndarray, x: np.ndarray) -> None:
        """out(N, dims[L]) := the network's output for x (inference)."""


class FusedKernels(Protocol):
    def mlp_step_plan(self, spec: MlpSpec) -> MlpStepPlan:
        """A fused training-step plan for ``spec`` (buffers are used in place)."""


def check_epoch_args(spec: MlpSpec, x, y, order, batch_size, lr, weight_decay, eps, losses, sq_norms) -> int:
    """Validate the arguments of :meth:`MlpStepPlan.epoch` (the checks the
    native plan makes); returns the number of batches."""
    dt = spec.params.dtype
    if not isinstance(x, np.ndarray) or x.dtype != dt:
        raise TypeError(f"x: expected a {dt} array like params, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.ndim != 2 or x.shape[1] != spec.dims[0]:
        raise ValueError(f"x: expected shape (N, {spec.dims[0]}), got {x.shape}")
    rows, c = x.shape[0], spec.dims[-1]
    if spec.loss == "cross_entropy":
        if not isinstance(y, np.ndarray) or y.dtype != np.int64:
            raise TypeError(f"y: expected int64 class indices, got dtype {getattr(y, 'dtype', None)}")
        if y.shape != (rows,):
            raise ValueError(f"y: expected shape ({rows},) like x, got {y.shape}")
    else:
        if not isinstance(y, np.ndarray) or y.dtype != dt:
            raise TypeError(f"y: expected a {dt} array like params, got {getattr(y, 'dtype', None)}")
        if y.shape != (rows, c):
            raise ValueError(f"y: expected shape ({rows}, {c}) like x, got {y.shape}")
    if not isinstance(order, np.ndarray) or order.dtype != np.int64:
        raise TypeError(f"order: expected an int64 array, got dtype {getattr(order, 'dtype', None)}")
    if order.ndim != 1:
        raise ValueError(f"order: expected a 1-D array, got shape {order.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    nb = -(-len(order) // int(batch_size))
    for name, a in (("lr", lr), ("weight_decay", weight_decay), ("eps", eps), ("losses", losses),
                    ("sq_norms", sq_norms)):
        if a is None and name == "sq_norms":
            continue
        if not isinstance(a, np.ndarray) or a.dtype != np.float64:
            raise TypeError(f"{name}: expected a float64 array, got dtype {getattr(a, 'dtype', None)}")
        if a.shape != (nb,):
            raise ValueError(f"{name}: expected shape ({nb},), one entry per batch, got {a.shape}")
        if name in ("losses", "sq_norms") and not a.flags.writeable:
            raise ValueError(f"{name}: the array is read-only")
    if len(order):
        bad = (order < 0) | (order >= rows)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"order: row {int(order[i])} at position {i} is out of range [0, {rows})")
        if spec.loss == "cross_entropy":
            yv = y[order]
            bad = (yv < 0) | (yv >= c)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"y: class index {int(yv[i])} of row {int(order[i])} is out of range [0, {c})")
    return nb


def weight_sq_norm(spec: MlpSpec) -> float:
    """Sum of squares of the weight matrices (not the biases), in float64."""
    total = 0.0
    for l, w in enumerate(spec.w_off):
        W = spec.params[w:w + spec.dims[l] * spec.dims[l + 1]].reshape(spec.dims[l + 1], spec.dims[l])
        W = W.astype(np.float64)
        total += float(np.einsum("ij,ij->i", W, W).sum())
    return total


def epoch_by_steps(plan, x, y, order, batch_size, lr, weight_decay, eps, t0, losses, sq_norms=None) -> None:
    """:meth:`MlpStepPlan.epoch` as a loop of ``plan.step`` calls (plans with
    a ``config`` attribute and ``set_optimizer``); the reference the native
    epoch is checked against."""
    spec = plan.spec
    nb = check_epoch_args(spec, x, y, order, batch_size, lr, weight_decay, eps, losses, sq_norms)
    base = plan.config
    try:
        for b in range(nb):
            rows = order[b * batch_size:(b + 1) * batch_size]
            if sq_norms is not None:
                sq_norms[b] = weight_sq_norm(spec)
            plan.set_optimizer(replace(base, weight_decay=float(weight_decay[b]), eps=float(eps[b])))
            losses[b] = plan.step(np.ascontiguousarray(x[rows]), np.ascontiguousarray(y[rows]), float(lr[b]),
                                  int(t0) + b + 1)
    finally:
        plan.set_optimizer(base)
