"""GEMM regression guard: GFLOP/s and % of the measured FMA peak for every shape,
for each nnkernels ISA variant beside NumPy and PyTorch, with 1 and 2 threads.

    PYTHONPATH=python python -m pytest benchmarks/bench_gemm.py --benchmark-only

Shapes: square n = 256, 512, 1024, 2048, and the MLP layer 784 -> 256 at batch
M = 64, 256, 1024 with its three GEMMs:
    fwd      y(M, 256)  = x(M, 784) @ W(256, 784).T       (Linear forward, W.T a view)
    grad_x   gx(M, 784) = g(M, 256) @ W(256, 784)
    grad_W   gW(256, 784) = g.T(256, M) @ x(M, 784)         (g.T a view)
"nnk-numba" is the Numba backend's GEMM. At the end a table is printed (GFLOP/s = median time; % of the peak of the
ISA's vector width measured by a tiny FMA loop in the same run, see
_C.fma_peak). The machine may be shared: compare columns of one run.
Restrict with -k, e.g. -k "square and 1024" or -k "nnk-avx512".
"""

from __future__ import annotations

import contextlib

import nnkernels
import numpy as np
import pytest
from nnkernels import _C

try:
    import threadpoolctl
except ImportError:  # pragma: no cover
    threadpoolctl = None
try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

ISAS = list(_C.cpu_info()["supported"])
IMPLS = ([f"nnk-{isa}" for isa in ISAS] + ["nnk-numba", "numpy"]
         + (["torch"] if torch is not None else []))
THREADS = [1, 2]

SQUARE = [("square", n, n, n, "nn") for n in (256, 512, 1024, 2048)]
MLP = []
for M in (64, 256, 1024):
    MLP += [("mlp-fwd", M, 784, 256, "nt"),      # x @ W.T
            ("mlp-grad_x", M, 256, 784, "nn"),   # g @ W
            ("mlp-grad_W", 256, M, 784, "tn")]   # g.T @ x
SHAPES = SQUARE + MLP

_results: dict = {}
_peaks: dict = {}


def _operands(m, k, n, layout, dtype=np.float32):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if layout[0] == "t" else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if layout[1] == "t" else (k, n)).astype(dtype)
    opa = a.T if layout[0] == "t" else a
    opb = b.T if layout[1] == "t" else b
    return opa, opb, np.empty((m, n), dtype)


@contextlib.contextmanager
def _threads(n):
    n0 = nnkernels.get_num_threads()
    t0 = torch.get_num_threads() if torch is not None else None
    nnkernels.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    ctl = threadpoolctl.threadpool_limits(n) if threadpoolctl is not None else contextlib.nullcontext()
    try:
        with ctl:
            yield
    finally:
        nnkernels.set_num_threads(n0)
        if torch is not None:
            torch.set_num_threads(t0)


def _peak(isa, threads):
    """fp32 FMA peak (GFLOP/s) of an ISA's vector width, measured once per run."""
    key = (isa, threads)
    if key not in _peaks:
        prev = _C.cpu_info()["isa"]
        _C.set_isa(isa)
        try:
            _peaks[key] = max(_C.fma_peak(0.15, threads) for _ in range(3))
        finally:
            _C.set_isa(prev)
    return _peaks[key]


def _runner(impl, a, b, c):
    if impl == "nnk-numba":
        from nnkernels.backends import load_backend
        gemm = load_backend("numba").gemm
        return lambda: gemm(c, a, b, 1.0, 0.0)
    if impl.startswith("nnk-"):
        return lambda: _C.gemm(c, a, b, 1.0, 0.0)
    if impl == "numpy":
        return lambda: np.matmul(a, b, out=c)
    ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
    return lambda: torch.matmul(ta, tb, out=tc)


@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}thr")
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}-{s[1]}x{s[2]}x{s[3]}")
def test_gemm(benchmark, shape, impl, threads):
    name, m, k, n, layout = shape
    a, b, c = _operands(m, k, n, layout)
    flops = 2.0 * m * n * k
    native = impl.startswith("nnk-") and impl != "nnk-numba"
    isa = impl[4:] if native else ISAS[-1]
    peak = _peak(isa, threads)
    with _threads(threads), (_isa(isa) if native else contextlib.nullcontext()):
        fn = _runner(impl, a, b, c)
        fn()
        rounds = max(5, min(200, int(2e10 / flops)))
        benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=1)
    med = benchmark.stats.stats.median
    gflops = flops / med / 1e9
    benchmark.extra_info.update(gflops=round(gflops, 1), peak_gflops=round(peak, 1),
                                pct_of_peak=round(100 * gflops / peak, 1))
    _results[(f"{name} {m}x{k}x{n}", threads, impl)] = (gflops, peak)
    np.testing.assert_allclose(c[:3, :3], (a[:3].astype(np.float64) @ b[:, :3]), rtol=1e-3, atol=1e-3)


@contextlib.contextmanager
def _isa(isa):
    prev = _C.cpu_info()["isa"]
    _C.set_isa(isa)
    try:
        yield
    finally:
        _C.set_isa(prev)


@pytest.fixture(scope="module", autouse=True)
def _print_table(request):
    yield
    if not _results:
        return
    tr = request.config.pluginmanager.getplugin("terminalreporter")
    write = tr.write_line if tr is not None else print
    impls = [i for i in IMPLS if any(k[2] == i for k in _results)]
    write("")
    write("GEMM float32, GFLOP/s (% of the measured FMA peak of the ISA's vector width; "
          "numpy/torch against the widest ISA)")
    peaks = ", ".join(f"{isa} {t}thr {p:.0f}" for (isa, t), p in sorted(_peaks.items()))
    write(f"measured peaks (GFLOP/s): {peaks}")
    head = f"{'shape':28s} thr " + "".join(f"{i:>18s}" for i in impls)
    write(head)
    for shape in dict.fromkeys(k[0] for k in _results):
        for t in THREADS:
            cells = []
            for i in impls:
                r = _results.get((shape, t, i))
                cells.append(f"{r[0]:8.1f} ({100 * r[0] / r[1]:4.0f}%)" if r else f"{'-':>17s}")
            if any(c.strip() != "-" for c in cells):
                write(f"{shape:28s} {t:3d} " + "".join(f"{c:>18s}" for c in cells))
