"""Peers (NumPy, PyTorch, JAX, scikit-learn): which are installed, and
thread control for each.

Threads: ours via ``nnkernels.set_num_threads`` (C++ OpenMP and Numba);
PyTorch via ``torch.set_num_threads``; NumPy's BLAS (and scikit-learn's) via
threadpoolctl. All are restored when the scope ends. JAX/XLA sizes its
thread pool once per process, so JAX peers are measured only at the
process's full thread count (the CPUs this process may run on); at other
counts their rows say so (status "n/a").
"""

from __future__ import annotations

import contextlib
import importlib
import os
from typing import Iterator, Optional

PEERS = ("numpy", "torch", "jax", "sklearn")

_versions: dict = {}


def version(name: str) -> Optional[str]:
    """Version string of an installed peer, or None if it cannot be imported."""
    if name not in _versions:
        try:
            mod = importlib.import_module(name)
            _versions[name] = str(getattr(mod, "__version__", "?"))
        except Exception:  # noqa: BLE001 - any import failure means "missing"
            _versions[name] = None
    return _versions[name]


def available(name: str) -> bool:
    return version(name) is not None


def all_threads() -> int:
    """CPUs this process may run on: the thread count JAX/XLA uses."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run ours, PyTorch and BLAS-backed NumPy/scikit-learn with ``n`` threads."""
    import nnkernels

    old_ours = nnkernels.get_num_threads()
    old_torch = None
    limiter = None
    nnkernels.set_num_threads(n)
    try:
        if available("torch"):
            import torch

            old_torch = torch.get_num_threads()
            torch.set_num_threads(n)
        try:
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(limits=n, user_api="blas")
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            limiter = None
        yield
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
        if old_torch is not None:
            import torch

            torch.set_num_threads(old_torch)
        nnkernels.set_num_threads(old_ours)
