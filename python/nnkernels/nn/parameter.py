"""Parameter: a trainable array and its gradient."""

from __future__ import annotations

import numpy as np


class Parameter:
    """A trainable array ``.data`` and its gradient ``.grad`` (same shape and dtype).

    Both are plain attributes holding NumPy arrays. An optimizer may rebind
    them to views of one flat buffer (:func:`nnkernels.nn.flatten_parameters`),
    so code must always read ``p.data`` / ``p.grad`` afresh (never keep a
    copy), and must write gradients in place (``p.grad += g``, never
    ``p.grad = g``). ``.grad`` always exists; ``zero_grad()`` fills it with 0.
    """

    __slots__ = ("data", "grad", "__weakref__")

    def __init__(self, data: np.ndarray) -> None:
        data = np.asarray(data)
        if data.dtype.kind != "f":
            raise TypeError(f"Parameter: expected a floating-point array, got dtype {data.dtype}")
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def zero_grad(self) -> None:
        self.grad.fill(0)

    def numpy(self) -> np.ndarray:
        """A copy of the values."""
        return self.data.copy()

    def __array__(self, dtype=None, copy=None):
        if dtype is None or np.dtype(dtype) == self.data.dtype:
            return self.data.copy() if copy else self.data
        return self.data.astype(dtype)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"
