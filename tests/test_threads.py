"""Determinism, thread safety and the OpenMP runtime next to PyTorch.

- Repeated calls give bitwise-identical results; so do 1 and 2 threads
  (every output element is reduced by one thread in a fixed order).
- 4 Python threads calling kernels, or training 4 separate models, at once
  give bitwise the serial results.
- `import torch` before or after `import nnkernels` (fresh processes): both
  compute correctly, and neither library's thread count changes the other's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import nnkernels as nk
from nnkernels import nn, ops, optim
from nnkernels.backends import load_backend

from conftest import BACKEND_ISA, isa_forced

PARALLEL = [(b, i) for b, i in BACKEND_ISA if b != "numpy"]
PARALLEL_IDS = [b if i is None else f"{b}-{i}" for b, i in PARALLEL]


@pytest.fixture
def threads():
    """Restore nnkernels' thread count after the test."""
    prev = nk.get_num_threads()
    yield
    nk.set_num_threads(prev)


def _workload(backend, seed=0):
    """A few kernels, large enough to run multi-threaded; returns the results."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((300, 257)).astype(np.float32)
    w = rng.standard_normal((190, 257)).astype(np.float32)
    b = rng.standard_normal(190).astype(np.float32)
    g = rng.standard_normal((300, 190)).astype(np.float32)
    out = {
        "matmul": ops.matmul(a, w.T, backend=backend),
        "matmul_f64": ops.matmul(a.astype(np.float64).T, g.astype(np.float64), backend=backend),
        "linear": ops.linear(a, w, b, activation="gelu", backend=backend),
    }
    gx, gw, gb = ops.linear_backward(a, w, g, backend=backend)
    out.update(grad_x=gx, grad_w=gw, grad_b=gb)
    p = rng.standard_normal(200_000).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for step in (1, 2):
        ops.adam_step(p, np.sin(p), m, v, step=step, lr=1e-2, backend=backend)
    out["adam"] = p
    if hasattr(ops, "softmax") and not load_backend(backend).missing():
        out["softmax"] = ops.softmax(g, backend=backend)
        out["relu"] = ops.relu(g, backend=backend)
    return out


def _assert_bitwise(r1, r2, what):
    assert r1.keys() == r2.keys()
    for k in r1:
        assert r1[k].tobytes() == r2[k].tobytes(), f"{what}: {k} differs"


# ---- determinism ---------------------------------------------------------------

@pytest.mark.parametrize("backend,isa", PARALLEL, ids=PARALLEL_IDS)
def test_repeated_calls_and_thread_counts_are_bitwise_identical(backend, isa, threads):
    with isa_forced(isa):
        nk.set_num_threads(2)
        first = _workload(backend)
        _assert_bitwise(first, _workload(backend), "repeated call")
        nk.set_num_threads(1)
        _assert_bitwise(first, _workload(backend), "1 vs 2 threads")


# ---- thread safety -------------------------------------------------------------

def _in_threads(fn, n=4):
    results, errors = [None] * n, []

    def run(i):
        try:
            results[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("backend,isa", PARALLEL, ids=PARALLEL_IDS)
def test_four_python_threads_calling_kernels(backend, isa, threads):
    nk.set_num_threads(2)  # every Python thread also starts its own OpenMP team
    with isa_forced(isa):
        serial = [_workload(backend, seed) for seed in range(4)]
        for _ in range(2):
            concurrent = _in_threads(lambda i: _workload(backend, i))
            for i in range(4):
                _assert_bitwise(serial[i], concurrent[i], f"thread {i}")


def _train(backend, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((256, 20)).astype(np.float32)
    y = rng.integers(0, 4, 256)
    m = nn.Sequential(nn.Linear(20, 64, rng=seed), nn.ReLU(), nn.Linear(64, 4, rng=seed + 100))
    o = optim.Adam(m.parameters(), lr=1e-2)
    with nk.use_backend(backend):  # per-thread backend choice
        h = nk.fit(m, nn.CrossEntropyLoss(), o, (X, y), epochs=3, batch_size=32, progress=False,
                   seed=seed)
    return np.concatenate([v.ravel() for v in m.state_dict().values()]), h.train_loss


@pytest.mark.parametrize("backend", [b for b in nk.available_backends() if not load_backend(b).missing()])
def test_four_threads_training_separate_models(backend, threads):
    nk.set_num_threads(2)
    serial = [_train(backend, s) for s in range(4)]
    concurrent = _in_threads(lambda i: _train(backend, i))
    for i in range(4):
        assert serial[i][0].tobytes() == concurrent[i][0].tobytes(), f"model {i} weights differ"
        assert serial[i][1] == concurrent[i][1]


# ---- OpenMP runtime next to PyTorch (fresh processes) ---------------------------

PROBE = textwrap.dedent("""
    import json, sys
    import numpy as np
    first = sys.argv[1]
    if first == "torch":
        import torch
        torch.set_num_threads(1)          # before nnkernels exists
        import nnkernels as nk
    else:
        import nnkernels as nk
        import torch
        torch.set_num_threads(1)          # after nnkernels' import
    from nnkernels import ops
    rep = {"nk_default": nk.get_num_threads(), "torch_default": torch.get_num_threads()}
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 400)).astype(np.float32)
    b = rng.standard_normal((400, 300)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    nk.set_num_threads(2)
    rep["torch_after_nk_set"] = torch.get_num_threads()
    c = ops.matmul(a, b, backend="cpp")
    rep["nk_err"] = float(np.abs(c - ref).max())
    torch.set_num_threads(2)
    rep["nk_after_torch_set"] = nk.get_num_threads()
    t = (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()
    rep["torch_err"] = float(np.abs(t - ref).max())
    nk.set_num_threads(1)
    rep["nk_1thread_equal"] = bool(np.array_equal(ops.matmul(a, b, backend="cpp"), c))
    rep["torch_after_nk_set1"] = torch.get_num_threads()
    rep["libgomp"] = sorted({l.split()[-1] for l in open("/proc/self/maps") if "libgomp" in l})
    print(json.dumps(rep))
""")


@pytest.mark.parametrize("first", ["torch", "nnkernels"])
def test_import_order_with_torch(first):
    pytest.importorskip("torch")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "NNKERNELS_NUM_THREADS")}
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(nk.__file__))
    r = subprocess.run([sys.executable, "-c", PROBE, first], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    ncpu = len(os.sched_getaffinity(0))
    assert rep["nk_default"] == ncpu, rep  # not torch's 1: nnkernels keeps its own count
    assert rep["torch_default"] == 1
    assert rep["torch_after_nk_set"] == 1 and rep["torch_after_nk_set1"] == 2, rep
    assert rep["nk_after_torch_set"] == 2, rep
    assert rep["nk_err"] < 1e-3 and rep["torch_err"] < 1e-3, rep
    assert rep["nk_1thread_equal"], rep
    assert len(rep["libgomp"]) == 1, f"two OpenMP runtimes loaded: {rep['libgomp']}"


# ---- no C++ exception may escape an OpenMP region -------------------------------

def test_every_openmp_region_is_guarded():
    """Static audit: each `#pragma omp parallel` has an nnk::OmpErrors declared
    shortly before it (its body runs inside errors.run) and a rethrow() after.
    An exception escaping a region calls std::terminate and kills Python."""
    root = os.path.join(os.path.dirname(__file__), "..", "csrc")
    if not os.path.isdir(root):
        pytest.skip("sources not available (installed package)")
    problems, regions = [], 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            if not name.endswith((".cpp", ".h")):
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
            for i, line in enumerate(lines):
                if not line.strip().startswith("#pragma omp parallel"):
                    continue
                regions += 1
                before = "\n".join(lines[max(0, i - 150):i])
                after = "\n".join(lines[i:i + 120])
                # .run( may come before the pragma when the region calls a body
                # lambda that guards its throwing part itself (gemm_driver.cpp);
                # the fused step's StepShared holds the OmpErrors and its run()
                # guards every phase of the team (mlp_step.cpp)
                guarded = "OmpErrors" in before or "StepShared" in before
                if not guarded or ".run(" not in before + after or ".rethrow()" not in after:
                    problems.append(f"{os.path.relpath(path, root)}:{i + 1}")
    assert regions > 0
    assert not problems, f"OpenMP regions without OmpErrors run/rethrow: {problems}"
