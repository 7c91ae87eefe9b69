"""Activations, forward and backward, elementwise on fp32 (N, 1024).

Forward reads x and writes y (8 bytes/element); backward reads grad_out and
x and writes grad_in (12 bytes/element). % of peak refers to the measured
copy bandwidth at the same thread count. Peers: NumPy expressions (where
NumPy has one), PyTorch's ATen kernels called directly (torch.relu,
aten.threshold_backward, ... - no autograd overhead), JAX jit of the
function and of its VJP.
"""

from __future__ import annotations


import numpy as np

from ..core import NotAvailable, Task, ours
from ._util import jax_sync, ours_op, randn, torch_tensor

NAME = "activations"
PEERS = ("numpy", "torch", "jax")
ACTS = ("relu", "gelu", "silu", "sigmoid", "tanh")
ACTS_QUICK = ("relu", "gelu")
ROWS = (256, 4096)   # x (rows, 1024): 1 MiB (cache-resident) and 16 MiB (memory)
ROWS_QUICK = (1024,)
COLS = 1024


def _numpy(act: str, direction: str, x, g, out):
    """NumPy expressions writing into preallocated arrays (``out``, scratch ``e``)."""
    e = np.empty_like(x)

    def sigmoid(dst):  # dst := 1 / (1 + exp(-x))
        np.negative(x, out=dst)
        np.exp(dst, out=dst)
        np.add(dst, 1, out=dst)
        np.reciprocal(dst, out=dst)

    if act == "relu":
        if direction == "fwd":
            return lambda: np.maximum(x, 0, out=out)
        return lambda: np.multiply(g, x > 0, out=out)
    if act == "sigmoid":
        if direction == "fwd":
            return lambda: sigmoid(out)

        def sigmoid_bwd():  # g * s * (1 - s)
            sigmoid(e)
            np.subtract(1, e, out=out)
            np.multiply(out, e, out=out)
            np.multiply(out, g, out=out)
        return sigmoid_bwd
    if act == "tanh":
        if direction == "fwd":
            return lambda: np.tanh(x, out=out)

        def tanh_bwd():  # g * (1 - tanh(x)^2)
            np.tanh(x, out=e)
            np.multiply(e, e, out=e)
            np.subtract(1, e, out=e)
            np.multiply(g, e, out=out)
        return tanh_bwd
    if act == "silu":
        if direction == "fwd":
            def silu():
                sigmoid(out)
                np.multiply(x, out, out=out)
            return silu

        def silu_bwd():  # g * s * (1 + x (1 - s))
            sigmoid(e)
            np.subtract(1, e, out=out)
            np.multiply(out, x, out=out)
            np.add(out, 1, out=out)
            np.multiply(out, e, out=out)
            np.multiply(out, g, out=out)
        return silu_bwd
    raise NotAvailable(f"NumPy has no {act} (no erf)")


def _torch(act: str, direction: str, x, g):
    import torch

    xt, gt = torch_tensor(x), torch_tensor(g)
    aten = torch.ops.aten
    if direction == "fwd":
        f = {"relu": torch.relu, "gelu": torch.nn.functional.gelu, "silu": torch.nn.functional.silu,
             "sigmoid": torch.sigmoid, "tanh": torch.tanh}[act]
        return lambda: f(xt)
    if act == "relu":
        return lambda: aten.threshold_backward(gt, xt, 0.0)
    if act == "gelu":
        return lambda: aten.gelu_backward(gt, xt)
    if act == "silu":
        return lambda: aten.silu_backward(gt, xt)
    yt = torch.sigmoid(xt) if act == "sigmoid" else torch.tanh(xt)
    # ATen's sigmoid/tanh backward take the forward output (what autograd saves).
    if act == "sigmoid":
        return lambda: aten.sigmoid_backward(gt, yt)
    return lambda: aten.tanh_backward(gt, yt)


def _jax(act: str, direction: str, x, g):
    import jax
    import jax.numpy as jnp

    f = {"relu": jax.nn.relu, "gelu": lambda v: jax.nn.gelu(v, approximate=False),
         "silu": jax.nn.silu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}[act]
    xj, gj = jnp.asarray(x), jnp.asarray(g)
    if direction == "fwd":
        jf = jax.jit(f)
        return lambda: jf(xj)
    jb = jax.jit(lambda v, c: jax.vjp(f, v)[1](c)[0])
    return lambda: jb(xj, gj)


def _setup(impl: str, act: str, direction: str, x, g):
    def make():
        if impl.startswith("nnk:"):
            out = np.empty_like(x)
            if direction == "fwd":
                f = ours_op(act)
                return lambda: f(x, out=out)
            b = ours_op(f"{act}_backward")
            return lambda: b(g, x, out=out)
        if impl == "numpy":
            return _numpy(act, direction, x, g, np.empty_like(x))
        if impl == "torch":
            return _torch(act, direction, x, g)
        if impl == "jax":
            return _jax(act, direction, x, g)
        raise ValueError(impl)
    return make


def tasks(cfg) -> list:
    impls = [ours(b) for b in cfg.backends] + list(PEERS)
    out = []
    for rows in (ROWS_QUICK if cfg.quick else ROWS):
        x = randn((rows, COLS), 3)
        g = randn((rows, COLS), 4)
        n = x.size
        for act in (ACTS_QUICK if cfg.quick else ACTS):
            for direction in ("fwd", "bwd"):
                nbytes = (8 if direction == "fwd" else 12) * n
                case = f"{act} {direction} {rows}x{COLS}"
                for t in cfg.threads:
                    for impl in impls:
                        out.append(Task(NAME, case, impl, t, _setup(impl, act, direction, x, g),
                                        nbytes=nbytes, roof="copy",
                                        params={"act": act, "direction": direction, "elements": n},
                                        sync=jax_sync if impl == "jax" else None,
                                        backend=impl[4:] if impl.startswith("nnk:") else None))
    return out


