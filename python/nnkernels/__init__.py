"""nnkernels: the fastest way to train neural networks on a CPU from Python.

Kernels in C++ (OpenMP, AVX-512/AVX2 with runtime dispatch), the same kernels
in Numba, and a plain NumPy reference; a thin PyTorch-like Python layer.
"""

from __future__ import annotations

from ._native import _C
from ._threads import get_num_threads, set_num_threads
from .backends import available_backends, get_backend, set_backend, use_backend
from .random import manual_seed
from . import ops
from . import nn, optim, data, utils, train
from .data import DataLoader
from .serialization import load, save
from .train import evaluate, fit, predict

__version__ = "0.1.0"


def cpu_info() -> dict:
    """The native kernels' view of this CPU.

    ``isa``: the variant in use (generic, avx2, avx512); ``compiled``: the
    variants built in; ``supported``: those this CPU can run; ``threads``:
    nnkernels' thread count. ``NNKERNELS_ISA`` forces a variant at import.
    """
    info = dict(_C.cpu_info())
    info["gemm"] = dict(_C.gemm_info())
    return info


__all__ = [
    "DataLoader", "data", "evaluate", "fit", "load", "nn", "optim", "predict", "save", "train", "utils",
    "available_backends", "cpu_info", "get_backend", "get_num_threads", "manual_seed", "ops",
    "set_backend", "set_num_threads", "use_backend", "__version__",
]
