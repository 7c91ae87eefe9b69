"""Numba backend kernels on inputs that cross their internal block and chunk
boundaries (pointwise-loss blocks of 4096, cross-entropy row blocks, the
short-row transposed path, parallel chunks), against the NumPy backend, and
the same results for 1 and 2 threads."""

from __future__ import annotations

import numpy as np
import pytest

import nnkernels
from nnkernels import ops


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    n0 = nnkernels.get_num_threads()
    nnkernels.set_num_threads(request.param)
    yield request.param
    nnkernels.set_num_threads(n0)


@pytest.mark.parametrize("shape", [(3, 3001), (37, 1000), (1000, 31), (4100, 10), (5, 33)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_blocks(threads, shape, dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    x[0, :2] = [1e4, -1e4]
    y = rng.integers(0, shape[1], shape[0])
    y[1] = -100
    w = rng.random(shape[1]).astype(dtype) + 0.5
    tol = {"rtol": 2e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-13}
    for kw in ({}, {"weight": w, "label_smoothing": 0.1}, {"reduction": "none"}):
        loss, grad = ops.softmax_cross_entropy(x, y, **kw, backend="numba")
        ref_loss, ref_grad = ops.softmax_cross_entropy(x, y, **kw, backend="numpy")
        np.testing.assert_allclose(loss, ref_loss, **tol)
        np.testing.assert_allclose(grad, ref_grad, **tol)
    p = rng.random(shape).astype(dtype)
    p /= p.sum(axis=1, keepdims=True)
    loss, grad = ops.softmax_cross_entropy(x, p, backend="numba")
    ref_loss, ref_grad = ops.softmax_cross_entropy(x, p, backend="numpy")
    np.testing.assert_allclose(loss, ref_loss, **tol)
    np.testing.assert_allclose(grad, ref_grad, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_losses_blocks(threads, dtype):
    rng = np.random.default_rng(2)
    shape = (97, 400)  # 38800 elements: several 4096-element blocks (rows not aligned), parallel
    x = rng.random(shape).astype(dtype) * 0.98 + 0.01
    t = rng.random(shape).astype(dtype)
    pw = (rng.random(shape[1]) + 0.5).astype(dtype)
    tol = {"rtol": 2e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-13}
    cases = [("mse_loss", (x, t), {}), ("l1_loss", (x, t), {}), ("huber_loss", (x * 3, t), {"delta": 0.5}),
             ("binary_cross_entropy", (x, t), {}), ("bce_with_logits", ((x - 0.5) * 20, t), {}),
             ("bce_with_logits", ((x - 0.5) * 20, t), {"pos_weight": pw}),
             ("kl_div", (np.log(x), t), {}), ("kl_div", (np.log(x), np.log(t)), {"log_target": True})]
    for name, args, kw in cases:
        for reduction in ("mean", "none"):
            loss, grad = getattr(ops, name)(*args, **kw, reduction=reduction, backend="numba")
            ref_loss, ref_grad = getattr(ops, name)(*args, **kw, reduction=reduction, backend="numpy")
            np.testing.assert_allclose(loss, ref_loss, **tol, err_msg=name)
            np.testing.assert_allclose(grad, ref_grad, **tol, err_msg=name)


def test_threads_do_not_change_results():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 5000)).astype(np.float32)
    y = rng.integers(0, 5000, 64)
    n0 = nnkernels.get_num_threads()
    try:
        res = []
        for nt in (1, 2):
            nnkernels.set_num_threads(nt)
            res.append((ops.gelu(x, backend="numba"), ops.softmax(x, backend="numba"),
                        *ops.softmax_cross_entropy(x, y, backend="numba"), *ops.mse_loss(x, x * 0.5, backend="numba")))
    finally:
        nnkernels.set_num_threads(n0)
    for a, b in zip(res[0], res[1]):
        np.testing.assert_array_equal(a, b)
