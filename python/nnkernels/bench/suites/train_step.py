"""One training step of the MLP [784, 256, 128, 10] (ReLU, cross-entropy,
Adam): forward + backward + optimizer update, at batch sizes 1 ... 4096.

Ours: the fused ``model.train_step(x, y, loss_fn, optimizer)`` when this
build has it, else the layer-by-layer path (forward, loss, backward,
optimizer.step()); the record's note says which. Full runs also time the
layer-by-layer path of the first backend (``nnk:<backend>-layers``). Peers: PyTorch eager (the
same model and torch.optim.Adam) and JAX jit of the whole step. Reported as
samples/s; GFLOP/s and % of the FMA peak use the step's matmul flops.
"""

from __future__ import annotations

import numpy as np

from ..core import Task, ours
from . import _mlp
from ._util import jax_sync, randn, rng

NAME = "train-step"
PEERS = ("torch", "jax")
BATCHES = (1, 16, 64, 256, 1024, 4096)
BATCHES_QUICK = (16, 256, 1024)


def _setup(impl: str, x, y):
    def make():
        if impl.startswith("nnk:"):  # (step, which path); "-layers": never the fused step
            return _mlp.ours_step(x, y, layers=impl.endswith("-layers"))
        if impl == "torch":
            return _mlp.torch_step(x, y)
        if impl == "jax":
            return _mlp.jax_step(x, y)
        raise ValueError(impl)
    return make


def tasks(cfg) -> list:
    impls = [ours(b) for b in cfg.backends]
    if not cfg.quick:  # the layer-by-layer path too, to show what fusing the step buys
        impls.append(ours(cfg.backends[0]) + "-layers")
    impls += list(PEERS)
    out = []
    for batch in (BATCHES_QUICK if cfg.quick else BATCHES):
        x = randn((batch, _mlp.SIZES[0]), 9)
        y = rng(10).integers(0, _mlp.SIZES[-1], size=batch).astype(np.int64)
        for t in cfg.threads:
            for impl in impls:
                out.append(Task(NAME, f"batch {batch}", impl, t, _setup(impl, x, y),
                                flops=_mlp.step_flops(batch), samples=batch, roof="fma",
                                params={"batch": batch},
                                sync=jax_sync if impl == "jax" else None,
                                backend=impl[4:].split("-")[0] if impl.startswith("nnk:") else None))
    return out
