"""Quick single-process check of the issue-3 figures, beside PyTorch in the same run:
activations forward and backward on 4M float32 elements (ours through nnkernels.ops,
PyTorch's ATen kernels called directly), and softmax cross-entropy forward+backward at
(1024, 10) and (64, 32000) with the copy bandwidth of the logits as the yardstick.

    PYTHONPATH=python NNKERNELS_NUM_THREADS=1 taskset -c 1 python benchmarks/act_ce_quick.py

Each figure is the lower quartile of 25 timed calls (robust to a shared machine's
bursts); ratios are PyTorch time / ours (above 1: we are faster).
"""

from __future__ import annotations

import time

import numpy as np
import torch

import nnkernels
from nnkernels import ops


def lower_quartile(f, inner: int = 1, reps: int = 25) -> float:
    f()
    f()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            f()
        ts.append((time.perf_counter() - t0) / inner)
    ts.sort()
    return ts[len(ts) // 4]


def activation_cases(x: np.ndarray, g: np.ndarray) -> dict:
    """name: (ours fwd, ours bwd, torch fwd, torch bwd) on x and grad_out g; PyTorch's are
    the ATen kernels autograd would call (the sigmoid/tanh backward take the output)."""
    F, A = torch.nn.functional, torch.ops.aten
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    ys, yt = torch.sigmoid(xt), torch.tanh(xt)
    return {
        "relu": (lambda: ops.relu(x), lambda: ops.relu_backward(g, x),
                 lambda: torch.relu(xt), lambda: A.threshold_backward(gt, xt, 0)),
        "sigmoid": (lambda: ops.sigmoid(x), lambda: ops.sigmoid_backward(g, x),
                    lambda: torch.sigmoid(xt), lambda: A.sigmoid_backward(gt, ys)),
        "tanh": (lambda: ops.tanh(x), lambda: ops.tanh_backward(g, x),
                 lambda: torch.tanh(xt), lambda: A.tanh_backward(gt, yt)),
        "gelu": (lambda: ops.gelu(x), lambda: ops.gelu_backward(g, x),
                 lambda: F.gelu(xt), lambda: A.gelu_backward(gt, xt)),
        "silu": (lambda: ops.silu(x), lambda: ops.silu_backward(g, x),
                 lambda: F.silu(xt), lambda: A.silu_backward(gt, xt)),
    }


def main() -> None:
    nnkernels.set_num_threads(1)
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    n = 4_000_000
    x = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    cases = activation_cases(x, g)
    print(f"activations, {n} float32 elements: ours / torch (ratio torch/ours)")
    for name, (of, ob, tf, tb) in cases.items():
        a, b, c, d = (lower_quartile(f) for f in (of, ob, tf, tb))
        print(f"  {name:8s} fwd {a*1e3:5.2f} / {c*1e3:5.2f} ms {c/a:4.2f}x | bwd {b*1e3:5.2f} / {d*1e3:5.2f} ms "
              f"{d/b:4.2f}x | fwd+bwd {(c+d)/(a+b):4.2f}x", flush=True)
    print("softmax cross-entropy, forward + backward, reduction 'mean'")
    for rows, classes in [(1024, 10), (64, 32000)]:
        logits = rng.standard_normal((rows, classes)).astype(np.float32)
        target = rng.integers(0, classes, rows)
        lt, tt = torch.from_numpy(logits), torch.from_numpy(target)

        def torch_ce():
            t = lt.detach().requires_grad_()
            F.cross_entropy(t, tt).backward()

        out = np.empty_like(logits)
        inner = 200 if classes < 100 else 2
        ours = lower_quartile(lambda: ops.softmax_cross_entropy(logits, target), inner)
        theirs = lower_quartile(torch_ce, max(1, inner // 10))
        copy = lower_quartile(lambda: np.copyto(out, logits), inner)
        print(f"  ({rows}, {classes}): ours {ours*1e6:8.1f} us, torch {theirs*1e6:8.1f} us ({theirs/ours:5.1f}x), "
              f"copy {copy*1e6:7.1f} us ({copy/ours*100:3.0f}% of copy bandwidth)", flush=True)


if __name__ == "__main__":
    main()
