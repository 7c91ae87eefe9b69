"""One thread count for every backend: nnkernels' OpenMP regions and Numba.

Policy (see README, "Threads and OpenMP"): nnkernels keeps its own
process-wide count. ``set_num_threads`` sets it for our C++ kernels and for
Numba's pool; it never touches PyTorch's or any other library's count.
At start-up the count is ``OMP_NUM_THREADS`` if set, else the number of cores.
"""

from __future__ import annotations

import os
import sys

from ._native import _C


def get_num_threads() -> int:
    """Threads nnkernels' kernels use."""
    return _C.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the threads for the C++ (OpenMP) and Numba backends together."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected a positive thread count, got {n}")
    _C.set_num_threads(n)
    if "numba" in sys.modules:  # only if Numba is already loaded
        sync_numba_threads()


def sync_numba_threads() -> None:
    """Make the calling thread's Numba thread count match ours.

    ``numba.set_num_threads`` is per calling thread and capped by
    NUMBA_NUM_THREADS (the pool size fixed at Numba's first parallel launch).
    """
    import numba

    want = min(_C.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() != want:
        numba.set_num_threads(want)


def default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS")
    if env:
        try:
            return max(1, int(env.split(",")[0]))
        except ValueError:
            pass
    return os.cpu_count() or 1
