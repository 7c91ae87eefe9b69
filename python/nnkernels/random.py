"""Seeding: one global NumPy Generator, reset by ``nnkernels.manual_seed``."""

from __future__ import annotations

import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Seed nnkernels' global random generator (initialisers, dropout, shuffling)."""
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    _rng = np.random.default_rng(int(seed))
    return _rng


def get_rng(rng: np.random.Generator | int | None = None) -> np.random.Generator:
    """Return ``rng`` as a Generator (an int seeds a new one), or the global one."""
    if rng is None:
        return _rng
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng: expected a numpy Generator, an int seed or None, got {type(rng).__name__}")
