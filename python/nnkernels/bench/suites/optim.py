"""Optimizer update: one Adam step (lr 1e-3, betas 0.9/0.999, eps 1e-8) in
place, on the MLP's parameters (235k fp32 in 6 tensors), on the same count in
one flat tensor, and on 4M parameters in one tensor.

Ours: ``ops.adam_step`` (one fused pass per tensor: reads param, grad and
both moments, writes param and moments: 28 bytes per parameter; % of peak
refers to the copy bandwidth). Peers: torch.optim.Adam with
``foreach=False`` (torch-loop), ``foreach=True`` (torch-foreach) and
``fused=True`` (torch-fused), each timing ``optimizer.step()``; NumPy
in-place array expressions.
"""

from __future__ import annotations

import numpy as np

from ..core import Task, ours
from . import _mlp
from ._util import ours_op, randn

NAME = "optim"
PEERS = ("numpy", "torch-loop", "torch-foreach", "torch-fused")
BYTES_PER_PARAM = 28.0
BIG = 4 << 20


def _shapes(kind: str):
    sizes = _mlp.SIZES
    mlp = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        mlp += [(b, a), (b,)]
    if kind == "mlp":
        return mlp
    if kind == "flat":
        return [(sum(int(np.prod(s)) for s in mlp),)]
    return [(BIG,)]


def _arrays(shapes):
    params = [randn(s, 11 + i) for i, s in enumerate(shapes)]
    grads = [randn(s, 31 + i) * 0.01 for i, s in enumerate(shapes)]
    return params, grads


def _ours(shapes):
    adam_step = ours_op("adam_step")
    params, grads = _arrays(shapes)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    count = [0]

    def step():
        count[0] += 1
        for p, g, mi, vi in zip(params, grads, m, v):
            adam_step(p, g, mi, vi, step=count[0], lr=_mlp.LR)
    step.params = params  # for tests
    return step


def _numpy(shapes, b1=0.9, b2=0.999, eps=1e-8):
    params, grads = _arrays(shapes)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    tmp = [np.empty_like(p) for p in params]
    count = [0]

    def step():
        count[0] += 1
        c1, c2 = 1 - b1 ** count[0], 1 - b2 ** count[0]
        for p, g, mi, vi, t in zip(params, grads, m, v, tmp):
            mi *= b1
            mi += (1 - b1) * g
            vi *= b2
            np.multiply(g, g, out=t)
            t *= 1 - b2
            vi += t
            np.divide(vi, c2, out=t)
            np.sqrt(t, out=t)
            t += eps
            np.divide(mi, t, out=t)
            t *= _mlp.LR / c1
            p -= t
    step.params = params  # for tests
    return step


def _torch(shapes, variant: str):
    import torch

    params, grads = _arrays(shapes)
    tp = []
    for p, g in zip(params, grads):
        t = torch.nn.Parameter(torch.from_numpy(p))
        t.grad = torch.from_numpy(g)
        tp.append(t)
    kw = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[variant]
    opt = torch.optim.Adam(tp, lr=_mlp.LR, **kw)
    return opt.step


def _setup(impl: str, shapes):
    def make():
        if impl.startswith("nnk:"):
            return _ours(shapes)
        if impl == "numpy":
            return _numpy(shapes)
        if impl.startswith("torch-"):
            return _torch(shapes, impl.split("-", 1)[1])
        raise ValueError(impl)
    return make


def tasks(cfg) -> list:
    impls = [ours(b) for b in cfg.backends] + list(PEERS)
    kinds = ("mlp", "big") if cfg.quick else ("mlp", "flat", "big")
    out = []
    for kind in kinds:
        shapes = _shapes(kind)
        n = sum(int(np.prod(s)) for s in shapes)
        case = {"mlp": f"MLP {n} params, {len(shapes)} tensors", "flat": f"flat {n} params",
                "big": f"flat {n} params"}[kind]
        for t in cfg.threads:
            for impl in impls:
                out.append(Task(NAME, case, impl, t, _setup(impl, shapes), nbytes=BYTES_PER_PARAM * n,
                                roof="copy", params={"params": n, "tensors": len(shapes)},
                                backend=impl[4:] if impl.startswith("nnk:") else None))
    return out
