"""Helpers shared by the suites."""

from __future__ import annotations

import numpy as np

from ..core import NotAvailable


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(shape, seed: int = 0, dtype=np.float32) -> np.ndarray:
    return rng(seed).standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)


def ours_op(name: str):
    """``nnkernels.ops.<name>``, or NotAvailable if this build lacks it."""
    from nnkernels import ops

    fn = getattr(ops, name, None)
    if fn is None:
        raise NotAvailable(f"nnkernels.ops.{name} is not in this build")
    return fn


def ours_attr(module: str, name: str):
    """``nnkernels.<module>.<name>``, or NotAvailable."""
    import importlib

    try:
        mod = importlib.import_module(f"nnkernels.{module}")
    except ModuleNotFoundError as exc:
        raise NotAvailable(f"nnkernels.{module} is not in this build") from exc
    obj = getattr(mod, name, None)
    if obj is None:
        raise NotAvailable(f"nnkernels.{module}.{name} is not in this build")
    return obj


def jax_sync(result):
    """Wait for JAX's asynchronous dispatch to finish."""
    import jax

    jax.block_until_ready(result)


def torch_tensor(a: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))
