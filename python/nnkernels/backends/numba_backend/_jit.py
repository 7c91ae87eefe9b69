"""Numba compilation policy for the numba backend.

- ``cache=True``: compiled code is cached next to the sources.
- fastmath: only ``contract`` (FMA) — never the full set, which would break
  NaN/inf handling. Reductions run in a fixed order.
- Each parallel kernel is compiled twice: serial (small problems: a parallel
  launch costs more than it saves) and ``parallel=True`` (large problems).
"""

from __future__ import annotations

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


def pick(pair, work: int):
    """The serial or parallel twin of a jit_pair for ``work`` units of work."""
    if work < PARALLEL_MIN_WORK:
        return pair[0]
    sync_numba_threads()
    return pair[1]
