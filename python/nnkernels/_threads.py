"""One thread count for every backend: nnkernels' OpenMP regions and Numba.

Policy (see README, "Threads and OpenMP"): nnkernels keeps its own
process-wide count. ``set_num_threads`` sets it for our C++ kernels and for
Numba's pool; it never touches PyTorch's or any other library's count.
At import the count is ``NNKERNELS_NUM_THREADS`` or ``OMP_NUM_THREADS`` if
set, else the number of CPUs the process may use (docs/threads.md).
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
    """NNKERNELS_NUM_THREADS, else OMP_NUM_THREADS (its first level), else the
    CPUs this process may run on."""
    for var in ("NNKERNELS_NUM_THREADS", "OMP_NUM_THREADS"):
        env = os.environ.get(var)
        if env:
            try:
                return max(1, int(env.split(",")[0]))
            except ValueError:
                pass
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# Fix our count now, from the environment, not lazily from OpenMP's
# omp_get_max_threads(): that is per-thread state which another library
# (torch.set_num_threads calls omp_set_num_threads) may already have changed.
_C.set_num_threads(default_threads())
