"""Build, ISA dispatch, backend registry, threads."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest

import nnkernels
from nnkernels.backends import load_backend
from nnkernels.backends.interface import KERNEL_NAMES, KernelBackend


def test_cpu_info_fields():
    info = nnkernels.cpu_info()
    assert info["isa"] in ("generic", "avx2", "avx512")
    assert "generic" in info["compiled"]
    assert info["isa"] in info["supported"]
    assert info["threads"] >= 1
    assert info["gemm"]["variant"] == info["isa"]


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="needs /proc/cpuinfo")
def test_chosen_isa_is_best_available():
    flags = _cpu_flags()
    info = nnkernels.cpu_info()
    if os.environ.get("NNKERNELS_ISA"):
        pytest.skip("NNKERNELS_ISA forces a variant")
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags and "avx512" in info["compiled"]:
        assert info["isa"] == "avx512"
    elif {"avx2", "fma"} <= flags and "avx2" in info["compiled"]:
        assert info["isa"] == "avx2"
    else:
        assert info["isa"] == "generic"


def _run(code: str, env_extra: dict) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("isa", nnkernels.cpu_info()["supported"])
def test_env_forces_isa(isa):
    r = _run("import nnkernels; print(nnkernels.cpu_info()['isa'])", {"NNKERNELS_ISA": isa})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == isa


def test_env_unknown_isa_is_clear_error():
    r = _run("import nnkernels", {"NNKERNELS_ISA": "sse9"})
    assert r.returncode != 0
    assert "NNKERNELS_ISA" in r.stderr and "sse9" in r.stderr


def test_omp_num_threads_respected():
    r = _run("import nnkernels; print(nnkernels.get_num_threads())", {"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"


def test_backend_registry():
    assert nnkernels.available_backends() == ["cpp", "numba", "numpy"]
    assert nnkernels.get_backend() == "cpp"
    with nnkernels.use_backend("numpy"):
        assert nnkernels.get_backend() == "numpy"
        with nnkernels.use_backend("numba"):
            assert nnkernels.get_backend() == "numba"
        assert nnkernels.get_backend() == "numpy"
    assert nnkernels.get_backend() == "cpp"
    nnkernels.set_backend("numpy")
    try:
        assert nnkernels.get_backend() == "numpy"
    finally:
        nnkernels.set_backend("cpp")


def test_unknown_backend_lists_valid():
    with pytest.raises(ValueError, match="cpp.*numba.*numpy"):
        nnkernels.set_backend("cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        nnkernels.ops.matmul([[1.0]], [[1.0]], backend="tpu")


@pytest.mark.parametrize("name", nnkernels.available_backends())
def test_backend_implements_interface(name):
    b = load_backend(name)
    assert b.missing() == []
    for kname in KERNEL_NAMES:
        want = [p for p in inspect.signature(getattr(KernelBackend, kname)).parameters if p != "self"]
        got = list(inspect.signature(b.kernels[kname]).parameters)
        assert got == want, f"{name}.{kname}: parameters {got} != interface {want}"


def test_set_num_threads():
    n0 = nnkernels.get_num_threads()
    try:
        nnkernels.set_num_threads(1)
        assert nnkernels.get_num_threads() == 1
        assert nnkernels.cpu_info()["threads"] == 1
    finally:
        nnkernels.set_num_threads(n0)
    with pytest.raises(ValueError, match="n"):
        nnkernels.set_num_threads(0)
    with pytest.raises(TypeError, match="n"):
        nnkernels.set_num_threads(1.5)
