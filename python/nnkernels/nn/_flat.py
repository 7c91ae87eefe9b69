"""Flat parameter buffers: all parameters of a group in one contiguous array.

``flatten_parameters(params)`` copies the parameters (and their gradients)
of one dtype into one contiguous ``data`` buffer and one ``grad`` buffer, and
rebinds every ``Parameter.data`` / ``.grad`` to a view of them. Modules keep
working unchanged (they always read ``p.data`` and accumulate into ``p.grad``
in place), and an optimizer updates every parameter with ONE fused native
call over the flat buffers, with its state (exp_avg, ...) flat as well.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .parameter import Parameter


class FlatBuffer:
    """Flat ``data`` and ``grad`` arrays behind a list of Parameters.

    ``offsets[i]:offsets[i+1]`` is the slice of parameter ``i``.
    """

    def __init__(self, params: Sequence[Parameter]) -> None:
        params = list(params)
        if not params:
            raise ValueError("params: expected at least one Parameter")
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"params[{i}]: expected a Parameter, got {type(p).__name__}")
        dtypes = {p.data.dtype for p in params}
        if len(dtypes) != 1:
            raise TypeError("params: all parameters of a group must have one dtype, got "
                            + ", ".join(sorted(str(d) for d in dtypes)))
        if len({id(p) for p in params}) != len(params):
            raise ValueError("params: a parameter appears more than once")
        self.params = params
        self.dtype = params[0].data.dtype
        sizes = [p.data.size for p in params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64).tolist()
        n = self.offsets[-1]
        self.data = np.empty(n, dtype=self.dtype)
        self.grad = np.empty(n, dtype=self.dtype)
        for i, p in enumerate(params):
            lo, hi = self.offsets[i], self.offsets[i + 1]
            dv = self.data[lo:hi].reshape(p.data.shape)
            gv = self.grad[lo:hi].reshape(p.data.shape)
            dv[...] = p.data
            gv[...] = p.grad if p.grad is not None else 0
            p.data, p.grad = dv, gv

    def __len__(self) -> int:
        return self.data.size

    def view(self, flat: np.ndarray, i: int) -> np.ndarray:
        """Parameter ``i``'s slice of a flat array shaped like the parameter."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return flat[lo:hi].reshape(self.params[i].data.shape)

    def check_bound(self) -> None:
        """Raise if a parameter was rebound away from the buffer (e.g. by ``module.to()``)."""
        for i, p in enumerate(self.params):
            if p.data.base is not self.data or p.grad.base is not self.grad:
                raise RuntimeError(
                    f"parameter {i} (shape {p.data.shape}) no longer lives in the optimizer's flat "
                    "buffer: it was replaced (e.g. by module.to(dtype)) after the optimizer was "
                    "created. Create the optimizer after converting the model.")


def flatten_parameters(params: Iterable[Parameter]) -> FlatBuffer:
    """Move ``params`` (one dtype) into one flat data buffer and one flat grad buffer."""
    return FlatBuffer(list(params))
