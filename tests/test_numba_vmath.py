"""The Numba backend's vectorisable elementary functions (backends/numba_backend/_vmath.py)
against float64 NumPy / math: accuracy over the whole float32 range, special values
(inf, NaN, zeros, subnormal results), and the integer-key row max / row sum."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnkernels.backends.numba_backend import _vmath

REF = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
       "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)), "softplus": lambda v: np.logaddexp(0.0, v),
       "erfc": np.vectorize(math.erfc, otypes=[np.float64]),
       "normal_cdf": np.vectorize(lambda v: 0.5 * math.erfc(-v / math.sqrt(2.0)), otypes=[np.float64])}


def _ref(name, x):
    with np.errstate(all="ignore"):
        return REF[name](x.astype(np.float64))


def _check_specials(out, ref, dtype, rtol):
    """inf, NaN, zeros: exactly the reference; subnormal results: within 1 ulp
    or ``rtol`` (relative to the exact value)."""
    with np.errstate(all="ignore"):
        want = ref.astype(dtype)
    ib = np.int32 if dtype == np.float32 else np.int64
    got_bits = out.view(ib).astype(np.int64)
    want_bits = want.view(ib).astype(np.int64)
    same = (got_bits == want_bits) | (np.isnan(out) & np.isnan(want))
    sub = np.isfinite(want) & (np.abs(want) < np.finfo(dtype).tiny)
    with np.errstate(invalid="ignore"):  # inf - inf
        close = np.abs(out.astype(np.float64) - ref) <= rtol * np.abs(ref)
    ok = same | (sub & ((np.abs(got_bits - want_bits) <= 1) | close))
    assert np.all(ok), (out[~ok][:5], want[~ok][:5])


@pytest.mark.parametrize("name", ["exp", "expm1", "tanh", "sigmoid", "softplus", "erfc", "normal_cdf"])
def test_float32_accuracy(name):
    """relative error <= 2e-7 against float64 over random float32 bit patterns and
    normal samples (softplus_f 2.1e-7; erfc_f and normal_cdf_f, used only by the
    float32 gelu, 1e-6: the bounds of the C++ float32 lanes whose coefficients
    these are)."""
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**32, size=100_000, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), (rng.standard_normal(50_000) * 4).astype(np.float32),
                        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 88.72, -103.9, -1.0, 1.0,
                                  0.625, -0.625, 4.0, -4.0, 10.05, -10.05, 1e4, -1e4], np.float32)])
    x[np.isnan(x)] = np.nan  # canonical quiet NaNs
    if name in ("erfc", "normal_cdf"):
        x = x[np.abs(np.nan_to_num(x)) < 1e3]  # math.erfc is slow; beyond, erfc is 0 or 2
    out = np.empty_like(x)
    _vmath.apply(out, x, name)
    ref = _ref(name, x)
    normal = np.isfinite(ref) & (np.abs(ref) >= np.finfo(np.float32).tiny) & (np.abs(ref) <= np.finfo(np.float32).max)
    rel = np.abs(out[normal].astype(np.float64) - ref[normal]) / np.abs(ref[normal])
    bound = {"erfc": 1e-6, "normal_cdf": 1e-6, "softplus": 2.1e-7}.get(name, 2e-7)
    assert rel.max() <= bound, (name, x[normal][np.argmax(rel)])
    _check_specials(out[~normal], ref[~normal], np.float32, bound)


@pytest.mark.parametrize("name", ["exp", "expm1", "log", "log1p", "tanh", "sigmoid", "softplus", "erfc"])
def test_float64_accuracy(name):
    rng = np.random.default_rng(12)
    x = np.concatenate([rng.standard_normal(20_000) * 10, rng.uniform(-700, 700, 2000),
                        np.exp(rng.uniform(-700, 700, 2000)), rng.uniform(-1, 1, 2000) * 1e-10,
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1.0, -1.0, 0.5, 2.0, -2.0, 6.0,
                         27.5, 1e300, -1e300]])
    if name in ("log", "log1p"):
        x = np.concatenate([x, np.abs(x)])
    out = np.empty_like(x)
    _vmath.apply(out, x, name)
    ref = _ref(name, x)
    normal = np.isfinite(ref) & (np.abs(ref) >= np.finfo(np.float64).tiny)
    rel = np.abs(out[normal] - ref[normal]) / np.abs(ref[normal])
    # erfc: 1 - x P(x^2) below |x| = 2 loses ~8 bits where erfc is small (as the C++ float64 lanes)
    bound = 5e-12 if name == "erfc" else 2e-15
    assert rel.max() <= bound, (name, x[normal][np.argmax(rel)])
    _check_specials(out[~normal], ref[~normal], np.float64, bound)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max_and_sum(dtype):
    row_max = _vmath.row_max_f if dtype == np.float32 else _vmath.row_max_d
    cases = [[1.0, -2.0], [-3.0, -1.0, -2.0], [-0.0, 0.0], [-np.inf], [np.inf, 1.0], [-1e30, -1e31],
             [1e4, -1e4, 0.0], [1.0, np.nan, 5.0], [-np.nan, 1.0], []]
    for case in cases:
        a = np.array(case, dtype)
        got = row_max(a)
        want = np.nan if np.isnan(a).any() else (a.max() if a.size else -np.inf)
        assert got == want or (np.isnan(got) and np.isnan(want)), (case, got)
    rng = np.random.default_rng(0)
    for n in (1, 7, 8, 9, 1000, 32003):
        a = (rng.standard_normal(n) * 100).astype(dtype)
        assert row_max(a) == a.max()
        np.testing.assert_allclose(_vmath.row_sum(a), np.sum(a, dtype=np.float64), rtol=1e-12, atol=1e-9)
