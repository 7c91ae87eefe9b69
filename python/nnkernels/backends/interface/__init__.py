"""The kernel interface every backend implements, written down once.

Conventions (llm.c style): outputs first, then inputs, then parameters.
Outputs are preallocated by the caller (:mod:`nnkernels.ops`), C-contiguous
unless a kernel says otherwise, of the inputs' dtype, and written in place.
Inputs have been validated by the ops layer (dtype float32 or float64, shapes
consistent); kernels do not re-validate beyond what keeps them memory-safe.

Each kernel family is a Protocol in its own module; :class:`KernelBackend`
is their union. ``KERNEL_NAMES`` lists every kernel a backend must provide,
and a test checks the three backends against it.
"""

from __future__ import annotations

from typing import Protocol

from .activations import ActivationKernels
from .fused import FusedKernels
from .gemm import GemmKernels
from .losses import LossKernels
from .optim import OptimKernels

_FAMILY_PROTOCOLS = (GemmKernels, ActivationKernels, LossKernels, OptimKernels, FusedKernels)


class KernelBackend(GemmKernels, ActivationKernels, LossKernels, OptimKernels, FusedKernels, Protocol):
    """Everything a backend provides."""


def _kernel_names() -> list[str]:
    names: list[str] = []
    for proto in _FAMILY_PROTOCOLS:
        for name, value in vars(proto).items():
            if callable(value) and not name.startswith("_"):
                names.append(name)
    return names


KERNEL_NAMES = _kernel_names()

__all__ = ["KernelBackend", "KERNEL_NAMES", "GemmKernels", "ActivationKernels", "LossKernels",
           "OptimKernels", "FusedKernels"]
