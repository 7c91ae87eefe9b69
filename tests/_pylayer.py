"""Helpers shared by the nn/optim/train tests."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import nnkernels
from nnkernels.backends import load_backend

try:  # the reference twins are tiny: torch's thread pool only adds contention on a shared machine
    import torch as _torch
    _torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


def require_kernels(backend: str, *names: str) -> None:
    """Skip when ``backend`` does not implement these kernels yet (e.g. before a merge)."""
    missing = [k for k in names if k in load_backend(backend).missing()]
    if missing:
        pytest.skip(f"backend {backend!r} lacks kernels {missing}")


MLP_KERNELS = ("activation_forward", "activation_backward", "softmax_cross_entropy")


@contextlib.contextmanager
def on_backend(name: str):
    with nnkernels.use_backend(name):
        yield


def torch_twin(model, torch):
    """A torch.nn.Sequential with the same layers and weights as an nnkernels Sequential/MLP."""
    from nnkernels import nn
    layers = []
    tdt = torch.float64 if model.dtype == np.float64 else torch.float32
    for m in model:
        if isinstance(m, nn.Linear):
            layers.append(torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None))
        elif isinstance(m, nn.BatchNorm1d):
            layers.append(torch.nn.BatchNorm1d(m.num_features, eps=m.eps, momentum=m.momentum))
        elif isinstance(m, nn.Dropout):
            layers.append(torch.nn.Dropout(m.p))
        else:
            name = type(m).__name__
            kw = {}
            if name == "LeakyReLU":
                kw = {"negative_slope": m.negative_slope}
            elif name == "ELU":
                kw = {"alpha": m.alpha}
            elif name == "GELU":
                kw = {"approximate": m.approximate}
            elif name == "Softplus":
                kw = {"beta": m.beta, "threshold": m.threshold}
            layers.append(getattr(torch.nn, name)(**kw))
    t = torch.nn.Sequential(*layers).to(tdt)
    t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    return t


def best_backend() -> str:
    """The default backend if it has the MLP kernels, else the first that does
    (the native activation kernels arrive from another branch)."""
    for name in ("cpp", "numba", "numpy"):
        if not [k for k in MLP_KERNELS if k in load_backend(name).missing()]:
            return name
    raise RuntimeError("no backend implements the MLP kernels")
