"""Activation modules: each calls the fused forward/backward op of nnkernels.ops."""

from __future__ import annotations

import numpy as np

from .. import ops
from .module import Module


class _Elementwise(Module):
    """An activation whose backward needs the forward input x."""

    _op = None  # name in nnkernels.ops; backward is f"{_op}_backward"

    def __init__(self, *, dtype=np.float32) -> None:
        super().__init__(dtype)
        self._saved_x = None

    def _params(self) -> dict:
        return {}

    def forward(self, x):
        y = getattr(ops, self._op)(x, **self._params())
        self._saved_x = x if self.training else None
        return y

    def backward(self, grad_out, need_input_grad: bool = True):
        x = self._need_saved(self._saved_x)
        if not need_input_grad:
            return None
        return getattr(ops, self._op + "_backward")(grad_out, x, **self._params())


class ReLU(_Elementwise):
    _op = "relu"


class Sigmoid(_Elementwise):
    _op = "sigmoid"


class Tanh(_Elementwise):
    _op = "tanh"


class SiLU(_Elementwise):
    _op = "silu"


class LeakyReLU(_Elementwise):
    _op = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, *, dtype=np.float32) -> None:
        super().__init__(dtype=dtype)
        self.negative_slope = float(negative_slope)

    def _params(self):
        return {"negative_slope": self.negative_slope}

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class ELU(_Elementwise):
    _op = "elu"

    def __init__(self, alpha: float = 1.0, *, dtype=np.float32) -> None:
        super().__init__(dtype=dtype)
        self.alpha = float(alpha)

    def _params(self):
        return {"alpha": self.alpha}

    def extra_repr(self):
        return f"alpha={self.alpha}"


class GELU(_Elementwise):
    _op = "gelu"

    def __init__(self, approximate: str = "none", *, dtype=np.float32) -> None:
        super().__init__(dtype=dtype)
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _params(self):
        return {"approximate": self.approximate}

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Softplus(_Elementwise):
    _op = "softplus"

    def __init__(self, beta: float = 1.0, threshold: float = 20.0, *, dtype=np.float32) -> None:
        super().__init__(dtype=dtype)
        self.beta = float(beta)
        self.threshold = float(threshold)

    def _params(self):
        return {"beta": self.beta, "threshold": self.threshold}

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class _SoftmaxBase(Module):
    """Softmax-like over one dim; backward uses the forward output."""

    _op = None

    def __init__(self, dim: int = -1, *, dtype=np.float32) -> None:
        super().__init__(dtype)
        self.dim = dim
        self._saved_y = None

    def _last(self, a, nd):
        d = self.dim % nd
        return a if d == nd - 1 else np.moveaxis(a, d, -1)

    def _back(self, a, nd):
        d = self.dim % nd
        return a if d == nd - 1 else np.moveaxis(a, -1, d)

    def forward(self, x):
        nd = x.ndim
        y = self._back(getattr(ops, self._op)(np.ascontiguousarray(self._last(x, nd))), nd)
        self._saved_y = y if self.training else None
        return y

    def backward(self, grad_out, need_input_grad: bool = True):
        y = self._need_saved(self._saved_y)
        if not need_input_grad:
            return None
        nd = y.ndim
        g = getattr(ops, self._op + "_backward")(np.ascontiguousarray(self._last(grad_out, nd)),
                                                 np.ascontiguousarray(self._last(y, nd)))
        return self._back(g, nd)

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(_SoftmaxBase):
    _op = "softmax"


class LogSoftmax(_SoftmaxBase):
    _op = "log_softmax"


#: names accepted by MLP(activation=...)
ACTIVATIONS = {
    "relu": ReLU, "leaky_relu": LeakyReLU, "elu": ELU, "sigmoid": Sigmoid, "tanh": Tanh,
    "gelu": GELU, "silu": SiLU, "softplus": Softplus,
}
