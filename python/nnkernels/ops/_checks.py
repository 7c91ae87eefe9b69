"""Input validation shared by the public ops. Every failure is a TypeError
(wrong type/dtype) or ValueError (wrong shape/range) naming the argument."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x, name: str) -> np.ndarray:
    """``x`` as an ndarray of float32/float64 (not copied when it already is one)."""
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple, float, int, np.generic)):
            x = np.asarray(x)
            if x.dtype.kind in "iub":
                x = x.astype(np.float64)
        else:
            raise TypeError(f"{name}: expected a numpy array, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {x.dtype}")
    return x


def same_dtype(**arrays: np.ndarray) -> np.dtype:
    items = [(k, v) for k, v in arrays.items() if v is not None]
    dt = items[0][1].dtype
    for k, v in items[1:]:
        if v.dtype != dt:
            names = ", ".join(f"{n} is {a.dtype}" for n, a in items)
            raise TypeError(f"dtype mismatch: {names} (all must have the same dtype)")
    return dt


def require_ndim(x: np.ndarray, name: str, ndim: int) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {x.shape}")


def check_out(out, name: str, shape: tuple, dtype: np.dtype, *inputs: Optional[np.ndarray]) -> np.ndarray:
    """Validate a caller-provided output array (written in place)."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {out.shape}")
    if not out.flags.writeable:
        raise ValueError(f"{name}: array is read-only but is written in place")
    for x in inputs:
        if x is not None and out.size and x.size and np.may_share_memory(out, x):
            raise ValueError(f"{name}: overlaps the memory of an input")
    return out


def check_finite_scalar(v, name: str) -> float:
    """``v`` as a float; a non-number is a TypeError, NaN or +-inf a ValueError."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):  # (math, not np.isfinite: ~20x cheaper on a Python float)
        raise ValueError(f"{name}: expected a finite number, got {v}")
    return v


def check_range(v, name: str, lo: Optional[float] = None, hi: Optional[float] = None,
                hi_open: bool = False) -> float:
    """A finite number in [lo, hi] (or [lo, hi) with ``hi_open``)."""
    v = check_finite_scalar(v, name)
    if (lo is not None and v < lo) or (hi is not None and (v >= hi if hi_open else v > hi)):
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ValueError(f"{name}: expected a value in [{lo_s}, {hi_s}{')' if hi_open or hi is None else ']'}, got {v}")
    return v


def check_bool(v, name: str) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
    return bool(v)
