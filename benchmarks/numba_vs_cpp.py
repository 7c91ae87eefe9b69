"""Numba backend against the C++ backend on the issue-3 benchmarks, calls
interleaved (cpp, numba, cpp, numba, ...) so that load from other processes
hits both alike; medians, one thread.

    NNKERNELS_NUM_THREADS=1 PYTHONPATH=python taskset -c 1 python benchmarks/numba_vs_cpp.py

Activations: forward + backward on 4M float32 elements (fresh outputs, as the
ops return them). Softmax cross-entropy: loss and gradient, reduction "mean",
float32 logits, for (N, C) = (64, 10), (1024, 10), (256, 1000), (64, 32000).
"""

from __future__ import annotations

import time

import numpy as np

import nnkernels
from nnkernels import ops

ACTS = [("relu", {}), ("leaky_relu", {}), ("elu", {}), ("sigmoid", {}), ("tanh", {}), ("gelu", {}),
        ("gelu", {"approximate": "tanh"}), ("silu", {}), ("softplus", {})]
CE_SHAPES = [(64, 10), (1024, 10), (256, 1000), (64, 32000)]


def interleaved(run_a, run_b, reps):
    """Median seconds of run_a and of run_b, called alternately (after 2 warm-ups each)."""
    for _ in range(2):
        run_a()
        run_b()
    ta, tb = [], []
    for _ in range(reps):
        t = time.perf_counter()
        run_a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        run_b()
        tb.append(time.perf_counter() - t)
    return float(np.median(ta)), float(np.median(tb))


def main():
    nnkernels.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4_000_000).astype(np.float32)
    g = rng.standard_normal(4_000_000).astype(np.float32)
    print(f"{'benchmark':20s} {'cpp':>10s} {'numba':>10s}  numba/cpp")
    for name, kw in ACTS:
        fwd, bwd = getattr(ops, name), getattr(ops, name + "_backward")

        def run(backend):
            return lambda: (fwd(x, **kw, backend=backend), bwd(g, x, **kw, backend=backend))

        tc, tn = interleaved(run("cpp"), run("numba"), 21)
        label = name + ("(tanh)" if kw else "")
        print(f"{label:20s} {tc * 1e3:7.2f} ms {tn * 1e3:7.2f} ms  {tn / tc:.2f}")
    for n, c in CE_SHAPES:
        logits = rng.standard_normal((n, c)).astype(np.float32)
        y = rng.integers(0, c, n)

        def run(backend):
            return lambda: ops.softmax_cross_entropy(logits, y, backend=backend)

        tc, tn = interleaved(run("cpp"), run("numba"), 401 if n * c < 100_000 else 51)
        print(f"{f'CE ({n}, {c})':20s} {tc * 1e6:7.1f} us {tn * 1e6:7.1f} us  {tn / tc:.2f}")


if __name__ == "__main__":
    main()
