"""Softmax cross-entropy, loss and gradient w.r.t. the logits in one call,
fp32 logits (N=256, C) for C = 10 ... 10000 classes, integer targets,
reduction "mean".

Ours: ``ops.softmax_cross_entropy`` (one fused pass). Peers: NumPy
(max-subtracted log-softmax and its gradient), PyTorch's ATen kernels as
autograd would call them (log_softmax, nll_loss and their backward, without
building a graph), JAX jit of value_and_grad. Bytes: logits read + gradient
written (8 bytes per logit); % of peak refers to the copy bandwidth.
"""

from __future__ import annotations

import numpy as np

from ..core import Task, ours
from ._util import jax_sync, ours_op, randn, rng, torch_tensor

NAME = "softmax-xent"
PEERS = ("numpy", "torch", "jax")
BATCH = 256
CLASSES = (10, 100, 1000, 10000)
CLASSES_QUICK = (10, 1000)


def _numpy(x, y):
    n = x.shape[0]
    rows = np.arange(n)

    def step():
        m = x.max(axis=1, keepdims=True)
        z = x - m
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        loss = (np.log(s[:, 0]) - z[rows, y]).mean()
        e /= s
        e[rows, y] -= 1.0
        e *= 1.0 / n
        return loss, e
    return step


def _torch(x, y):
    import torch

    aten = torch.ops.aten
    xt, yt = torch_tensor(x), torch.from_numpy(y)
    one = torch.ones((), dtype=torch.float32)

    def step():
        lsm = aten._log_softmax(xt, 1, False)
        loss, total_weight = aten.nll_loss_forward(lsm, yt, None, 1, -100)
        g = aten.nll_loss_backward(one, lsm, yt, None, 1, -100, total_weight)
        return loss, aten._log_softmax_backward_data(g, lsm, 1, torch.float32)
    return step


def _jax(x, y):
    import jax
    import jax.numpy as jnp

    def loss(v, t):
        lsm = jax.nn.log_softmax(v, axis=1)
        return -jnp.mean(jnp.take_along_axis(lsm, t[:, None], axis=1))

    f = jax.jit(jax.value_and_grad(loss))
    xj, yj = jnp.asarray(x), jnp.asarray(y.astype(np.int32))
    return lambda: f(xj, yj)


def _setup(impl: str, x, y):
    def make():
        if impl.startswith("nnk:"):
            f = ours_op("softmax_cross_entropy")
            return lambda: f(x, y)
        if impl == "numpy":
            return _numpy(x, y)
        if impl == "torch":
            return _torch(x, y)
        if impl == "jax":
            return _jax(x, y)
        raise ValueError(impl)
    return make


def tasks(cfg) -> list:
    impls = [ours(b) for b in cfg.backends] + list(PEERS)
    out = []
    for c in (CLASSES_QUICK if cfg.quick else CLASSES):
        x = randn((BATCH, c), 5) * 3
        y = rng(6).integers(0, c, size=BATCH).astype(np.int64)
        for t in cfg.threads:
            for impl in impls:
                out.append(Task(NAME, f"N={BATCH} C={c}", impl, t, _setup(impl, x, y),
                                nbytes=8.0 * x.size, roof="copy", params={"classes": c, "batch": BATCH},
                                sync=jax_sync if impl == "jax" else None,
                                backend=impl[4:] if impl.startswith("nnk:") else None))
    return out
