"""pytest-benchmark versions of the `nnkernels bench` suites, for development.

    pytest benchmarks/bench_suites.py --benchmark-only [-k "gemm and nnk"]

The cases and the code that is timed come from nnkernels.bench.suites (the
same Task objects the command runs, in their --quick sizes), so the two can
never disagree. Ours runs on the cpp backend (NNK_BENCH_BACKENDS=cpp,numba to
change) with all threads of this process (NNK_BENCH_THREADS to change).
A missing peer or an API missing from this build is skipped, not failed.
"""

from __future__ import annotations

import os

import pytest

from nnkernels.bench import peers
from nnkernels.bench.core import Config, NotAvailable, peer_of
from nnkernels.bench.suites import SUITES


def _config() -> Config:
    backends = os.environ.get("NNK_BENCH_BACKENDS", "cpp").split(",")
    threads = int(os.environ.get("NNK_BENCH_THREADS", peers.all_threads()))
    return Config(threads=[threads], backends=backends, quick=True)


def _tasks():
    cfg = _config()
    for name, mod in SUITES.items():
        for task in mod.tasks(cfg):
            yield pytest.param(task, id=f"{name}|{task.case}|{task.impl}".replace(" ", "_"))


@pytest.mark.parametrize("task", list(_tasks()))
def test_suite_case(benchmark, task):
    peer = peer_of(task.impl)
    if peer is not None and not peers.available(peer):
        pytest.skip(f"{peer} is not installed")
    if peer == "jax" and task.threads != peers.all_threads():
        pytest.skip("JAX/XLA threads are fixed per process")
    import contextlib

    import nnkernels

    ctx = nnkernels.use_backend(task.backend) if task.backend else contextlib.nullcontext()
    with peers.threads(task.threads), ctx:
        try:
            made = task.setup()
        except NotAvailable as exc:
            pytest.skip(str(exc))
        fn = made[0] if isinstance(made, tuple) else made
        if task.sync is not None:
            def timed():
                task.sync(fn())
        else:
            timed = fn
        try:
            timed()  # warm-up (JIT compilation) outside the measurement
        except AttributeError as exc:  # a kernel this backend lacks
            pytest.skip(str(exc))
        benchmark.extra_info.update(suite=task.suite, case=task.case, impl=task.impl, threads=task.threads,
                                    flops=task.flops, bytes=task.nbytes, samples=task.samples)
        if task.budget is not None:  # whole epochs: a few rounds only
            benchmark.pedantic(timed, rounds=3, iterations=1)
        else:
            benchmark(timed)
