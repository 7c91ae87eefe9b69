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

from dataclasses import dataclass, field
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

    def forward(self, out: np.ndarray, x: np.ndarray) -> None:
        """out(N, dims[L]) := the network's output for x (inference)."""


class FusedKernels(Protocol):
    def mlp_step_plan(self, spec: MlpSpec) -> MlpStepPlan:
        """A fused training-step plan for ``spec`` (buffers are used in place)."""
