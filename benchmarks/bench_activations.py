"""Activation / softmax cross-entropy benchmarks beside PyTorch and NumPy.

    PYTHONPATH=python python -m pytest benchmarks/bench_activations.py --benchmark-only \
        --benchmark-columns=median,min,rounds --benchmark-group-by=group

Groups (compare rows of one group, from one run: the machine may be shared):
- ``ce-NxC``: softmax cross-entropy forward + backward (loss and d loss/d logits,
  reduction "mean", float32) for (N, C) = (64, 10), (1024, 10), (256, 1000),
  (64, 32000); ours = one call to ``ops.softmax_cross_entropy``; torch =
  ``F.cross_entropy`` + ``backward()``. The ``copy`` row copies the logits
  (np.copyto, read N*C + write N*C floats: the same bytes as the fused kernel
  moves), the yardstick of the "fraction of copy bandwidth" figure.
- ``act-<name>``: forward + backward on 4M float32 elements; ours =
  ``ops.<name>(x)`` + ``ops.<name>_backward(g, x)`` (fresh outputs, like torch);
  torch = forward + ``backward(g)``.
Every implementation runs with the same thread count (nnkernels' count; torch
is set to it). NNK_BENCH_THREADS=1 to measure single-threaded.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import nnkernels
from nnkernels import ops

torch = pytest.importorskip("torch")
F = torch.nn.functional

THREADS = int(os.environ.get("NNK_BENCH_THREADS", nnkernels.get_num_threads()))
CE_SHAPES = [(64, 10), (1024, 10), (256, 1000), (64, 32000)]
ACT_N = 4_000_000
ACTS = [
    ("relu", {}, F.relu, {}),
    ("leaky_relu", {}, F.leaky_relu, {}),
    ("elu", {}, F.elu, {}),
    ("sigmoid", {}, torch.sigmoid, {}),
    ("tanh", {}, torch.tanh, {}),
    ("gelu", {}, F.gelu, {}),
    ("gelu_tanh", {"approximate": "tanh"}, F.gelu, {"approximate": "tanh"}),
    ("silu", {}, F.silu, {}),
    ("softplus", {}, F.softplus, {}),
]
IMPLS = ["cpp", "numba", "numpy", "torch"]


@pytest.fixture(autouse=True, scope="module")
def _threads():
    n0, t0 = nnkernels.get_num_threads(), torch.get_num_threads()
    nnkernels.set_num_threads(THREADS)
    torch.set_num_threads(THREADS)
    yield
    nnkernels.set_num_threads(n0)
    torch.set_num_threads(t0)


@pytest.mark.parametrize("impl", IMPLS + ["copy"])
@pytest.mark.parametrize("shape", CE_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_softmax_cross_entropy(benchmark, shape, impl):
    n, c = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, c, n)
    benchmark.group = f"ce-{n}x{c}"
    benchmark.extra_info.update(bytes_moved=2 * x.nbytes)
    if impl == "copy":
        out = np.empty_like(x)
        benchmark(np.copyto, out, x)
        return
    if impl == "torch":
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def run():
            t = xt.detach().requires_grad_()
            loss = F.cross_entropy(t, yt)
            loss.backward()
            return loss.detach(), t.grad

        loss, grad = run()
    else:
        def run():
            return ops.softmax_cross_entropy(x, y, backend=impl)

        loss, grad = run()  # warm-up (Numba compiles here)
    ref_loss, ref_grad = ops.softmax_cross_entropy(x, y, backend="numpy")
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    benchmark(run)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act", ACTS, ids=[a[0] for a in ACTS])
def test_activation_fwd_bwd(benchmark, act, impl):
    name, kw, tf, tkw = act
    op = name.replace("_tanh", "")
    rng = np.random.default_rng(1)
    x = rng.standard_normal(ACT_N).astype(np.float32)
    g = rng.standard_normal(ACT_N).astype(np.float32)
    benchmark.group = f"act-{name}"
    if impl == "torch":
        xt, gt = torch.from_numpy(x), torch.from_numpy(g)

        def run():
            t = xt.detach().requires_grad_()
            y = tf(t, **tkw)
            y.backward(gt)
            return y, t.grad
    else:
        fwd, bwd = getattr(ops, op), getattr(ops, op + "_backward")

        def run():
            return fwd(x, **kw, backend=impl), bwd(g, x, **kw, backend=impl)

    run()  # warm-up
    benchmark(run)
