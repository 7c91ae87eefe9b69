"""Module: the base class of every layer (explicit backward, no autograd tape).

``y = module(x)`` runs ``forward`` and, in training mode, keeps what
``backward`` needs; ``grad_x = module.backward(grad_y)`` accumulates into
each parameter's ``.grad`` and returns the gradient with respect to the input.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator, Optional

import numpy as np

from .parameter import Parameter

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in _FLOATS:
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    return dt


class Module:
    """Base class. Subclasses implement ``forward(x)`` and ``backward(grad_out)``.

    Parameters, buffers (non-trained state such as running means) and
    submodules assigned as attributes are registered automatically, in
    assignment order (which fixes the ``state_dict`` key order).
    """

    def __init__(self, dtype=np.float32) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "dtype", check_float_dtype(dtype))

    # ---- registration ---------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._modules[name] = value
        elif name in self._parameters:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to parameter {name!r} "
                                "(expected a Parameter or None)")
            self._parameters[name] = None
        elif name in self._modules:
            del self._modules[name]
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """A state array saved in ``state_dict`` but not trained (e.g. ``running_mean``)."""
        self._buffers[name] = True
        object.__setattr__(self, name, value)

    def register_parameter(self, name: str, value: Optional[Parameter]) -> None:
        self._parameters[name] = value
        object.__setattr__(self, name, value)

    # ---- traversal ------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator["Module"]:
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        seen = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for mname, m in self.named_modules():
            for bname in m._buffers:
                yield (f"{mname}.{bname}" if mname else bname), getattr(m, bname)

    def num_parameters(self) -> int:
        """Number of trainable scalars (e.g. 235,146 for MLP([784, 256, 128, 10]))."""
        return sum(p.size for p in self.parameters())

    # ---- modes and gradients ---------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad.fill(0)

    # ---- dtype ----------------------------------------------------------
    def to(self, dtype) -> "Module":
        """Convert every parameter, gradient and float buffer to ``dtype`` (in place; returns self).

        Parameters are rebound to new arrays: create optimizers after converting.
        """
        dt = check_float_dtype(dtype)
        for m in self.modules():
            object.__setattr__(m, "dtype", dt)
            for p in m._parameters.values():
                if p is not None and p.data.dtype != dt:
                    p.data = p.data.astype(dt)
                    p.grad = p.grad.astype(dt)
            for bname in m._buffers:
                b = getattr(m, bname)
                if isinstance(b, np.ndarray) and b.dtype.kind == "f" and b.dtype != dt:
                    object.__setattr__(m, bname, b.astype(dt))
            m._clear_cache()
        return self

    def float(self) -> "Module":
        return self.to(np.float32)

    def double(self) -> "Module":
        return self.to(np.float64)

    # ---- state ----------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter and buffer, keyed as in PyTorch ("0.weight", "1.running_mean")."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        for mname, m in self.named_modules():
            pre = f"{mname}." if mname else ""
            for pname, p in m._parameters.items():
                if p is not None:
                    out[pre + pname] = p.data.copy()
            for bname in m._buffers:
                out[pre + bname] = np.array(getattr(m, bname), copy=True)
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> "Module":
        """Copy values (NumPy arrays, or anything np.asarray accepts, e.g. CPU torch
        tensors) into this module's own arrays and dtype. Checks keys and shapes."""
        targets: dict[str, tuple[Module, str, bool]] = {}
        for mname, m in self.named_modules():
            pre = f"{mname}." if mname else ""
            for pname, p in m._parameters.items():
                if p is not None:
                    targets[pre + pname] = (m, pname, True)
            for bname in m._buffers:
                targets[pre + bname] = (m, bname, False)
        keys = list(state_dict.keys())
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in keys if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for k, (m, name, is_param) in targets.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            v = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
            dst = getattr(m, name).data if is_param else getattr(m, name)
            if v.shape != dst.shape:
                raise ValueError(f"load_state_dict: {k}: shape {tuple(v.shape)} in the state dict, "
                                 f"{dst.shape} in the model")
            if is_param or dst.ndim:
                dst[...] = v  # in place: flat-buffer views stay valid; cast to our dtype
            else:
                object.__setattr__(m, name, np.asarray(v, dtype=dst.dtype).copy())
        return self

    # ---- calling --------------------------------------------------------
    def check_input(self, x) -> np.ndarray:
        """``x`` as an array of this module's dtype; another float dtype is a TypeError."""
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
            if x.dtype.kind in "iub" or x.dtype == np.float64:
                x = x.astype(self.dtype)
        if x.dtype != self.dtype:
            raise TypeError(f"{type(self).__name__}: input has dtype {x.dtype} but the module's dtype "
                            f"is {self.dtype}; convert the input (x.astype(np.{self.dtype})) or the "
                            f"module (.to(np.{x.dtype}))")
        return x

    def __call__(self, x):
        return self.forward(self.check_input(x))

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad_out: np.ndarray, need_input_grad: bool = True) -> Optional[np.ndarray]:
        """Accumulate parameter gradients; return d loss / d input (None if not ``need_input_grad``)."""
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def _clear_cache(self) -> None:
        """Drop what forward kept for backward (called on dtype changes)."""
        for k in [k for k in self.__dict__ if k.startswith("_saved")]:
            object.__setattr__(self, k, None)

    def _need_saved(self, value, what: str = "the input"):
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward: no saved forward state; call the "
                               f"module in training mode (module.train()) before backward")
        return value

    # ---- printing -------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {sub}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"

    def summary(self) -> str:
        """The repr plus parameter count and dtype."""
        return f"{self!r}\nparameters: {self.num_parameters():,} ({self.dtype})"
