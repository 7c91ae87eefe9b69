"""GEMM kernels beyond the basics: fused epilogues on the packed and direct
paths, the backward pass with the activation's derivative fused, edge tiles of
every microkernel, thread-count independence and concurrent callers."""

from __future__ import annotations

import threading

import nnkernels
import numpy as np
import pytest
from conftest import ISAS, isa_forced, tol
from nnkernels import _C, ops

ACTS = [None, "relu", "gelu", "gelu_tanh", "silu", "leaky_relu"]


def torch_act(torch, name, slope=0.2):
    F = torch.nn.functional
    return {None: lambda v: v, "relu": F.relu, "gelu": F.gelu, "silu": F.silu,
            "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"),
            "leaky_relu": lambda v: F.leaky_relu(v, slope)}[name]


# (N, in, out): direct path (small), packed path with edge tiles in every dimension,
# and several k-blocks (in > KC) so the epilogue runs only with the last one.
LIN_SHAPES = [(5, 3, 7), (33, 50, 21), (131, 700, 77), (29, 1100, 45)]


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("shape", LIN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_linear_epilogue_vs_torch(backend, dtype, rng, activation, shape):
    torch = pytest.importorskip("torch")
    n, i, o = shape
    x = (2 * rng.standard_normal((n, i)) / np.sqrt(i)).astype(dtype)
    w = rng.standard_normal((o, i)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    y = ops.linear(x, w, b, activation=activation, negative_slope=0.2, backend=backend)
    t = torch.nn.functional.linear(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                                   torch.from_numpy(b).double())
    np.testing.assert_allclose(y, torch_act(torch, activation)(t).numpy(), **tol(dtype, i))


def test_epilogue_extreme_values_and_nan(backend):
    """Saturated arguments of exp/erf, and NaN through every activation."""
    vals = [-200.0, -30.0, -9.0, -1e-3, 0.0, 1e-3, 9.0, 30.0, 200.0] + list(np.linspace(-6, 6, 39))
    x = np.array([vals] * 3 + [[np.nan] * len(vals)], np.float32)  # last row: NaN (x @ I spreads it)
    eye = np.eye(len(vals), dtype=np.float32)
    torch = pytest.importorskip("torch")
    for act in ACTS[1:]:
        y = ops.linear(x, eye, activation=act, negative_slope=0.2, backend=backend)
        ref = torch_act(torch, act)(torch.from_numpy(x.astype(np.float64))).numpy()
        assert np.isnan(y[-1]).all(), act
        np.testing.assert_allclose(y[:-1], ref[:-1], rtol=1e-5, atol=1e-6, err_msg=act)


@pytest.mark.parametrize("activation,use_output", [(a, False) for a in ACTS[1:]] +
                         [("relu", True), ("leaky_relu", True)])
def test_linear_backward_fused_derivative(backend, dtype, rng, activation, use_output):
    torch = pytest.importorskip("torch")
    n, i, o = 67, 45, 39
    x = rng.standard_normal((n, i)).astype(dtype)
    w = (rng.standard_normal((o, i)) / np.sqrt(i)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    g = rng.standard_normal((n, o)).astype(dtype)
    z = ops.linear(x, w, b, backend="numpy")
    y = ops.linear(x, w, b, activation=activation, negative_slope=0.2, backend="numpy")
    kw = {"output": y} if use_output else {"pre_activation": z}
    gx, gw, gb = ops.linear_backward(x, w, g, activation=activation, negative_slope=0.2,
                                     backend=backend, **kw)
    tx = torch.from_numpy(x).double().requires_grad_()
    tw = torch.from_numpy(w).double().requires_grad_()
    tb = torch.from_numpy(b).double().requires_grad_()
    act = torch_act(torch, activation)
    act(torch.nn.functional.linear(tx, tw, tb)).backward(torch.from_numpy(g).double())
    t = tol(dtype, n)
    if dtype == np.float32:
        t = {"rtol": 1e-4, "atol": 1e-4}
    np.testing.assert_allclose(gx, tx.grad.numpy(), **t)
    np.testing.assert_allclose(gw, tw.grad.numpy(), **t)
    np.testing.assert_allclose(gb, tb.grad.numpy(), **t)


def test_linear_backward_activation_errors():
    x = np.ones((4, 3))
    w = np.ones((2, 3))
    g = np.ones((4, 2))
    with pytest.raises(ValueError, match="exactly one"):
        ops.linear_backward(x, w, g, activation="relu")
    with pytest.raises(ValueError, match="pre_activation"):
        ops.linear_backward(x, w, g, activation="gelu", output=np.ones((4, 2)))
    with pytest.raises(ValueError, match="only meaningful"):
        ops.linear_backward(x, w, g, pre_activation=np.ones((4, 2)))
    with pytest.raises(ValueError, match="pre_activation: expected shape"):
        ops.linear_backward(x, w, g, activation="relu", pre_activation=np.ones((4, 3)))
    with pytest.raises(TypeError, match="dtype mismatch"):
        ops.linear_backward(x, w, g, activation="relu", pre_activation=np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="activation"):
        ops.linear_backward(x, w, g, activation="tanhh", pre_activation=np.ones((4, 2)))


def test_binding_aux_checks():
    a = np.ones((3, 4))
    with pytest.raises(ValueError, match="aux"):
        _C.gemm(np.empty((3, 2)), a, np.ones((4, 2)), 1.0, 0.0, None, "none", 0.0, "relu", None)
    with pytest.raises(ValueError, match="aux: expected shape"):
        _C.gemm(np.empty((3, 2)), a, np.ones((4, 2)), 1.0, 0.0, None, "none", 0.0, "relu", np.ones((4, 3)))
    with pytest.raises(ValueError, match="z"):
        _C.colsum(np.empty(4), a, False, "relu", None)


@pytest.mark.parametrize("isa", ISAS)
def test_gemm_aux_strided_views(isa, rng):
    """act'(aux) with transposed/strided aux (the grad_weight GEMM reads z.T)."""
    g = rng.standard_normal((40, 30))
    z = rng.standard_normal((80, 30))[::2]          # strided rows
    b = rng.standard_normal((40, 17))
    out = np.empty((30, 17))
    with isa_forced(isa):
        _C.gemm(out, g.T, b, 1.0, 0.0, None, "none", 0.0, "leaky_relu", z.T, 0.1)
    d = np.where(z > 0, 1.0, 0.1)
    np.testing.assert_allclose(out, (g * d).T @ b, rtol=1e-12, atol=1e-12)


# Every (m, n) remainder of the 14x32 / 6x16 / 4x8 tiles, around the direct/packed switch.
EDGE = [(m, k, n) for m in (1, 13, 14, 15, 29) for n in (1, 15, 17, 31, 33, 65) for k in (1, 9)] + \
       [(100, 300, 97), (15, 2000, 33)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k,n", EDGE)
def test_edge_tiles_every_isa(isa, dtype, rng, m, k, n):
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    out = c0.copy()
    at = np.ascontiguousarray(a.T).T                       # column-major view
    bn = np.ascontiguousarray(b[:, ::-1])[:, ::-1]         # negative column stride
    with isa_forced(isa):
        _C.gemm(out, a, b, 0.5, 2.0, bias, "none")
        c2 = ops.matmul(at, bn, backend="cpp")
    ref = 0.5 * (a.astype(np.float64) @ b) + 2.0 * c0 + bias
    np.testing.assert_allclose(out, ref, **tol(dtype, k))
    np.testing.assert_allclose(c2, a.astype(np.float64) @ b, **tol(dtype, k))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k,n", [(14, 530, 4), (15, 9, 5), (200, 784, 100), (29, 1100, 40), (3, 64, 8)])
def test_narrow_last_panel_every_isa(isa, dtype, rng, m, k, n):
    """A last column panel of a few columns (n % NR in 1..8: AVX-512 fp32
    computes it as columns of C, ukr_packed_cols) on the packed path (B
    transposed), with alpha, beta, bias and relu over several k-blocks: the
    same values as those columns computed inside a full-width panel, bit for
    bit, and the reference's within rounding."""
    a = rng.standard_normal((m, k)).astype(dtype)
    wide = n + 32 - n % 32  # the same columns, none in a narrow panel
    bt = rng.standard_normal((wide, k)).astype(dtype)
    c0 = rng.standard_normal((m, wide)).astype(dtype)
    bias = rng.standard_normal(wide).astype(dtype)
    out, out_wide = c0[:, :n].copy(), c0.copy()
    with isa_forced(isa):
        _C.gemm(out, a, bt[:n].T, 0.5, 2.0, bias[:n], "relu")
        _C.gemm(out_wide, a, bt.T, 0.5, 2.0, bias, "relu")
    np.testing.assert_array_equal(out, out_wide[:, :n])
    ref = np.maximum(0.5 * (a.astype(np.float64) @ bt[:n].T) + 2.0 * c0[:, :n] + bias[:n], 0)
    np.testing.assert_allclose(out, ref, **tol(dtype, k))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k,n", [(64, 300, 130), (90, 200, 200), (8, 600, 512), (70, 1100, 64)])
def test_b_read_in_place_every_isa(isa, dtype, rng, m, k, n):
    """Few rows of A and a row-major B: the packed path reads B's full panels
    in place (unaligned rows, several k-blocks, a partial last panel packed),
    with alpha, beta, bias and an activation in the epilogue."""
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n + 1)).astype(dtype)[:, 1:]  # rows not 64-byte aligned
    c0 = rng.standard_normal((m, n)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    out, out2 = c0.copy(), np.empty((m, n), dtype)
    with isa_forced(isa):
        _C.gemm(out, a, b, 0.5, 2.0, bias, "none")
        _C.gemm(out2, a, b, 1.0, 0.0, bias, "relu")
    ab = a.astype(np.float64) @ b
    np.testing.assert_allclose(out, 0.5 * ab + 2.0 * c0 + bias, **tol(dtype, k))
    np.testing.assert_allclose(out2, np.maximum(ab + bias, 0), **tol(dtype, k))


def test_results_independent_of_thread_count(dtype, rng):
    a = rng.standard_normal((300, 530)).astype(dtype)
    b = rng.standard_normal((530, 270)).astype(dtype)
    n0 = nnkernels.get_num_threads()
    outs = []
    try:
        for th in (1, 2, 3):
            nnkernels.set_num_threads(th)
            outs.append(ops.matmul(a, b, backend="cpp"))
            outs.append(ops.linear(a, b.T, activation="gelu", backend="cpp"))
    finally:
        nnkernels.set_num_threads(n0)
    for i in range(2, len(outs)):
        assert np.array_equal(outs[i], outs[i % 2])


def test_concurrent_python_threads(rng):
    """Several Python threads calling the GEMM at once (GIL released) get right answers."""
    mats = [(rng.standard_normal((150 + 7 * i, 200)).astype(np.float32),
             rng.standard_normal((200, 90 + 5 * i)).astype(np.float32)) for i in range(6)]
    refs = [a.astype(np.float64) @ b for a, b in mats]
    errors = []

    def work(i):
        try:
            for _ in range(5):
                c = ops.matmul(*mats[i], backend="cpp")
                np.testing.assert_allclose(c, refs[i], **tol(np.float32, 200))
        except AssertionError as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_gemm_info_reports_tiles_and_blocking():
    info = _C.gemm_info()
    assert info["mr_f32"] > 0 and info["nr_f32"] > 0
    for key in ("blocking_f32", "blocking_f64"):
        blk = info[key]
        assert blk["KC"] > 0 and blk["MC"] % info["mr_f32" if key.endswith("32") else "mr_f64"] == 0
        assert blk["NC"] > 0
