"""How far can an activation's forward+backward beat PyTorch's at 4M float32 elements?

Beside ours and PyTorch's ATen kernels, the same run times the memory-traffic
floor of each pass: the same bytes with the least arithmetic, by the faster of
PyTorch's and nnkernels' kernels for it (both vectorised and threaded). The
forward reads x and writes y (a copy: ``out.copy_(x)``, or our relu), the
backward reads grad_out and x and writes grad_in (``torch.add(g, x, out=)``,
or our relu_backward). An activation cannot beat its floor by more than
noise; PyTorch's time over the floor is the most any implementation could
gain over PyTorch with the same arrays in and out.

    PYTHONPATH=python python benchmarks/act_floor.py [--threads N]

Calls are interleaved round by round and the median of each is reported (a
shared machine's bursts hit all alike).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import nnkernels
from act_ce_quick import activation_cases  # same directory
from nnkernels import ops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n", type=int, default=4_000_000)
    p.add_argument("--rounds", type=int, default=31)
    args = p.parse_args()
    nnkernels.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(args.n).astype(np.float32)
    g = rng.standard_normal(args.n).astype(np.float32)
    out = np.empty_like(x)
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    cases = activation_cases(x, g)
    out_t = torch.from_numpy(out)
    floors_f = (lambda: out_t.copy_(xt), lambda: ops.relu(x))  # read x, write y
    floors_b = (lambda: torch.add(gt, xt, out=out_t), lambda: ops.relu_backward(g, x))  # read g, x; write

    def fastest(fns):
        best = []
        for f in fns:
            f()
            ts = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t0)
            best.append((statistics.median(ts), f))
        return min(best, key=lambda b: b[0])[1]

    floor_f, floor_b = fastest(floors_f), fastest(floors_b)
    print(f"{args.n} float32 elements, {args.threads} thread(s); medians of {args.rounds} interleaved rounds (ms)")
    print(f"{'':8s} {'ours f+b':>9s} {'torch f+b':>10s} {'floor f+b':>10s} {'torch/ours':>11s} "
          f"{'torch/floor':>12s}")
    for name, fns in cases.items():
        fs = list(fns) + [floor_f, floor_b]
        for f in fs:
            f()
        t = [[] for _ in fs]
        for _ in range(args.rounds):
            for k, f in enumerate(fs):
                t0 = time.perf_counter()
                f()
                t[k].append(time.perf_counter() - t0)
        m = [statistics.median(v) * 1e3 for v in t]
        ours, theirs, floor = m[0] + m[1], m[2] + m[3], m[4] + m[5]
        print(f"{name:8s} {ours:9.2f} {theirs:10.2f} {floor:10.2f} {theirs / ours:10.2f}x {theirs / floor:11.2f}x")


if __name__ == "__main__":
    main()
