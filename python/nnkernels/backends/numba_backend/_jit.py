"""Numba compilation policy for the numba backend.

- ``cache=True``: compiled code is cached next to the sources.
- fastmath: only ``contract`` (FMA) — never the full set, which would break
  NaN/inf handling. Reductions run in a fixed order.
- Each parallel kernel is compiled twice: serial (small problems: a parallel
  launch costs more than it saves) and ``parallel=True`` (large problems).
"""

from __future__ import annotations

import types

import numba
from numba import njit

from ..._threads import sync_numba_threads

SAFE_FASTMATH = {"contract"}
#: work (multiply-adds or elements) below which kernels stay serial
PARALLEL_MIN_WORK = 1 << 17


def jit(fn):
    """Serial, cached, FMA-contracting njit."""
    return njit(cache=True, fastmath=SAFE_FASTMATH)(fn)


def jit_pair(fn):
    """(serial, parallel) compilations of one kernel that uses prange.

    The parallel twin is compiled from a renamed copy of ``fn`` (same code,
    same module globals): Numba's on-disk cache is keyed by the function's
    name and the signature, not by ``parallel=True``, so with one name the
    twin compiled first would be loaded for both in later processes."""
    return (njit(cache=True, fastmath=SAFE_FASTMATH)(fn),
            njit(cache=True, fastmath=SAFE_FASTMATH, parallel=True)(_renamed(fn, "_parallel")))


def _renamed(fn, suffix: str):
    """``fn`` under the name ``fn.__name__ + suffix`` (same code, globals, closure)."""
    f = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    f.__qualname__ = fn.__qualname__ + suffix
    f.__module__ = fn.__module__
    f.__doc__ = fn.__doc__
    return f


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


_READY = set()


def call_readonly_inputs(kernel, inputs, *args):
    """``kernel(*args)``, compiled once with the arrays at positions ``inputs``
    typed read-only.

    Numba compiles a separate copy of a kernel for each combination of
    writable / read-only argument arrays (np.broadcast_to, memory maps and
    the tests' read-only inputs are read-only). For the big vectorised
    kernels each copy costs seconds of compilation. Here the first call
    compiles the read-only variant and stops further compilation: writable
    arrays then convert to the read-only type for free. Only if an argument
    still matches nothing (an unusual type, e.g. an unaligned array) is
    compilation turned back on."""
    if kernel not in _READY:
        tys = [numba.typeof(a) for a in args]
        for i in inputs:
            tys[i] = tys[i].copy(readonly=True)
        kernel.compile(tuple(tys))
        kernel.disable_compile()
        _READY.add(kernel)
    try:
        return kernel(*args)
    except TypeError:
        kernel.disable_compile(False)
        return kernel(*args)
