"""Losses on every backend (and every ISA variant of the C++ backend) against
PyTorch (float64 reference), central finite differences in float64, the
seed examples 4 and 5, adversarial values and argument checking."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nnkernels
from nnkernels import _C, ops


def _tol(dtype):
    return {"rtol": 2e-5, "atol": 2e-6} if dtype == np.float32 else {"rtol": 1e-11, "atol": 1e-12}


def _torch_loss(fn, x, *args, **kw):
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    with warnings.catch_warnings():  # kl_div's "mean" warning
        warnings.simplefilter("ignore", UserWarning)
        loss = fn(t, *args, **kw)
    loss.sum().backward()
    return loss.detach().numpy(), t.grad.numpy()


def _check(got, want, dtype, equal_nan=False):
    loss, grad = got
    tl, tg = want
    np.testing.assert_allclose(np.asarray(loss, dtype=np.float64), tl, equal_nan=equal_nan, **_tol(dtype))
    np.testing.assert_allclose(grad, tg, equal_nan=equal_nan, **_tol(dtype))


# ---- seed examples -----------------------------------------------------------------------

def test_seed_softmax_ce_gradient_is_p_minus_y(backend, dtype):
    # two classes, target 0, p = [0.6, 0.4] -> d loss / d logits = [-0.4, 0.4]
    logits = np.log(np.array([[0.6, 0.4]], dtype=dtype))
    loss, grad = ops.softmax_cross_entropy(logits, np.array([0]), backend=backend)
    np.testing.assert_allclose(grad, [[-0.4, 0.4]], atol=1e-6)
    np.testing.assert_allclose(loss, -np.log(0.6), rtol=1e-6)
    assert isinstance(loss, np.generic) and loss.dtype == dtype


def test_seed_mse_and_cross_entropy_on_probabilities(backend, dtype):
    y = np.array([0.0, 1.0, 0.0], dtype=dtype)
    for pred, mse, ce in [([0.1, 0.7, 0.2], 0.0467, 0.357), ([0.1, 0.1, 0.8], 0.487, 2.303)]:
        p = np.array(pred, dtype=dtype)
        loss, _ = ops.mse_loss(p, y, backend=backend)
        assert abs(float(loss) - mse) < 5e-4
        loss, _ = ops.nll_loss(np.log(p)[None, :], np.array([1]), backend=backend)
        assert abs(float(loss) - ce) < 5e-4
        # the same through the fused op on logits log(p) (softmax(log p) = p)
        loss, _ = ops.softmax_cross_entropy(np.log(p), np.int64(1), backend=backend)
        assert abs(float(loss) - ce) < 5e-4


# ---- softmax cross-entropy ---------------------------------------------------------------

CE_CASES = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(label_smoothing=0.1),
    dict(weight=True),
    dict(weight=True, label_smoothing=0.2, reduction="mean"),
    dict(weight=True, reduction="none", label_smoothing=0.05),
    dict(ignore=True),
    dict(ignore=True, weight=True, label_smoothing=0.1),
    dict(probs=True),
    dict(probs=True, weight=True, label_smoothing=0.1, reduction="sum"),
]


@pytest.mark.parametrize("case", CE_CASES, ids=[",".join(f"{k}={v}" for k, v in c.items()) or "default"
                                                 for c in CE_CASES])
@pytest.mark.parametrize("shape", [(1, 1), (6, 1), (9, 13)], ids=lambda s: "x".join(map(str, s)))
def test_cross_entropy_matches_torch(backend, dtype, case, shape):
    rng = np.random.default_rng(21)
    n, c = shape
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    kw = {"reduction": case.get("reduction", "mean"), "label_smoothing": case.get("label_smoothing", 0.0)}
    w = (rng.random(c) + 0.5).astype(dtype) if case.get("weight") else None
    if case.get("probs"):
        t = rng.random(shape).astype(dtype)
        t /= t.sum(1, keepdims=True)
        tt = torch.tensor(t.astype(np.float64))
    else:
        t = rng.integers(0, c, n)
        if case.get("ignore") and n > 1:
            t[::3] = -100
        tt = torch.tensor(t)
    want = _torch_loss(F.cross_entropy, x, tt, weight=None if w is None else torch.tensor(w.astype(np.float64)),
                       **kw)
    got = ops.softmax_cross_entropy(x, t, weight=w, backend=backend, **kw)
    assert got[1].dtype == dtype
    _check(got, want, dtype)
    # loss-only call gives the same loss
    loss_only, g = ops.softmax_cross_entropy(x, t, weight=w, backend=backend, with_grad=False, **kw)
    assert g is None
    np.testing.assert_allclose(loss_only, got[0], rtol=1e-6)


@pytest.mark.parametrize("case", [CE_CASES[0], CE_CASES[5], CE_CASES[10]], ids=["default", "weighted", "probs"])
def test_cross_entropy_long_rows(backend, dtype, case):
    test_cross_entropy_matches_torch(backend, dtype, case, (2, 50000))


@pytest.mark.parametrize("shape", [(40, 10), (3, 16), (5, 17), (2, 511), (2, 512), (3, 513), (3, 1500)],
                         ids=lambda s: "x".join(map(str, s)))
def test_cross_entropy_row_layouts(backend, dtype, shape):
    """The C++ float32 paths: 16 rows per block for C <= 16 (padding lanes and rows,
    ignored rows, a NaN row, an all -inf row), rows transposed into lanes for
    C <= 32, and 512-class chunks with an online max for longer rows and for
    probability targets (a max rising chunk after chunk, a -inf prefix longer than a
    chunk, the max in the last chunk)."""
    rng = np.random.default_rng(31)
    n, c = shape
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if c > 100:
        x[0] = np.linspace(-5, 30, c)
        x[1, : min(700, c - 1)] = -np.inf
        x[-1, -1] = 50.0
    t = rng.integers(0, c, n)
    if n > 5:
        t[2] = -100
        x[3, 1] = np.nan
        x[4] = -np.inf
    for kw in ({"reduction": "none"}, {"reduction": "mean", "label_smoothing": 0.1}):
        want = _torch_loss(F.cross_entropy, x, torch.tensor(t), **kw)
        _check(ops.softmax_cross_entropy(x, t, backend=backend, **kw), want, dtype, equal_nan=True)
    for f, tf in ((ops.softmax, torch.softmax), (ops.log_softmax, torch.log_softmax)):
        np.testing.assert_allclose(f(x, backend=backend), tf(torch.tensor(x.astype(np.float64)), -1).numpy(),
                                   equal_nan=True, **_tol(dtype))
    # class-probability targets, weighted and smoothed
    prob = rng.random(shape).astype(dtype)
    prob /= prob.sum(1, keepdims=True)
    w = (rng.random(c) + 0.5).astype(dtype)
    for kw in ({"reduction": "none"}, {"reduction": "sum", "label_smoothing": 0.1}):
        want = _torch_loss(F.cross_entropy, x, torch.tensor(prob.astype(np.float64)),
                           weight=torch.tensor(w.astype(np.float64)), **kw)
        _check(ops.softmax_cross_entropy(x, prob, weight=w, backend=backend, **kw), want, dtype, equal_nan=True)


def test_cross_entropy_unbatched_and_int_dtypes(backend):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(5)
    want = _torch_loss(F.cross_entropy, x, torch.tensor(3))
    _check(ops.softmax_cross_entropy(x, 3, backend=backend), want, np.float64)
    xb = rng.standard_normal((4, 5))
    ref = ops.softmax_cross_entropy(xb, np.array([0, 1, 4, 2]), backend=backend)
    for dt in (np.int8, np.uint8, np.int32, np.uint64):
        got = ops.softmax_cross_entropy(xb, np.array([0, 1, 4, 2], dtype=dt), backend=backend)
        assert got[0] == ref[0]
        np.testing.assert_array_equal(got[1], ref[1])


def test_cross_entropy_noncontiguous(backend, dtype):
    rng = np.random.default_rng(6)
    base = rng.standard_normal((8, 30)).astype(dtype)
    x = base[::2, ::3]
    t = np.arange(4)[::-1]
    want = _torch_loss(F.cross_entropy, np.ascontiguousarray(x), torch.tensor(t.copy()))
    _check(ops.softmax_cross_entropy(x, t, backend=backend), want, dtype)


def test_cross_entropy_huge_logits(backend, dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4], [-1e4, 0.0, 1e4]], dtype=dtype)
    t = np.array([1, 0, 0, 2])
    loss, grad = ops.softmax_cross_entropy(x, t, reduction="none", backend=backend)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    want = _torch_loss(F.cross_entropy, x, torch.tensor(t), reduction="none")
    _check((loss, grad), want, dtype)


def test_cross_entropy_nan_and_inf_propagate(backend, dtype):
    x = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0], [-np.inf, 0.0, 1.0], [np.inf, 0.0, 1.0]], dtype=dtype)
    t = np.array([1, 2, 0, 1])
    loss, grad = ops.softmax_cross_entropy(x, t, reduction="none", backend=backend)
    want = _torch_loss(F.cross_entropy, x, torch.tensor(t), reduction="none")
    _check((loss, grad), want, dtype, equal_nan=True)
    assert np.isnan(loss[0]) and np.isfinite(loss[1]) and loss[2] == np.inf


def test_cross_entropy_all_ignored(backend):
    loss, grad = ops.softmax_cross_entropy(np.ones((3, 4)), np.full(3, -100), backend=backend)
    assert np.isnan(loss) and np.all(grad == 0)  # as PyTorch: 0/0 loss, zero gradient


def test_cross_entropy_finite_differences(backend):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 5))
    w = rng.random(5) + 0.5
    probs = rng.random((3, 5))
    probs /= probs.sum(1, keepdims=True)
    for t, kw in [(np.array([1, -100, 4]), dict(weight=w, label_smoothing=0.1)),
                  (np.array([0, 2, 4]), dict(reduction="sum")),
                  (probs, dict(weight=w, label_smoothing=0.2))]:
        _, grad = ops.softmax_cross_entropy(x, t, backend=backend, **kw)
        _assert_fd(lambda z: float(ops.softmax_cross_entropy(z, t, backend=backend, with_grad=False, **kw)[0]),
                   x, grad)


def _assert_fd(f, x, grad, h=1e-6):
    fd = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = (f(xp) - f(xm)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_cross_entropy_bad_input(backend):
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"class index 7 at position 1"):
        ops.softmax_cross_entropy(x, np.array([0, 7, 1]), backend=backend)
    with pytest.raises(ValueError, match=r"class index -1 at position 2"):
        ops.softmax_cross_entropy(x, np.array([0, 1, -1]), backend=backend)
    with pytest.raises(ValueError, match="target.*batch"):
        ops.softmax_cross_entropy(x, np.array([0, 1]), backend=backend)
    with pytest.raises(ValueError, match="target"):
        ops.softmax_cross_entropy(x, np.zeros((3, 5)), backend=backend)
    with pytest.raises(TypeError, match="target"):
        ops.softmax_cross_entropy(x, np.array(["a", "b", "c"]), backend=backend)
    with pytest.raises(TypeError, match="target"):
        ops.softmax_cross_entropy(x, np.array([True, False, True]), backend=backend)
    with pytest.raises(TypeError, match="logits"):
        ops.softmax_cross_entropy(np.zeros((3, 4), np.int64), np.array([0, 1, 2]), backend=backend)
    with pytest.raises(ValueError, match="weight"):
        ops.softmax_cross_entropy(x, np.array([0, 1, 2]), weight=np.ones(3), backend=backend)
    with pytest.raises(ValueError, match="reduction"):
        ops.softmax_cross_entropy(x, np.array([0, 1, 2]), reduction="avg", backend=backend)
    with pytest.raises(ValueError, match="label_smoothing"):
        ops.softmax_cross_entropy(x, np.array([0, 1, 2]), label_smoothing=1.5, backend=backend)
    with pytest.raises(ValueError, match="logits"):
        ops.softmax_cross_entropy(np.zeros((2, 3, 4)), np.array([0, 1]), backend=backend)


def test_binding_validates_class_indices():
    x = np.zeros((3, 4), np.float32)
    g = np.empty_like(x)
    with pytest.raises(ValueError, match=r"class index 4 at position 2"):
        _C.cross_entropy(g, None, x, np.array([0, 1, 4]), None, -100, 0.0, True)
    with pytest.raises(TypeError, match="target"):
        _C.cross_entropy(g, None, x, np.array([0, 1, 3], np.int32), None, -100, 0.0, True)
    with pytest.raises(ValueError, match="grad"):
        _C.cross_entropy(np.empty((3, 5), np.float32), None, x, np.array([0, 1, 3]), None, -100, 0.0, True)
    with pytest.raises(TypeError, match="grad"):
        _C.cross_entropy(np.empty((3, 4)), None, x, np.array([0, 1, 3]), None, -100, 0.0, True)
    with pytest.raises(ValueError, match="target"):
        _C.cross_entropy(g, None, x, np.zeros((3, 5), np.float32), None, -100, 0.0, True)


# ---- nll ---------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_matches_torch(backend, dtype, reduction):
    rng = np.random.default_rng(9)
    lp = np.log(rng.dirichlet(np.ones(7), size=10)).astype(dtype)
    t = rng.integers(0, 7, 10)
    t[3] = -100
    w = (rng.random(7) + 0.5).astype(dtype)
    want = _torch_loss(F.nll_loss, lp, torch.tensor(t), weight=torch.tensor(w.astype(np.float64)),
                       reduction=reduction)
    _check(ops.nll_loss(lp, t, weight=w, reduction=reduction, backend=backend), want, dtype)
    with pytest.raises(ValueError, match="class index 9 at position 0"):
        ops.nll_loss(lp, np.array([9] + [0] * 9), backend=backend)


# ---- pointwise losses -------------------------------------------------------------------------

def _pointwise_cases(rng, dtype):
    x = (rng.standard_normal((6, 5)) * 2).astype(dtype)
    t = (rng.standard_normal((6, 5)) * 2).astype(dtype)
    t[0, :3] = x[0, :3]  # exact zeros of the difference
    t[1, 0] = x[1, 0] + 1.0  # |d| == delta for huber
    p = rng.random((6, 5)).astype(dtype)
    p[0, 0], p[0, 1], p[1, 1] = 0.0, 1.0, 1e-30
    tp = rng.random((6, 5)).astype(dtype)
    tp[2, :2] = 0.0
    tp[3, 0] = 1.0
    pw = (rng.random(5) + 0.5).astype(dtype)
    logp = np.log(rng.dirichlet(np.ones(5), size=6)).astype(dtype)
    big = (x * 30).astype(dtype)  # large logits for bce_with_logits
    return [
        ("mse_loss", F.mse_loss, x, t, {}, {}),
        ("l1_loss", F.l1_loss, x, t, {}, {}),
        ("huber_loss", F.huber_loss, x, t, {"delta": 1.0}, {"delta": 1.0}),
        ("huber_loss", F.huber_loss, x, t, {"delta": 0.3}, {"delta": 0.3}),
        ("binary_cross_entropy", F.binary_cross_entropy, p, tp, {}, {}),
        ("bce_with_logits", F.binary_cross_entropy_with_logits, big, tp, {}, {}),
        ("bce_with_logits", F.binary_cross_entropy_with_logits, x, tp, {"pos_weight": pw},
         {"pos_weight": torch.tensor(pw.astype(np.float64))}),
        ("kl_div", F.kl_div, logp, tp, {}, {}),
        ("kl_div", F.kl_div, logp, logp[::-1].copy(), {"log_target": True}, {"log_target": True}),
    ]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_pointwise_losses_match_torch(backend, dtype, reduction):
    rng = np.random.default_rng(10)
    for name, tf, x, t, kw, tkw in _pointwise_cases(rng, dtype):
        want = _torch_loss(tf, x, torch.tensor(t.astype(np.float64)), reduction=reduction, **tkw)
        got = getattr(ops, name)(x, t, reduction=reduction, backend=backend, **kw)
        if reduction == "none":
            assert got[0].shape == x.shape
        try:
            _check(got, want, dtype)
        except AssertionError as e:
            raise AssertionError(f"{name} {kw}: {e}") from None


def test_kl_div_batchmean(backend):
    rng = np.random.default_rng(13)
    lp = np.log(rng.dirichlet(np.ones(4), size=5))
    t = rng.dirichlet(np.ones(4), size=5)
    want = _torch_loss(F.kl_div, lp, torch.tensor(t), reduction="batchmean")
    _check(ops.kl_div(lp, t, reduction="batchmean", backend=backend), want, np.float64)


def test_pointwise_finite_differences(backend):
    rng = np.random.default_rng(14)
    for name, _, x, t, kw, _ in _pointwise_cases(rng, np.float64):
        if name == "binary_cross_entropy":
            x = np.clip(x, 0.05, 0.95)  # inside (0, 1), away from the clamps
        if name in ("l1_loss", "huber_loss"):
            x = x + 0.01 * (np.abs(x - t) < 0.01)  # away from the kinks
            x = np.where(np.abs(np.abs(x - t) - kw.get("delta", 9)) < 0.01, x + 0.02, x)
        _, grad = getattr(ops, name)(x, t, backend=backend, **kw)
        _assert_fd(lambda z: float(getattr(ops, name)(z, t, backend=backend, with_grad=False, **kw)[0]), x, grad)


def test_pointwise_nan_propagates(backend):
    x = np.array([np.nan, 1.0, 2.0])
    t = np.array([0.0, 1.0, np.nan])
    for name in ("mse_loss", "huber_loss", "l1_loss"):
        loss, grad = getattr(ops, name)(x, t, reduction="none", backend=backend)
        assert np.isnan(loss[0]) and np.isnan(loss[2]) and not np.isnan(loss[1])


def test_pointwise_bad_input(backend):
    with pytest.raises(ValueError, match="target"):
        ops.mse_loss(np.ones(3), np.ones(4), backend=backend)
    with pytest.raises(TypeError, match="input"):
        ops.mse_loss(np.ones(3, np.int32), np.ones(3), backend=backend)
    with pytest.raises(TypeError, match="target"):
        ops.mse_loss(np.ones(3), np.array(["a", "b", "c"]), backend=backend)
    with pytest.raises(ValueError, match="input.*probabilities"):
        ops.binary_cross_entropy(np.array([0.5, 1.5]), np.ones(2), backend=backend)
    with pytest.raises(ValueError, match="pos_weight"):
        ops.bce_with_logits(np.ones((2, 3)), np.ones((2, 3)), pos_weight=np.ones(4), backend=backend)
    with pytest.raises(ValueError, match="delta"):
        ops.huber_loss(np.ones(3), np.ones(3), delta=-1.0, backend=backend)
    with pytest.raises(ValueError, match="reduction"):
        ops.mse_loss(np.ones(3), np.ones(3), reduction="batchmean", backend=backend)


def test_losses_threads_do_not_change_results():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((256, 2000)).astype(np.float32)
    t = rng.integers(0, 2000, 256)
    y = rng.standard_normal((256, 2000)).astype(np.float32)
    n0 = nnkernels.get_num_threads()
    try:
        res = []
        for nt in (1, 2):
            nnkernels.set_num_threads(nt)
            res.append(ops.softmax_cross_entropy(x, t, backend="cpp") + ops.mse_loss(x, y, backend="cpp"))
    finally:
        nnkernels.set_num_threads(n0)
    for a, b in zip(res[0], res[1]):
        np.testing.assert_array_equal(a, b)
