"""Shared fixtures: every backend, and for the C++ backend every ISA variant
this CPU supports (switched in-process with nnkernels._C.set_isa)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import nnkernels
from nnkernels import _C

BACKENDS = nnkernels.available_backends()
ISAS = list(_C.cpu_info()["supported"])
# (backend, isa) combinations: the ISA only matters for the C++ backend.
BACKEND_ISA = [("cpp", isa) for isa in ISAS] + [(b, None) for b in BACKENDS if b != "cpp"]


@contextlib.contextmanager
def isa_forced(isa):
    prev = _C.cpu_info()["isa"]
    if isa is not None:
        _C.set_isa(isa)
    try:
        yield
    finally:
        _C.set_isa(prev)


@pytest.fixture(params=BACKEND_ISA, ids=[b if i is None else f"{b}-{i}" for b, i in BACKEND_ISA])
def backend(request):
    """Name of a backend to test; for cpp, each ISA variant in turn."""
    name, isa = request.param
    with isa_forced(isa):
        yield name


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def tol(dtype, k: int = 1) -> dict:
    """assert_allclose tolerances for a result of a length-k reduction."""
    eps = np.finfo(dtype).eps
    scale = max(1.0, np.sqrt(k))
    return {"rtol": 20 * eps * scale, "atol": 20 * eps * scale}
