"""GEMM: square fp32 C = A @ B (256...2048) and the MLP layer shapes
(M in 64, 256, 1024; K = 784; N = 256): the forward product X @ W.T and both
backward products dX = G @ W and dW = G.T @ X. 2*M*N*K flops each;
% of peak refers to the FMA peak at the same thread count."""

from __future__ import annotations

import numpy as np

from ..core import Task, ours
from ._util import jax_sync, ours_op, randn, torch_tensor

NAME = "gemm"
PEERS = ("numpy", "torch", "jax")
SQUARE = (256, 512, 1024, 2048)
SQUARE_QUICK = (256, 1024)
MLP_M = (64, 256, 1024)
MLP_M_QUICK = (256,)
MLP_K, MLP_N = 784, 256

# (kind, trans_a, trans_b): which operand is read transposed, as in Linear's
# forward (X @ W.T), input gradient (G @ W) and weight gradient (G.T @ X).
KINDS = {"fwd": (False, True), "dX": (False, False), "dW": (True, False)}


def _operands(kind: str, m: int, n: int, k: int):
    """Stored operands whose (transposed) product is (rows x cols) for the kind."""
    if kind == "square":
        return randn((m, k), 1), randn((k, n), 2), False, False
    if kind == "fwd":     # X (M, K) @ W (N, K).T -> (M, N)
        return randn((m, k), 1), randn((n, k), 2), False, True
    if kind == "dX":      # G (M, N) @ W (N, K) -> (M, K)
        return randn((m, n), 1), randn((n, k), 2), False, False
    if kind == "dW":      # G (M, N).T @ X (M, K) -> (N, K)
        return randn((m, n), 1), randn((m, k), 2), True, False
    raise ValueError(kind)


def _setup(impl: str, a, b, ta: bool, tb: bool):
    def make():
        rows = a.shape[1] if ta else a.shape[0]
        cols = b.shape[0] if tb else b.shape[1]
        if impl.startswith("nnk:"):
            matmul = ours_op("matmul")
            out = np.empty((rows, cols), np.float32)
            return lambda: matmul(a, b, trans_a=ta, trans_b=tb, out=out)
        if impl == "numpy":
            out = np.empty((rows, cols), np.float32)
            aa, bb = (a.T if ta else a), (b.T if tb else b)
            return lambda: np.matmul(aa, bb, out=out)
        if impl == "torch":
            import torch

            at, bt = torch_tensor(a), torch_tensor(b)
            aa, bb = (at.t() if ta else at), (bt.t() if tb else bt)
            out = torch.empty((rows, cols), dtype=torch.float32)
            return lambda: torch.mm(aa, bb, out=out)
        if impl == "jax":
            import jax
            import jax.numpy as jnp

            aj, bj = jnp.asarray(a), jnp.asarray(b)
            f = jax.jit(lambda x, y: (x.T if ta else x) @ (y.T if tb else y))
            return lambda: f(aj, bj)
        raise ValueError(impl)
    return make


def tasks(cfg) -> list:
    impls = [ours(b) for b in cfg.backends] + list(PEERS)
    shapes = []
    for s in (SQUARE_QUICK if cfg.quick else SQUARE):
        shapes.append((f"{s}x{s}x{s}", "square", s, s, s, {"size": s}))
    for m in (MLP_M_QUICK if cfg.quick else MLP_M):
        for kind in KINDS:
            rows, cols, inner = {"fwd": (m, MLP_N, MLP_K), "dX": (m, MLP_K, MLP_N),
                                 "dW": (MLP_N, MLP_K, m)}[kind]
            shapes.append((f"mlp {kind} M={m}", kind, m, MLP_N, MLP_K,
                           {"M": m, "kind": kind, "mnk": [rows, cols, inner]}))
    out = []
    for case, kind, m, n, k, params in shapes:
        a, b, ta, tb = _operands(kind, m, n, k)
        for t in cfg.threads:
            for impl in impls:
                out.append(Task(NAME, case, impl, t, _setup(impl, a, b, ta, tb),
                                flops=2.0 * m * n * k, roof="fma", params=params,
                                sync=jax_sync if impl == "jax" else None,
                                backend=impl[4:] if impl.startswith("nnk:") else None))
    return out
