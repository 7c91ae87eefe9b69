"""Activations and softmax on every backend (and every ISA variant of the C++
backend) against PyTorch (float64 reference), the NumPy backend, central
finite differences, and the seed example softmax([2, 1, 0.1])."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nnkernels
from nnkernels import _C, ops

# (op name, torch function, keyword arguments)
ACTS = [
    ("relu", F.relu, {}),
    ("leaky_relu", F.leaky_relu, {"negative_slope": 0.2}),
    ("elu", F.elu, {"alpha": 0.7}),
    ("sigmoid", torch.sigmoid, {}),
    ("tanh", torch.tanh, {}),
    ("gelu", F.gelu, {"approximate": "none"}),
    ("gelu", F.gelu, {"approximate": "tanh"}),
    ("silu", F.silu, {}),
    ("softplus", F.softplus, {}),
    ("softplus", F.softplus, {"beta": 2.0, "threshold": 5.0}),
]
ACT_IDS = [n + "".join(f"-{v}" for v in kw.values()) for n, _, kw in ACTS]

ADVERSARIAL = [0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 0.5, -0.5, 2.0, -2.0, 2.5, 3.0, -3.0, 6.0, -6.0, 9.0,
               -9.0, 20.0, -20.0, 30.0, -30.0, 88.0, -88.0, 100.0, -100.0, 1e4, -1e4, 1e30, -1e30,
               np.inf, -np.inf, np.nan]


def _inputs(rng, dtype, shape=(7, 23)):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    flat = x.reshape(-1)
    flat[: len(ADVERSARIAL)] = np.array(ADVERSARIAL, dtype=dtype)
    return x


def _torch_ref(tf, x, g, kw):
    """Forward and input-gradient in float64 by PyTorch."""
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    y = tf(t, **kw)
    y.backward(torch.tensor(g.astype(np.float64)))
    return y.detach().numpy(), t.grad.numpy()


def _close(got, want, dtype, rtol32=2e-6, rtol64=1e-12):
    rtol = rtol32 if dtype == np.float32 else rtol64
    atol = 1e-7 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(got.astype(np.float64), want.astype(dtype).astype(np.float64), rtol=rtol,
                               atol=atol, equal_nan=True)


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_activation_matches_torch(backend, dtype, rng, act):
    name, tf, kw = act
    x = _inputs(rng, dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    y_ref, gx_ref = _torch_ref(tf, x, g, kw)
    y = getattr(ops, name)(x, **kw, backend=backend)
    gx = getattr(ops, name + "_backward")(g, x, **kw, backend=backend)
    assert y.dtype == dtype and gx.dtype == dtype and y.shape == x.shape
    _close(y, y_ref, dtype)
    _close(gx, gx_ref, dtype)
    # and the NumPy reference agrees
    _close(y, getattr(ops, name)(x, **kw, backend="numpy").astype(np.float64), dtype)


@pytest.mark.parametrize("shape", [(1, 1), (5, 1), (1, 50000), (2, 3, 4), (0, 3), ()])
@pytest.mark.parametrize("name", ["relu", "gelu", "softplus"])
def test_activation_shapes(backend, shape, name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = getattr(ops, name)(x, backend=backend)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, getattr(ops, name)(x, backend="numpy"), rtol=2e-6, atol=1e-7)


def test_activation_noncontiguous_and_out(backend, dtype):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 40)).astype(dtype)
    x = base[:, ::3]  # strided view
    y = ops.silu(x, backend=backend)
    np.testing.assert_allclose(y, ops.silu(np.ascontiguousarray(x), backend="numpy"), rtol=2e-6, atol=1e-7)
    out = np.empty(x.shape, dtype=dtype)
    assert ops.tanh(x, out=out, backend=backend) is out
    np.testing.assert_allclose(out, np.tanh(x), rtol=2e-6, atol=1e-7)


def test_kink_derivatives(backend):
    x = np.zeros(3)
    g = np.ones(3)
    assert np.all(ops.relu_backward(g, x, backend=backend) == 0.0)
    assert np.all(ops.leaky_relu_backward(g, x, negative_slope=0.3, backend=backend) == 0.3)
    assert np.allclose(ops.elu_backward(g, x, alpha=0.7, backend=backend), 0.7)
    assert np.allclose(ops.gelu_backward(g, x, backend=backend), 0.5)
    assert np.allclose(ops.softplus_backward(g, x, backend=backend), 0.5)


@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_activation_finite_differences(backend, act):
    name, _, kw = act
    rng = np.random.default_rng(3)
    x = rng.uniform(-4, 4, 64)
    x = x[np.abs(x) > 1e-3]  # away from the kinks
    h = 1e-6
    fd = (getattr(ops, name)(x + h, **kw, backend=backend) - getattr(ops, name)(x - h, **kw, backend=backend)) / (2 * h)
    an = getattr(ops, name + "_backward")(np.ones_like(x), x, **kw, backend=backend)
    np.testing.assert_allclose(an, fd, rtol=1e-6, atol=1e-8)


# ---- softmax -----------------------------------------------------------------------

def test_softmax_seed_example(backend, dtype):
    y = ops.softmax(np.array([2.0, 1.0, 0.1], dtype=dtype), backend=backend)
    np.testing.assert_allclose(y, [0.659, 0.242, 0.099], atol=1e-3)
    assert abs(float(y.sum()) - 1.0) < 1e-6


@pytest.mark.parametrize("shape", [(1, 1), (9, 1), (7, 13), (3, 1000), (1, 50000), (2, 3, 5)])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_matches_torch(backend, dtype, shape, log):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    tf = F.log_softmax if log else F.softmax
    y_ref, gx_ref = _torch_ref(lambda t: tf(t, dim=-1), x, g, {})
    fwd = ops.log_softmax if log else ops.softmax
    bwd = ops.log_softmax_backward if log else ops.softmax_backward
    y = fwd(x, backend=backend)
    gx = bwd(g, y, backend=backend)
    rtol = 5e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, y_ref, rtol=rtol, atol=1e-6 if dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-5 if dtype == np.float32 else 1e-11,
                               atol=1e-6 if dtype == np.float32 else 1e-13)


def test_softmax_adversarial(backend, dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [0.0, -np.inf, 1.0], [np.nan, 1.0, 2.0],
                  [np.inf, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=dtype)
    ref = torch.softmax(torch.tensor(x.astype(np.float64)), -1).numpy()
    lref = torch.log_softmax(torch.tensor(x.astype(np.float64)), -1).numpy()
    y = ops.softmax(x, backend=backend)
    ly = ops.log_softmax(x, backend=backend)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-7, equal_nan=True)
    np.testing.assert_allclose(ly, lref, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert np.all(np.isfinite(y[:3])) and np.all(np.isnan(y[3]))


def test_softmax_finite_differences(backend):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 6))
    w = rng.standard_normal((3, 6))  # d/dx of sum(w * softmax(x))
    for fwd, bwd in [(ops.softmax, ops.softmax_backward), (ops.log_softmax, ops.log_softmax_backward)]:
        an = bwd(w, fwd(x, backend=backend), backend=backend)
        fd = np.zeros_like(x)
        h = 1e-6
        for idx in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[idx] += h
            xm[idx] -= h
            fd[idx] = (np.sum(w * fwd(xp, backend=backend)) - np.sum(w * fwd(xm, backend=backend))) / (2 * h)
        np.testing.assert_allclose(an, fd, rtol=1e-6, atol=1e-8)


# ---- argument checking ------------------------------------------------------------------

def test_activation_errors(backend):
    with pytest.raises(TypeError, match="x"):
        ops.relu(np.arange(3), backend=backend)
    with pytest.raises(TypeError, match="x"):
        ops.relu("abc", backend=backend)
    with pytest.raises(ValueError, match="grad_out"):
        ops.relu_backward(np.ones(3), np.ones(4), backend=backend)
    with pytest.raises(TypeError, match="dtype"):
        ops.relu_backward(np.ones(3, np.float32), np.ones(3), backend=backend)
    with pytest.raises(ValueError, match="approximate"):
        ops.gelu(np.ones(3), approximate="fast", backend=backend)
    with pytest.raises(ValueError, match="out"):
        x = np.ones(3)
        ops.relu(x, out=x, backend=backend)


def test_binding_checks_arguments():
    x = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="out"):
        _C.act_forward(np.ones(4, np.int32), x, "relu")
    with pytest.raises(ValueError, match="x"):
        _C.act_forward(np.ones(5, np.float32), x, "relu")
    with pytest.raises(ValueError, match="read-only"):
        ro = np.ones(4, np.float32)
        ro.flags.writeable = False
        _C.act_forward(ro, x, "relu")
    with pytest.raises(ValueError, match="name"):
        _C.act_forward(np.ones(4, np.float32), x, "swish")
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.act_forward(np.ones(8, np.float32)[::2], x, "relu")


# ---- vectorised elementary functions (C++ vmath.h) -----------------------------------------

@pytest.fixture(params=list(_C.cpu_info()["supported"]))
def isa(request):
    prev = _C.cpu_info()["isa"]
    _C.set_isa(request.param)
    yield request.param
    _C.set_isa(prev)


def _math_ref(fn, x):
    import math
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        table = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
                 "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
                 "erf": np.vectorize(math.erf, otypes=[np.float64]),
                 "erfc": np.vectorize(math.erfc, otypes=[np.float64])}
        return table[fn](x64)


@pytest.mark.parametrize("fn", ["exp", "expm1", "log", "log1p", "tanh", "erf", "erfc", "sigmoid",
                                "exp_f", "expm1_f", "log_f", "log1p_f", "tanh_f", "sigmoid_f", "erf_f", "erfc_f"])
def test_vmath_float32_accuracy(isa, fn):
    """relative error <= 2e-7 against float64 over the whole float32 range
    (erfc_f, used only inside the float32 gelu, is held to 1e-6)."""
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**32, size=100_000, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), (rng.standard_normal(50_000) * 4).astype(np.float32),
                        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 88.72, -103.9, -1.0, 1.0],
                                 np.float32)])
    x[np.isnan(x)] = np.nan  # canonical quiet NaNs (random bit patterns include signalling ones)
    if fn in ("erf", "erfc"):
        x = x[np.abs(np.nan_to_num(x)) < 1e3]  # the math.erf reference is slow; beyond, erf = +-1
    out = np.empty_like(x)
    _C.vmath(out, x, fn)  # "_f": the native float32-lane versions used by float32 activations
    ref = _math_ref(fn.removesuffix("_f"), x)
    with np.errstate(all="ignore"):
        ref32 = ref.astype(np.float32)
    normal = np.isfinite(ref) & (np.abs(ref) >= np.finfo(np.float32).tiny) & (np.abs(ref) <= np.finfo(np.float32).max)
    rel = np.abs(out[normal].astype(np.float64) - ref[normal]) / np.abs(ref[normal])
    assert rel.max() <= (1e-6 if fn == "erfc_f" else 2e-7), (fn, x[normal][np.argmax(rel)])
    other = ~normal  # inf, NaN, zeros: exactly the reference; subnormal results: within 1 ulp
    got_bits = out[other].view(np.int32).astype(np.int64)
    want_bits = ref32[other].view(np.int32).astype(np.int64)
    same = (got_bits == want_bits) | (np.isnan(out[other]) & np.isnan(ref32[other]))
    sub = np.isfinite(ref32[other]) & (np.abs(ref32[other]) < np.finfo(np.float32).tiny)
    assert np.all(same | (sub & (np.abs(got_bits - want_bits) <= 1))), fn


@pytest.mark.parametrize("fn", ["exp", "expm1", "log", "log1p", "tanh", "erf", "sigmoid"])
def test_vmath_float64_accuracy(isa, fn):
    rng = np.random.default_rng(12)
    x = np.concatenate([rng.standard_normal(20_000) * 10, rng.uniform(-700, 700, 2000),
                        np.exp(rng.uniform(-700, 700, 2000))])
    out = np.empty_like(x)
    _C.vmath(out, x, fn)
    ref = _math_ref(fn, x)
    ok = np.isfinite(ref) & (np.abs(ref) >= np.finfo(np.float64).tiny)
    rel = np.abs(out[ok] - ref[ok]) / np.abs(ref[ok])
    assert rel.max() <= (2e-14 if fn == "erf" else 1e-15)


def test_threads_do_not_change_results():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 5000)).astype(np.float32)
    n0 = nnkernels.get_num_threads()
    try:
        res = []
        for nt in (1, 2):
            nnkernels.set_num_threads(nt)
            res.append((ops.gelu(x, backend="cpp"), ops.softmax(x, backend="cpp")))
    finally:
        nnkernels.set_num_threads(n0)
    for a, b in zip(res[0], res[1]):
        np.testing.assert_array_equal(a, b)
