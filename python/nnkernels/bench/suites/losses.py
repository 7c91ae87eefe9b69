"""Losses, value and gradient in one call, fp32 (N=4096, 256) predictions
against targets of the same shape, reduction "mean": mse, l1, huber,
bce_with_logits.

Bytes: input and target read, gradient written (12 bytes per element); %
of peak refers to the copy bandwidth. Peers: NumPy expressions, PyTorch's
ATen forward and backward kernels called directly, JAX jit of
value_and_grad.
"""

from __future__ import annotations

import numpy as np

from ..core import NotAvailable, Task, ours
from ._util import jax_sync, ours_op, randn, rng, torch_tensor

NAME = "losses"
PEERS = ("numpy", "torch", "jax")
LOSSES = ("mse_loss", "l1_loss", "huber_loss", "bce_with_logits")
LOSSES_QUICK = ("mse_loss", "bce_with_logits")
SHAPE = (4096, 256)
SHAPE_QUICK = (1024, 256)


def _numpy(name, x, t):
    n = x.size
    if name == "mse_loss":
        def f():
            d = x - t
            return (d * d).mean(), d * (2.0 / n)
        return f
    if name == "l1_loss":
        def f():
            d = x - t
            return np.abs(d).mean(), np.sign(d) * (1.0 / n)
        return f
    if name == "huber_loss":
        def f():
            d = x - t
            a = np.abs(d)
            quad = a < 1.0
            loss = np.where(quad, 0.5 * d * d, a - 0.5).mean()
            return loss, np.where(quad, d, np.sign(d)) * (1.0 / n)
        return f
    if name == "bce_with_logits":
        def f():
            # log(1 + exp(-|x|)) + max(x, 0) - x t ; gradient (sigmoid(x) - t) / n
            loss = (np.logaddexp(0.0, -np.abs(x)) + np.maximum(x, 0) - x * t).mean()
            s = 1.0 / (1.0 + np.exp(-x))
            return loss, (s - t) * (1.0 / n)
        return f
    raise NotAvailable(name)


def _torch(name, x, t):
    import torch

    aten = torch.ops.aten
    xt, tt = torch_tensor(x), torch_tensor(t)
    one = torch.ones((), dtype=torch.float32)
    mean = 1  # at::Reduction::Mean
    if name == "mse_loss":
        return lambda: (aten.mse_loss(xt, tt, mean), aten.mse_loss_backward(one, xt, tt, mean))
    if name == "l1_loss":
        # ATen has no l1_loss_backward kernel: autograd uses sgn(x - t) * g / n.
        return lambda: (aten.l1_loss(xt, tt, mean), torch.sgn(xt - tt).mul_(one / xt.numel()))
    if name == "huber_loss":
        return lambda: (aten.huber_loss(xt, tt, mean, 1.0), aten.huber_loss_backward(one, xt, tt, mean, 1.0))
    if name == "bce_with_logits":
        def f():
            loss = aten.binary_cross_entropy_with_logits(xt, tt, None, None, mean)
            return loss, (torch.sigmoid(xt) - tt).mul_(1.0 / xt.numel())  # autograd's formula
        return f
    raise NotAvailable(name)


def _jax(name, x, t):
    import jax
    import jax.numpy as jnp
    import jax.nn

    def loss(v, w):
        d = v - w
        if name == "mse_loss":
            return jnp.mean(d * d)
        if name == "l1_loss":
            return jnp.mean(jnp.abs(d))
        if name == "huber_loss":
            a = jnp.abs(d)
            return jnp.mean(jnp.where(a < 1.0, 0.5 * d * d, a - 0.5))
        return jnp.mean(jax.nn.softplus(-jnp.abs(v)) + jnp.maximum(v, 0) - v * w)

    f = jax.jit(jax.value_and_grad(loss))
    xj, tj = jnp.asarray(x), jnp.asarray(t)
    return lambda: f(xj, tj)


def _setup(impl, name, x, t):
    def make():
        if impl.startswith("nnk:"):
            f = ours_op(name)
            return lambda: f(x, t)
        if impl == "numpy":
            return _numpy(name, x, t)
        if impl == "torch":
            return _torch(name, x, t)
        if impl == "jax":
            return _jax(name, x, t)
        raise ValueError(impl)
    return make


def tasks(cfg) -> list:
    impls = [ours(b) for b in cfg.backends] + list(PEERS)
    shape = SHAPE_QUICK if cfg.quick else SHAPE
    x = randn(shape, 7)
    out = []
    for name in (LOSSES_QUICK if cfg.quick else LOSSES):
        t = (rng(8).random(shape, dtype=np.float32) if name == "bce_with_logits" else randn(shape, 8))
        for th in cfg.threads:
            for impl in impls:
                out.append(Task(NAME, f"{name} {shape[0]}x{shape[1]}", impl, th, _setup(impl, name, x, t),
                                nbytes=12.0 * x.size, roof="copy", params={"loss": name},
                                sync=jax_sync if impl == "jax" else None,
                                backend=impl[4:] if impl.startswith("nnk:") else None))
    return out
