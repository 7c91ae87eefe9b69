"""Property-based tests of the activation, softmax, loss and optimizer ops on
every backend and ISA variant (see test_props.py for the GEMM family and the
strategies). The NumPy backend on C-contiguous copies is the oracle: NaN and
infinities must appear exactly where it has them, finite values agree to a
few ulps (vectorised exp/log/erf differ from libm by a few ulps), and an
input the oracle rejects must be rejected with the same exception type by
every backend."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnkernels import ops

from _arrays import (PROP_SETTINGS, STATS, DTYPES, arrays, assert_matches, assert_unchanged, count,
                     dims, run_everywhere, snapshot)

pytestmark = [pytest.mark.filterwarnings("ignore::RuntimeWarning"),
              pytest.mark.skipif(not hasattr(ops, "relu"), reason="activation ops not in this build")]


@pytest.fixture(scope="module", autouse=True)
def _report_stats():
    yield
    if os.environ.get("NNK_PROP_STATS"):
        for op, d in sorted(STATS.items()):
            print(f"\n[props] {op}: " + ", ".join(f"{k}={v}" for k, v in sorted(d.items())))


def _c(x):
    return None if x is None else np.array(x, order="C", copy=True)


def _rtol(dt):
    return 4e-6 if dt == np.float32 else 1e-12


def _atol(dt):
    return 1e-6 if dt == np.float32 else 1e-13


def _outcome(fn):
    try:
        return "ok", fn()
    except (TypeError, ValueError) as exc:
        return type(exc).__name__, str(exc)


def _compare(op, results, ref, bound_fn, desc):
    """results: {label: (status, value)}; ref: (status, value) of the oracle."""
    for label, (status, val) in results.items():
        assert status == ref[0], f"{op}[{label}] {desc}: {status} {val!r} but the reference gave {ref[0]} {ref[1]!r}"
        if status != "ok":
            continue
        got_parts = val if isinstance(val, tuple) else (val,)
        ref_parts = ref[1] if isinstance(ref[1], tuple) else (ref[1],)
        for j, (g, r) in enumerate(zip(got_parts, ref_parts)):
            if r is None:
                assert g is None
                continue
            g, r = np.asarray(g), np.asarray(r)
            assert_matches(g, r, bound_fn(r), f"{op}[{label}] part {j} {desc}")


# ---- elementwise activations -------------------------------------------------------

ACTS = {  # name: (extra kwargs strategy)
    "relu": st.just({}), "sigmoid": st.just({}), "tanh": st.just({}), "silu": st.just({}),
    "leaky_relu": st.builds(dict, negative_slope=st.sampled_from([0.01, 0.2, -0.3, 0.0])),
    "elu": st.builds(dict, alpha=st.sampled_from([1.0, 0.5, 2.0])),
    "gelu": st.builds(dict, approximate=st.sampled_from(["none", "tanh"])),
    "softplus": st.builds(dict, beta=st.sampled_from([1.0, 0.5, 3.0]), threshold=st.sampled_from([20.0, 5.0])),
}


@st.composite
def act_case(draw):
    dt = draw(DTYPES)
    name = draw(st.sampled_from(sorted(ACTS)))
    kw = draw(ACTS[name])
    shape = tuple(draw(st.lists(dims(30), min_size=0, max_size=3)))
    x, dx = draw(arrays(shape, dt))
    g, dg = draw(arrays(shape, dt))
    return dict(name=name, kw=kw, x=x, g=g, desc=f"{name}{kw} x={dx} g={dg} shape={shape}")


@PROP_SETTINGS
@given(case=act_case())
def test_activation_forward_backward(case):
    name, kw, x, g = case["name"], case["kw"], case["x"], case["g"]
    count("activations", "examples")
    count("activations", name)
    fwd, bwd = getattr(ops, name), getattr(ops, name + "_backward")
    dt = x.dtype
    before = snapshot(x, g)
    ref_f = _outcome(lambda: fwd(_c(x), backend="numpy", **kw))
    ref_b = _outcome(lambda: bwd(_c(g), _c(x), backend="numpy", **kw))
    res_f = run_everywhere(lambda be: _outcome(lambda: fwd(x, backend=be, **kw)))
    res_b = run_everywhere(lambda be: _outcome(lambda: bwd(g, x, backend=be, **kw)))
    with np.errstate(all="ignore"):
        gx = np.abs(g.astype(np.float64)) * (1 + np.abs(x.astype(np.float64)))
        ga = np.abs(g.astype(np.float64))
        # x NaN/inf: a passed-through grad; g NaN/inf with a finite result (relu's select): exact
        gx = np.where(np.isfinite(gx), gx, np.where(np.isfinite(ga), ga, 0.0))
    _compare(name, res_f, ref_f, lambda r: _rtol(dt) * np.abs(r) + _atol(dt), case["desc"])
    _compare(name + "_backward", res_b, ref_b,
             lambda r: _rtol(dt) * (np.abs(r) + gx) + _atol(dt), case["desc"])
    assert_unchanged(before, [x, g], ["x", "grad_out"])


# ---- softmax / log_softmax ---------------------------------------------------------

@st.composite
def softmax_case(draw):
    dt = draw(DTYPES)
    shape = tuple(draw(st.lists(dims(8), min_size=0, max_size=2))) + (draw(dims(40)),)
    x, dx = draw(arrays(shape, dt))
    g, dg = draw(arrays(shape, dt))
    return dict(x=x, g=g, log=draw(st.booleans()), desc=f"x={dx} g={dg} shape={shape}")


@PROP_SETTINGS
@given(case=softmax_case())
def test_softmax_forward_backward(case):
    x, g = case["x"], case["g"]
    op = "log_softmax" if case["log"] else "softmax"
    count(op, "examples")
    fwd, bwd = getattr(ops, op), getattr(ops, op + "_backward")
    dt = x.dtype
    n = x.shape[-1]
    before = snapshot(x, g)
    ref_f = _outcome(lambda: fwd(_c(x), backend="numpy"))
    res_f = run_everywhere(lambda be: _outcome(lambda: fwd(x, backend=be)))
    with np.errstate(all="ignore"):
        xmax = np.max(np.abs(np.where(np.isfinite(x), x, 0)), initial=0.0, axis=-1, keepdims=True) \
            if n else 0.0
    # log_softmax = x - max - log(sum): absolute error ~ eps * (|x| + max|x| + log n)
    fb = (lambda r: (n + 4) * _rtol(dt) * (np.abs(r) + xmax + np.abs(x) + 1)) if case["log"] \
        else (lambda r: (n + 4) * _rtol(dt) * np.abs(r) + _atol(dt))
    _compare(op, res_f, ref_f, fb, case["desc"])
    if ref_f[0] == "ok":
        y = ref_f[1]  # backward takes the forward output
        ref_b = _outcome(lambda: bwd(_c(g), _c(y), backend="numpy"))
        res_b = run_everywhere(lambda be: _outcome(lambda: bwd(g, y, backend=be)))
        with np.errstate(all="ignore"):
            scale = np.abs(g.astype(np.float64)).sum(axis=-1, keepdims=True) + np.abs(g)
            if case["log"]:
                scale = scale * np.exp(np.minimum(y, 0.0)) + np.abs(g)
        _compare(op + "_backward", res_b, ref_b,
                 lambda r: (n + 4) * _rtol(dt) * (np.abs(r) + scale) + _atol(dt), case["desc"])
    assert_unchanged(before, [x, g], ["x", "grad_out"])


# ---- losses ------------------------------------------------------------------------

@st.composite
def ce_case(draw):
    dt = draw(DTYPES)
    nb, c = draw(dims(20)), draw(st.integers(1, 30))
    x, dx = draw(arrays((nb, c), dt, kinds=("normal", "wide", "specials", "small_ints")))
    seed = draw(st.integers(0, 2**31))
    t = np.random.default_rng(seed).integers(0, c, nb)
    if nb and draw(st.booleans()):
        t[np.random.default_rng(seed + 1).random(nb) < 0.3] = -100  # ignore_index
    return dict(x=x, t=t, reduction=draw(st.sampled_from(["mean", "sum", "none"])),
                smoothing=draw(st.sampled_from([0.0, 0.1])), desc=f"x={dx} n={nb} c={c}")


@PROP_SETTINGS
@given(case=ce_case())
def test_cross_entropy(case):
    x, t = case["x"], case["t"]
    kw = dict(reduction=case["reduction"], label_smoothing=case["smoothing"])
    count("cross_entropy", "examples")
    count("cross_entropy", case["reduction"])
    dt = x.dtype
    before = snapshot(x, t)
    ref = _outcome(lambda: ops.cross_entropy(_c(x), t.copy(), backend="numpy", **kw))
    res = run_everywhere(lambda be: _outcome(lambda: ops.cross_entropy(x, t, backend=be, **kw)))
    with np.errstate(all="ignore"):
        mag = 1.0 + (np.abs(np.where(np.isfinite(x), x, 0)).max() if x.size else 0.0)
    nb, c = x.shape
    _compare("cross_entropy", res, ref,
             lambda r: (nb + c + 8) * _rtol(dt) * (np.abs(r) + mag * max(nb, 1)) + _atol(dt), case["desc"])
    assert_unchanged(before, [x, t], ["logits", "target"])


@st.composite
def pointwise_case(draw):
    dt = draw(DTYPES)
    shape = tuple(draw(st.lists(dims(20), min_size=1, max_size=2)))
    x, dx = draw(arrays(shape, dt))
    y, dy = draw(arrays(shape, dt))
    return dict(x=x, y=y, op=draw(st.sampled_from(["mse_loss", "l1_loss", "huber_loss"])),
                reduction=draw(st.sampled_from(["mean", "sum", "none"])), desc=f"x={dx} y={dy} shape={shape}")


@PROP_SETTINGS
@given(case=pointwise_case())
def test_pointwise_losses(case):
    x, y, op = case["x"], case["y"], case["op"]
    count("pointwise_losses", "examples")
    count("pointwise_losses", op)
    dt = x.dtype
    fn = getattr(ops, op)
    before = snapshot(x, y)
    ref = _outcome(lambda: fn(_c(x), _c(y), reduction=case["reduction"], backend="numpy"))
    res = run_everywhere(lambda be: _outcome(lambda: fn(x, y, reduction=case["reduction"], backend=be)))
    with np.errstate(all="ignore"):
        d = np.abs(x.astype(np.float64) - y.astype(np.float64))
        tot = float(np.sum(np.where(np.isfinite(d), d * (1 + d), 0.0)))
    _compare(op, res, ref, lambda r: (x.size + 8) * _rtol(dt) * (np.abs(r) + tot + 1.0) + _atol(dt),
             case["desc"])
    assert_unchanged(before, [x, y], ["input", "target"])


# ---- optimizer updates (in place) --------------------------------------------------

@st.composite
def optim_case(draw):
    dt = draw(DTYPES)
    n = draw(st.one_of(st.sampled_from([0, 1, 7, 16, 17]), st.integers(0, 3000)))
    seed = draw(st.integers(0, 2**31))
    kind = draw(st.sampled_from(["normal", "normal", "specials", "wide", "subnormals"]))
    from _arrays import fill_values
    rng = np.random.default_rng(seed)
    return dict(dt=dt, p=fill_values(rng, (n,), dt, "normal"), g=fill_values(rng, (n,), dt, kind),
                opt=draw(st.sampled_from(["sgd", "sgd_momentum", "adam", "adamw_amsgrad", "rmsprop_centered", "adagrad"])),
                lr=draw(st.sampled_from([1e-3, 0.1, 0.0])), wd=draw(st.sampled_from([0.0, 0.01])),
                maximize=draw(st.booleans()), steps=draw(st.integers(1, 3)), desc=f"n={n} g={kind}")


def _run_optim(case, backend):
    dt, p = case["dt"], case["p"].copy()
    z = lambda: np.zeros_like(p)  # noqa: E731
    opt, lr, wd, mx = case["opt"], case["lr"], case["wd"], case["maximize"]
    state = {"sgd": {}, "sgd_momentum": {"momentum_buf": z()}, "adam": {"m": z(), "v": z()},
             "adamw_amsgrad": {"m": z(), "v": z(), "vmax": z()}, "rmsprop_centered": {"sq": z(), "buf": z(), "ga": z()},
             "adagrad": {"s": z()}}[opt]
    g = case["g"]
    for step in range(1, case["steps"] + 1):
        if opt == "sgd":
            ops.sgd_step(p, g, lr=lr, weight_decay=wd, maximize=mx, backend=backend)
        elif opt == "sgd_momentum":
            ops.sgd_step(p, g, state["momentum_buf"], lr=lr, momentum=0.9, nesterov=True, weight_decay=wd,
                         maximize=mx, first_step=step == 1, backend=backend)
        elif opt == "adam":
            ops.adam_step(p, g, state["m"], state["v"], step=step, lr=lr, weight_decay=wd, maximize=mx,
                          backend=backend)
        elif opt == "adamw_amsgrad":
            ops.adam_step(p, g, state["m"], state["v"], step=step, lr=lr, weight_decay=wd, amsgrad=True,
                          max_exp_avg_sq=state["vmax"], decoupled=True, maximize=mx, backend=backend)
        elif opt == "rmsprop_centered":
            ops.rmsprop_step(p, g, state["sq"], lr=lr, weight_decay=wd, momentum=0.5, centered=True,
                             momentum_buf=state["buf"], grad_avg=state["ga"], maximize=mx, backend=backend)
        else:
            ops.adagrad_step(p, g, state["s"], step=step, lr=lr, weight_decay=wd, maximize=mx, backend=backend)
    return (p,) + tuple(state.values())


@PROP_SETTINGS
@given(case=optim_case())
def test_optimizer_steps_update_in_place(case):
    count("optim", "examples")
    count("optim", case["opt"])
    g = case["g"]
    g.flags.writeable = False  # the gradient is only read
    dt = case["dt"]
    ref = _outcome(lambda: _run_optim(case, "numpy"))
    res = run_everywhere(lambda be: _outcome(lambda: _run_optim(case, be)))
    _compare(case["opt"], res, ref, lambda r: 64 * _rtol(dt) * (np.abs(r) + 1e-3) + _atol(dt), case["desc"])


def test_relu_backward_selects_like_torch():
    """Found by hypothesis (random run): where x <= 0, relu's gradient is 0 even
    for a NaN or inf grad_out (PyTorch's threshold_backward is a select). The
    NumPy and Numba backends multiplied, giving NaN; the C++ one selected."""
    x = np.array([-1.0, 0.0, 1.0, -2.0], np.float32)
    g = np.array([np.nan, np.inf, np.nan, -np.inf], np.float32)
    for label, got in run_everywhere(lambda be: ops.relu_backward(g, x, backend=be)).items():
        np.testing.assert_array_equal(got, np.array([0.0, 0.0, np.nan, 0.0], np.float32), err_msg=label)
