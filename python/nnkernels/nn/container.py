"""Sequential and the MLP builder."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import init
from .activation import ACTIVATIONS
from .layers import BatchNorm1d, Dropout, Linear
from .module import Module


class Sequential(Module):
    """Modules applied in order; named "0", "1", ... (state_dict keys as torch.nn.Sequential)."""

    def __init__(self, *modules: Module, dtype=None) -> None:
        dts = {m.dtype for m in modules}
        if dtype is None:
            if len(dts) > 1:
                raise TypeError(f"Sequential: modules have different dtypes {sorted(map(str, dts))}")
            dtype = dts.pop() if dts else np.float32
        super().__init__(dtype)
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)
        if any(m.dtype != self.dtype for m in modules):
            self.to(self.dtype)

    def append(self, module: Module) -> "Sequential":
        setattr(self, str(len(self._modules)), module)
        if module.dtype != self.dtype:
            module.to(self.dtype)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i], dtype=self.dtype)
        return mods[i]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def train_step(self, x, y, loss_fn, optimizer) -> float:
        """One training step (forward, loss, backward, optimizer step); returns the loss.

        A plain stack of Linear + elementwise activations with CrossEntropyLoss
        or MSELoss and SGD/Adam/AdamW/RMSprop runs as ONE native call (the
        fused step, docs/fused-step.md); anything else runs layer by layer
        with the same results. ``self.last_step_fused`` tells which path ran.
        """
        from ._fused import train_step
        return train_step(self, x, y, loss_fn, optimizer)

    def predict(self, x) -> np.ndarray:
        """``self(x)`` with eval-mode semantics (Dropout off), without changing the
        mode; a fused native forward when the model has a live fused plan."""
        from ._fused import predict
        out = predict(self, x)
        if out is not None:
            return out
        was = self.training
        self.eval()
        try:
            return self(x)
        finally:
            self.train(was)

    def backward(self, grad_out, need_input_grad: bool = True):
        """Backward through every module in reverse. With ``need_input_grad=False``
        the modules before the first one with parameters are skipped, and that
        one does not compute its input gradient (saves a GEMM in training)."""
        mods = list(self._modules.values())
        first = 0
        if not need_input_grad:
            first = next((i for i, m in enumerate(mods) if any(True for _ in m.parameters())), len(mods))
        g = grad_out
        for i in range(len(mods) - 1, first - 1, -1):
            need = need_input_grad or i > first
            g = mods[i].backward(g, need)
            if not need:
                return None
        return g if need_input_grad else None


class MLP(Sequential):
    """Multi-layer perceptron: ``MLP([784, 256, 128, 10])`` =
    Linear(784,256), act, Linear(256,128), act, Linear(128,10) (no activation
    after the last layer; it outputs logits).

    Per hidden layer: Linear, [BatchNorm1d if batchnorm], activation,
    [Dropout(p) if dropout > 0] — the layer indices (and so the state_dict
    keys) are those of the same torch.nn.Sequential.
    ``init``: "he" (kaiming_normal_ fan_in for the activation, zero biases),
    "xavier" (xavier_uniform_, zero biases) or "torch" (torch.nn.Linear's default).
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu", dropout: float = 0.0,
                 batchnorm: bool = False, init: str = "he", *, bias: bool = True,
                 dtype=np.float32, rng=None) -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected at least [in, out], got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if init not in ("he", "xavier", "torch"):
            raise ValueError(f"init: expected 'he', 'xavier' or 'torch', got {init!r}")
        from ..random import get_rng
        rng = get_rng(rng)
        layers: list[Module] = []
        for i in range(len(sizes) - 1):
            lin = Linear(sizes[i], sizes[i + 1], bias=bias, dtype=dtype, rng=rng)
            _init_linear(lin, init, activation, rng)
            layers.append(lin)
            if i < len(sizes) - 2:
                if batchnorm:
                    layers.append(BatchNorm1d(sizes[i + 1], dtype=dtype))
                layers.append(ACTIVATIONS[activation](dtype=dtype))
                if dropout > 0:
                    layers.append(Dropout(dropout, dtype=dtype))
        super().__init__(*layers, dtype=dtype)
        self.sizes = sizes
        self.config = {"sizes": sizes, "activation": activation, "dropout": float(dropout),
                       "batchnorm": bool(batchnorm), "init": init, "bias": bool(bias)}


def _init_linear(lin: Linear, scheme: str, activation: str, rng) -> None:
    if scheme == "torch":
        return
    nl = activation if activation in ("relu", "leaky_relu", "tanh", "sigmoid") else "relu"
    if scheme == "he":
        init.kaiming_normal_(lin.weight, mode="fan_in", nonlinearity=nl, rng=rng)
    else:
        init.xavier_uniform_(lin.weight, gain=init.calculate_gain(nl) if nl != "relu" else 1.0, rng=rng)
    if lin.bias is not None:
        init.zeros_(lin.bias)
