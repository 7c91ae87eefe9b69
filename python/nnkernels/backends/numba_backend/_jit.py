"""Numba compilation policy for the numba backend.

- ``cache=True``: compiled code is cached next to the sources.
- fastmath: only ``contract`` (FMA) — never the full set, which would break
  NaN/inf handling. Reductions run in a fixed order.
- Each parallel kernel is compiled twice: serial (small problems: a parallel
  launch costs more than it saves) and ``parallel=True`` (large problems).
"""

from __future__ import annotations

import types

from numba import njit

from ..._threads import sync_numba_threads

SAFE_FASTMATH = {"contract"}
#: work (multiply-adds or elements) below which kernels stay serial
PARALLEL_MIN_WORK = 1 << 17


def jit(fn):
    """Serial, cached, FMA-contracting njit."""
    return njit(cache=True, fastmath=SAFE_FASTMATH)(fn)


def jit_pair(fn):
    """(serial, parallel) compilations of one kernel that uses prange."""
    return (njit(cache=True, fastmath=SAFE_FASTMATH)(fn),
            njit(cache=True, fastmath=SAFE_FASTMATH, parallel=True)(fn))


def vjit(fn):
    """As ``jit``, with NumPy's error model (x / 0 gives inf or NaN, no
    ZeroDivisionError check): loops without such branches can be vectorised.
    For the kernels built on ``_vmath``."""
    return njit(cache=True, fastmath=SAFE_FASTMATH, error_model="numpy")(fn)


def vjit_parallel(fn):
    """``vjit`` with ``parallel=True`` (prange)."""
    return njit(cache=True, fastmath=SAFE_FASTMATH, error_model="numpy", parallel=True)(fn)


def pick(pair, work: int):
    """The serial or parallel twin of a jit_pair for ``work`` units of work."""
    if work < PARALLEL_MIN_WORK:
        return pair[0]
    sync_numba_threads()
    return pair[1]


def specialise(fn, suffix: str, names: dict):
    """A copy of the Python function ``fn`` whose global ``names`` are rebound
    (e.g. ``v_exp`` to the float32 or float64 exp of ``_vmath``), named
    ``fn.__name__ + suffix``: one kernel source, compiled once per dtype with
    the right functions inlined. The distinct name gives each copy its own
    on-disk cache entry."""
    g = dict(fn.__globals__)
    g.update(names)
    f = types.FunctionType(fn.__code__, g, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    f.__qualname__ = fn.__qualname__ + suffix
    f.__module__ = fn.__module__
    f.__doc__ = fn.__doc__
    return f
