"""A/B two builds of the extension in one process: which GEMM is faster, robust to machine drift.

    python benchmarks/ab_builds.py OLD/_C.so NEW/_C.so [--threads 1] [--isa avx512]

Both shared objects are loaded as separate modules (``a._C`` and ``b._C``:
the file name does not matter, the init symbol is ``PyInit__C`` in both), so
their symbols never mix. Each shape is timed alternately A, B, A, B... and the
report is the median GFLOP/s of each plus the median of the per-pair speed
ratios B/A (> 1: B is faster). On a shared, noisy machine the ratio of
neighbouring calls is far steadier than two separate runs. Pin the process
(``taskset -c 0``) and set ``OMP_NUM_THREADS`` to the thread count.

Get a second build with e.g. ``git worktree add /tmp/old <commit>`` and
``tools/dev-build.sh`` there, then copy its ``python/nnkernels/_C*.so``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

import numpy as np


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name + "._C", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def shapes():
    """(name, m, k, n, layout): layout 'nn', 'nt' (B = W.T, Linear forward) or 'tn' (A = g.T)."""
    out = [("square 1024", 1024, 1024, 1024, "nn"), ("square 2048", 2048, 2048, 2048, "nn")]
    for m in (64, 256, 1024):
        out += [(f"fwd {m}x784x256", m, 784, 256, "nt"),
                (f"grad_x {m}x256x784", m, 256, 784, "nn"),
                (f"grad_W 256x{m}x784", 256, m, 784, "tn")]
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--isa", default=None, help="force this variant in both builds (set_isa)")
    p.add_argument("--flops", type=float, default=3e9, help="work per shape and build")
    args = p.parse_args(argv)
    mods = [load(args.a, "a"), load(args.b, "b")]
    for m in mods:
        m.set_num_threads(args.threads)
        if args.isa:
            m.set_isa(args.isa)
    print(f"variant {mods[0].gemm_info()['variant']} / {mods[1].gemm_info()['variant']}, "
          f"{args.threads} thread(s)")
    rng = np.random.default_rng(0)
    for name, m, k, n, layout in shapes():
        a = rng.standard_normal((k, m) if layout == "tn" else (m, k), dtype=np.float32)
        a = a.T if layout == "tn" else a
        b = rng.standard_normal((n, k) if layout == "nt" else (k, n), dtype=np.float32)
        b = b.T if layout == "nt" else b
        c = np.empty((m, n), np.float32)
        reps = max(5, int(args.flops / (2 * m * n * k)))
        ta, tb = [], []
        for _ in range(reps):
            for mod, ts in zip(mods, (ta, tb)):
                t = time.perf_counter()
                mod.gemm(c, a, b)
                ts.append(time.perf_counter() - t)
        gf = 2 * m * n * k / 1e9
        ratio = statistics.median(x / y for x, y in zip(ta, tb))
        print(f"{name:22s} A {gf / statistics.median(ta):7.1f}  B {gf / statistics.median(tb):7.1f} "
              f"GFLOP/s   B/A speed {ratio:.3f}")


if __name__ == "__main__":
    main()
