"""GEMM family ops (matmul, linear, linear_backward) on every backend and ISA."""

from __future__ import annotations

import numpy as np
import pytest

import nnkernels
from nnkernels import ops

from conftest import tol

SHAPES = [(1, 1, 1), (1, 7, 1), (3, 5, 7), (13, 17, 19), (64, 784, 256), (31, 1000, 3),
          (97, 33, 129), (7, 2, 1031), (0, 5, 3), (4, 0, 3), (4, 5, 0)]


def ref_matmul(a, b):
    return a.astype(np.float64) @ b.astype(np.float64)


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_shapes(backend, dtype, rng, m, k, n):
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = ops.matmul(a, b, backend=backend)
    assert c.shape == (m, n) and c.dtype == dtype
    np.testing.assert_allclose(c, ref_matmul(a, b), **tol(dtype, k))


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_matmul_transposes_alpha_beta(backend, dtype, rng, trans_a, trans_b):
    m, k, n = 45, 67, 39
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    out = c0.copy()
    r = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, alpha=0.5, beta=-2.0, out=out, backend=backend)
    assert r is out
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    np.testing.assert_allclose(out, 0.5 * ref_matmul(opa, opb) - 2.0 * c0, **tol(dtype, k))


def test_matmul_noncontiguous_views(backend, dtype, rng):
    big_a = rng.standard_normal((90, 140)).astype(dtype)
    big_b = rng.standard_normal((150, 80)).astype(dtype)
    a = big_a[::2, 1::2]              # (45, 70), strided
    b = np.asfortranarray(big_b[:70, ::-1])   # F-order copy of a reversed view
    b2 = big_b[:70, ::-1]             # negative stride
    for bb in (b, b2):
        c = ops.matmul(a, bb, backend=backend)
        np.testing.assert_allclose(c, ref_matmul(a, bb), **tol(dtype, 70))
    out_big = np.zeros((60, 160), dtype)
    out = out_big[:45, ::2]           # strided output view
    ops.matmul(a, b, out=out, backend=backend)
    np.testing.assert_allclose(out, ref_matmul(a, b), **tol(dtype, 70))
    assert np.all(out_big[:, 1::2] == 0)  # untouched between the strided columns


def test_matmul_beta_zero_ignores_nan_in_out(backend, dtype, rng):
    a = rng.standard_normal((5, 6)).astype(dtype)
    b = rng.standard_normal((6, 7)).astype(dtype)
    out = np.full((5, 7), np.nan, dtype)
    ops.matmul(a, b, out=out, backend=backend)
    assert np.isfinite(out).all()


def test_matmul_nan_propagates(backend, dtype, rng):
    a = rng.standard_normal((20, 30)).astype(dtype)
    b = rng.standard_normal((30, 40)).astype(dtype)
    a[3, 4] = np.nan
    c = ops.matmul(a, b, backend=backend)
    assert np.isnan(c[3]).all()
    assert np.isfinite(np.delete(c, 3, axis=0)).all()


def test_matmul_large(backend, rng):
    if backend == "numpy":
        pytest.skip("reference")
    a = rng.standard_normal((1100, 1030)).astype(np.float32)
    b = rng.standard_normal((1030, 1050)).astype(np.float32)
    c = ops.matmul(a, b, backend=backend)
    np.testing.assert_allclose(c, ref_matmul(a, b), **tol(np.float32, 1030))


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "gelu_tanh", "silu", "leaky_relu"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_forward(backend, dtype, rng, activation, with_bias):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((33, 50)).astype(dtype)
    w = rng.standard_normal((21, 50)).astype(dtype)
    bias = rng.standard_normal(21).astype(dtype) if with_bias else None
    y = ops.linear(x, w, bias, activation=activation, negative_slope=0.2, backend=backend)
    t = F.linear(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                 None if bias is None else torch.from_numpy(bias).double())
    acts = {None: lambda v: v, "relu": F.relu, "gelu": F.gelu, "silu": F.silu,
            "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"),
            "leaky_relu": lambda v: F.leaky_relu(v, 0.2)}
    np.testing.assert_allclose(y, acts[activation](t).numpy(), **tol(dtype, 50))


def test_linear_batched_leading_dims(backend, rng):
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    w = rng.standard_normal((5, 8)).astype(np.float32)
    y = ops.linear(x, w, backend=backend)
    assert y.shape == (2, 3, 5)
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("need_input_grad", [True, False])
def test_linear_backward_matches_torch(backend, dtype, rng, need_input_grad):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((37, 29)).astype(dtype)
    w = rng.standard_normal((11, 29)).astype(dtype)
    b = rng.standard_normal(11).astype(dtype)
    g = rng.standard_normal((37, 11)).astype(dtype)
    gx, gw, gb = ops.linear_backward(x, w, g, need_input_grad=need_input_grad, backend=backend)
    tx = torch.from_numpy(x).double().requires_grad_()
    tw = torch.from_numpy(w).double().requires_grad_()
    tb = torch.from_numpy(b).double().requires_grad_()
    torch.nn.functional.linear(tx, tw, tb).backward(torch.from_numpy(g).double())
    t = tol(dtype, 37)
    np.testing.assert_allclose(gw, tw.grad.numpy(), **t)
    np.testing.assert_allclose(gb, tb.grad.numpy(), **t)
    if need_input_grad:
        np.testing.assert_allclose(gx, tx.grad.numpy(), **t)
    else:
        assert gx is None


