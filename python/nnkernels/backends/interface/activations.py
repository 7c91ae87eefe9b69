"""activations family (kernels are added by the issue that implements them)."""

from __future__ import annotations

from typing import Protocol


class ActivationKernels(Protocol):
    pass
