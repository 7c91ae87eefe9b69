"""Property-based tests of every op on every backend and ISA variant.

Each example draws shapes (including 0 and 1), a dtype, a memory layout per
argument (C, Fortran, negative strides, step slices, transposed views),
read-only inputs, and values with NaN, +-inf, signed zeros and subnormals.
The op runs on every backend (the C++ one under every ISA variant this CPU
supports) and must match the NumPy backend run on C-contiguous copies:
NaN/inf exactly where the reference has them, finite values within a
rounding-error bound (see _arrays.gemm_bound). Inputs must come back
unchanged; caller-provided `out` arrays are written in place, and the gaps of
a strided `out` are left alone.

NNK_HYPOTHESIS_EXAMPLES=500 gives a heavier run; NNK_PROP_STATS=1 prints
how many examples each op tried, by value kind and layout.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnkernels import ops
from nnkernels.backends.interface.gemm import EPILOGUES

from _arrays import (PROP_SETTINGS, STATS, DTYPES, arrays, assert_matches, assert_unchanged,
                     count, dims, gemm_bound, run_everywhere, snapshot)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN/inf inputs are the point


@pytest.fixture(scope="module", autouse=True)
def _report_stats():
    yield
    if os.environ.get("NNK_PROP_STATS"):
        for op, d in sorted(STATS.items()):
            print(f"\n[props] {op}: " + ", ".join(f"{k}={v}" for k, v in sorted(d.items())))


def _c(x):
    """A writeable C-contiguous copy (the reference's inputs)."""
    return None if x is None else np.array(x, order="C", copy=True)


def _abs(x):
    return np.abs(x.astype(np.float64))


# ---------------------------------------------------------------- matmul ----

@st.composite
def matmul_case(draw):
    dt = draw(DTYPES)
    m, k, n = draw(dims()), draw(dims()), draw(dims())
    trans_a, trans_b = draw(st.booleans()), draw(st.booleans())
    a, da = draw(arrays((k, m) if trans_a else (m, k), dt))
    b, db = draw(arrays((n, k) if trans_b else (k, n), dt))
    alpha = draw(st.sampled_from([1.0, 1.0, 0.5, -2.0, 0.0]))
    beta = draw(st.sampled_from([0.0, 0.0, 1.0, -0.5]))
    out0 = None
    if beta != 0.0 or draw(st.booleans()):
        out0, _ = draw(arrays((m, n), dt, allow_readonly=False))
    return dict(a=a, b=b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta,
                out0=out0, desc=f"a={da} b={db}")


@PROP_SETTINGS
@given(case=matmul_case())
def test_matmul_matches_reference(case):
    a, b, out0 = case["a"], case["b"], case["out0"]
    kw = dict(trans_a=case["trans_a"], trans_b=case["trans_b"], alpha=case["alpha"], beta=case["beta"])
    count("matmul", "examples")
    count("matmul", a.dtype.name)
    for part in case["desc"].split():
        count("matmul", part.split("=")[1].split("/")[0])
    ref = ops.matmul(_c(a), _c(b), out=_c(out0), backend="numpy", **kw)
    opa = a.T if kw["trans_a"] else a
    opb = b.T if kw["trans_b"] else b
    k = opa.shape[1]
    with np.errstate(all="ignore"):
        bound = 0.0 if kw["alpha"] == 0.0 else abs(kw["alpha"]) * gemm_bound(_abs(opa) @ _abs(opb), k, a.dtype)
        if out0 is not None and kw["beta"] != 0.0:
            bound = bound + 4 * float(np.finfo(a.dtype).eps) * abs(kw["beta"]) * _abs(out0)
    before = snapshot(a, b)

    def call(backend):
        if out0 is None:
            return ops.matmul(a, b, backend=backend, **kw), None
        out = _same_layout_copy(out0)
        res = ops.matmul(a, b, out=out, backend=backend, **kw)
        assert res is out, "matmul must return the out array it was given"
        return res, out

    for label, (got, out) in run_everywhere(call).items():
        assert_matches(got, ref, bound, f"matmul[{label}] {case['desc']}")
    assert_unchanged(before, [a, b], ["a", "b"])


def _same_layout_copy(x):
    """A fresh array with x's values and x's kind of strides (for out=)."""
    if x.flags.c_contiguous:
        return x.copy()
    if x.flags.f_contiguous:
        return np.array(x, order="F", copy=True)
    if x.base is not None and any(s < 0 for s in x.strides):
        sl = tuple(slice(None, None, -1) if s < 0 else slice(None) for s in x.strides)
        return np.array(x[sl], order="C", copy=True)[sl]
    big = np.full([2 * max(1, n) for n in x.shape], np.nan, x.dtype)
    v = big[tuple(slice(0, 2 * n, 2) for n in x.shape)]
    v[...] = x
    return v


@PROP_SETTINGS
@given(dt=DTYPES, m=dims(12), n=dims(12), k=dims(12), gap=st.integers(1, 3))
def test_matmul_strided_out_leaves_gaps_alone(dt, m, n, k, gap):
    count("matmul_out", "examples")
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((m, k)).astype(dt)
    b = rng.standard_normal((k, n)).astype(dt)
    ref = ops.matmul(a, b, backend="numpy")

    def call(backend):
        big = np.full((m * gap + 1, n * gap + 1), -7.0, dt)
        out = big[:m * gap:gap, :n * gap:gap]
        ops.matmul(a, b, out=out, backend=backend)
        mask = np.ones(big.shape, bool)
        mask[:m * gap:gap, :n * gap:gap] = False
        assert np.all(big[mask] == -7.0), "wrote outside the out view"
        return out.copy()

    bound = gemm_bound(_abs(a) @ _abs(b), k, dt)
    for label, got in run_everywhere(call).items():
        assert_matches(got, ref, bound, f"matmul out[{label}]")


# ---------------------------------------------------------------- linear ----

@st.composite
def linear_case(draw):
    dt = draw(DTYPES)
    lead = tuple(draw(st.lists(dims(6), min_size=0, max_size=2)))
    i, o = draw(dims(24)), draw(dims(24))
    x, dx = draw(arrays(lead + (i,), dt))
    w, dw = draw(arrays((o, i), dt))
    bias, db = (None, "-") if draw(st.booleans()) else draw(arrays((o,), dt))
    act = draw(st.sampled_from((None,) + tuple(EPILOGUES)))
    slope = draw(st.sampled_from([0.01, 0.2, -0.5]))
    return dict(x=x, w=w, bias=bias, act=act, slope=slope, desc=f"x={dx} w={dw} bias={db} act={act}")


@PROP_SETTINGS
@given(case=linear_case())
def test_linear_matches_reference(case):
    x, w, bias = case["x"], case["w"], case["bias"]
    kw = dict(activation=case["act"], negative_slope=case["slope"])
    count("linear", "examples")
    count("linear", f"act={case['act']}")
    count("linear", f"x_ndim={x.ndim}")
    ref = ops.linear(_c(x), _c(w), _c(bias), backend="numpy", **kw)
    i = w.shape[1]
    with np.errstate(all="ignore"):
        pre = gemm_bound(_abs(x.reshape(int(np.prod(x.shape[:-1])), i)) @ _abs(w).T, i + 1, x.dtype)
        if bias is not None:
            pre = pre + 4 * float(np.finfo(x.dtype).eps) * _abs(bias)
        # activations are at most 1.13-Lipschitz (|slope| <= 1), plus their own rounding
        bound = (1.2 * pre).reshape(ref.shape) + 8 * float(np.finfo(x.dtype).eps) * _abs(ref) \
            + 4 * float(np.finfo(x.dtype).smallest_subnormal)
    before = snapshot(x, w, bias)
    results = run_everywhere(lambda be: ops.linear(x, w, bias, backend=be, **kw))
    for label, got in results.items():
        assert_matches(got, ref, bound, f"linear[{label}] {case['desc']}")
    assert_unchanged(before, [x, w, bias], ["x", "weight", "bias"])


@st.composite
def linear_backward_case(draw):
    dt = draw(DTYPES)
    nb, i, o = draw(dims(24)), draw(dims(24)), draw(dims(24))
    x, dx = draw(arrays((nb, i), dt))
    w, dw = draw(arrays((o, i), dt))
    g, dg = draw(arrays((nb, o), dt))
    return dict(x=x, w=w, g=g, need=draw(st.booleans()), desc=f"x={dx} w={dw} g={dg}")


@PROP_SETTINGS
@given(case=linear_backward_case())
def test_linear_backward_matches_reference(case):
    x, w, g = case["x"], case["w"], case["g"]
    count("linear_backward", "examples")
    ref = ops.linear_backward(_c(x), _c(w), _c(g), need_input_grad=case["need"], backend="numpy")
    nb, o = g.shape
    with np.errstate(all="ignore"):
        bounds = (gemm_bound(_abs(g) @ _abs(w), o, x.dtype),
                  gemm_bound(_abs(g).T @ _abs(x), nb, x.dtype),
                  gemm_bound(_abs(g).sum(axis=0), nb, x.dtype))
    before = snapshot(x, w, g)
    results = run_everywhere(lambda be: ops.linear_backward(x, w, g, need_input_grad=case["need"],
                                                            backend=be))
    for label, got in results.items():
        for name, gv, rv, bd in zip(("grad_x", "grad_weight", "grad_bias"), got, ref, bounds):
            if rv is None:
                assert gv is None, f"{name} should be None without need_input_grad"
                continue
            assert_matches(gv, rv, bd, f"linear_backward {name}[{label}] {case['desc']}")
    assert_unchanged(before, [x, w, g], ["x", "weight", "grad_out"])


# -------------------------------------------------- mismatched shapes ----

@PROP_SETTINGS
@given(dt=DTYPES, m=dims(8), k1=dims(8), k2=dims(8), n=dims(8))
def test_matmul_mismatched_inner_dims_raise(dt, m, k1, k2, n):
    count("matmul_bad_shape", "examples")
    a = np.zeros((m, k1), dt)
    b = np.zeros((k2, n), dt)
    for label, res in run_everywhere(lambda be: _outcome(ops.matmul, a, b, backend=be)).items():
        if k1 == k2:
            assert res == "ok", f"[{label}] {res}"
        else:
            assert res.startswith("ValueError") and "not aligned" in res, f"[{label}] {res}"


def _outcome(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except (TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def test_empty_batch_with_zero_strides():
    """Found by hypothesis: NumPy gives some empty arrays strides (0, 0); the
    bias-gradient binding rejected them as "not unit stride"."""
    x = np.zeros((0, 0), np.float32)
    w = np.zeros((2, 0), np.float32)
    g = np.zeros((0, 2), np.float32)
    for label, (gx, gw, gb) in run_everywhere(
            lambda be: ops.linear_backward(x, w, g, need_input_grad=False, backend=be)).items():
        assert gx is None and gw.shape == (2, 0) and np.array_equal(gb, np.zeros(2, np.float32)), label
