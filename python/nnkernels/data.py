"""DataLoader: mini-batches over in-memory arrays."""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from .random import get_rng


class DataLoader:
    """Iterate over ``(X[batch], y[batch])`` mini-batches (or ``X[batch]`` if ``y`` is None).

    ``shuffle``: a new permutation every epoch (every ``iter()``), drawn from a
    generator seeded by ``seed`` (an int or Generator; None: nnkernels' global
    generator, see :func:`nnkernels.manual_seed`). ``drop_last`` drops a final
    incomplete batch. Batches are contiguous arrays.
    """

    def __init__(self, X, y=None, batch_size: int = 64, shuffle: bool = False, drop_last: bool = False,
                 seed=None) -> None:
        X = np.asarray(X)
        if X.ndim == 0:
            raise ValueError("X: expected at least 1 dimension (samples first)")
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0 or y.shape[0] != X.shape[0]:
                raise ValueError(f"y: expected {X.shape[0]} samples like X, got shape {y.shape}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        self.X, self.y = X, y
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self._rng = get_rng(seed) if seed is not None else None

    @property
    def num_samples(self) -> int:
        return self.X.shape[0]

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else (n + b - 1) // b

    def __iter__(self) -> Iterator:
        n, b = self.num_samples, self.batch_size
        order: Optional[np.ndarray] = None
        if self.shuffle:
            rng = self._rng if self._rng is not None else get_rng()
            order = rng.permutation(n)
        for k in range(len(self)):
            lo, hi = k * b, min(n, (k + 1) * b)
            if order is None:
                xb = np.ascontiguousarray(self.X[lo:hi])
                yb = None if self.y is None else self.y[lo:hi]
            else:
                idx = order[lo:hi]
                xb = self.X[idx]
                yb = None if self.y is None else self.y[idx]
            yield xb if self.y is None else (xb, yb)

    def __repr__(self) -> str:
        return (f"DataLoader(samples={self.num_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, batches={len(self)})")
