"""Benchmark suites, in report order. Each module has NAME, PEERS and
``tasks(cfg) -> list[Task]``."""

from __future__ import annotations

from . import activations, epoch, gemm, losses, optim, softmax_xent, train_step

MODULES = (gemm, activations, softmax_xent, losses, optim, train_step, epoch)
SUITES = {m.NAME: m for m in MODULES}

__all__ = ["SUITES", "MODULES"]