def test_backends_agree(dtype, rng):
    x = rng.standard_normal((70, 130)).astype(dtype)
    w = rng.standard_normal((90, 130)).astype(dtype)
    b = rng.standard_normal(90).astype(dtype)
    ys = [ops.linear(x, w, b, backend=name) for name in nnkernels.available_backends()]
    for y in ys[1:]:
        np.testing.assert_allclose(y, ys[0], **tol(dtype, 130))


def test_colsum_deterministic_across_threads(rng):
    from nnkernels.backends import load_backend
    g = rng.standard_normal((5000, 300)).astype(np.float32)
    n0 = nnkernels.get_num_threads()
    outs = []
    try:
        for th in (1, 2):
            nnkernels.set_num_threads(th)
            _, _, gb = ops.linear_backward(np.ones((5000, 4), np.float32), np.ones((300, 4), np.float32), g)
            outs.append(gb)
            o = np.empty(300, np.float32)
            load_backend("cpp").colsum(o, g, False)
            outs.append(o)
    finally:
        nnkernels.set_num_threads(n0)
    for o in outs[1:]:
        assert np.array_equal(o, outs[0])


# ---- errors ----------------------------------------------------------------

def test_mixed_dtypes_type_error(backend):
    with pytest.raises(TypeError, match="dtype mismatch"):
        ops.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float64), backend=backend)


def test_int_dtype_type_error(backend):
    with pytest.raises(TypeError, match="a: expected dtype float32 or float64"):
        ops.matmul(np.ones((2, 2), np.int32), np.ones((2, 2), np.float32), backend=backend)


def test_not_array_type_error():
    with pytest.raises(TypeError, match="a: expected a numpy array"):
        ops.matmul("abc", np.ones((2, 2)))


def test_shape_mismatch_names_shapes(backend):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        ops.matmul(np.ones((2, 3)), np.ones((4, 5)), backend=backend)
    with pytest.raises(ValueError, match="2-D"):
        ops.matmul(np.ones(3), np.ones((3, 2)), backend=backend)
    with pytest.raises(ValueError, match=r"weight"):
        ops.linear(np.ones((2, 3)), np.ones((4, 5)), backend=backend)
    with pytest.raises(ValueError, match="bias"):
        ops.linear(np.ones((2, 3)), np.ones((4, 3)), np.ones(5), backend=backend)


def test_bad_out(backend):
    a = np.ones((3, 4))
    b = np.ones((4, 5))
    with pytest.raises(ValueError, match="out: expected shape"):
        ops.matmul(a, b, out=np.empty((3, 4)), backend=backend)
    with pytest.raises(TypeError, match="out: expected dtype"):
        ops.matmul(a, b, out=np.empty((3, 5), np.float32), backend=backend)
    ro = np.empty((3, 5))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.matmul(a, b, out=ro, backend=backend)
    buf = np.ones((5, 5))
    with pytest.raises(ValueError, match="overlaps"):
        ops.matmul(buf[:3, :4], b, out=buf[:3, :5], backend=backend)
    with pytest.raises(ValueError, match="beta"):
        ops.matmul(a, b, beta=1.0, backend=backend)


def test_readonly_inputs_accepted(backend, rng):
    a = rng.standard_normal((6, 7))
    b = rng.standard_normal((7, 8))
    a.flags.writeable = False
    b.flags.writeable = False
    np.testing.assert_allclose(ops.matmul(a, b, backend=backend), a @ b, rtol=1e-12, atol=1e-12)


def test_binding_rejects_bad_arguments_directly():
    """The private binding re-checks everything (defence in depth): no crash."""
    from nnkernels import _C
    with pytest.raises(TypeError):
        _C.gemm(np.empty((2, 2), np.float32), np.ones((2, 2), np.float64), np.ones((2, 2), np.float64))
    with pytest.raises(ValueError):
        _C.gemm(np.empty((2, 3)), np.ones((2, 2)), np.ones((2, 2)))
    ro = np.empty((2, 2))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _C.gemm(ro, np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="epilogue"):
        _C.gemm(np.empty((2, 2)), np.ones((2, 2)), np.ones((2, 2)), 1.0, 0.0, None, "tanhh")
    with pytest.raises(TypeError):
        _C.colsum(np.empty(2, np.float32), np.ones((3, 2), np.float64))
