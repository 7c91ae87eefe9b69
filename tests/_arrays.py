"""Hypothesis strategies for adversarial kernel inputs, and a comparison with
an error bound (shared by the property tests).

An array is drawn as: a logical shape, a dtype, a memory layout (C order,
Fortran order, a reversed axis = negative stride, a step slice of a larger
buffer, or a transposed view), a read-only flag, and values that may include
NaN, +-inf, signed zeros and subnormals. Values come from a NumPy Generator
seeded by Hypothesis, so every failure replays from its seed.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from conftest import BACKEND_ISA, isa_forced

#: examples per property test (NNK_HYPOTHESIS_EXAMPLES raises it for a heavy run)
MAX_EXAMPLES = int(os.environ.get("NNK_HYPOTHESIS_EXAMPLES", "50"))

PROP_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # the first call of a Numba kernel compiles it
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("NNK_HYPOTHESIS_RANDOM") is None,  # reproducible CI by default
    print_blob=True,
)

DTYPES = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])
LAYOUTS = ("C", "F", "reversed", "step", "transposed")
VALUE_KINDS = ("normal", "normal", "small_ints", "specials", "subnormals", "wide")

# Counters of what was actually tried, printed by tests/test_props.py's
# report fixture when NNK_PROP_STATS=1.
STATS: dict[str, dict[str, int]] = {}


def count(op: str, key: str) -> None:
    d = STATS.setdefault(op, {})
    d[key] = d.get(key, 0) + 1


def dims(max_side: int = 40):
    """A dimension: often 0 or 1, otherwise up to max_side."""
    return st.one_of(st.sampled_from([0, 1, 1, 2, 3]), st.integers(0, max_side))


def fill_values(rng: np.random.Generator, shape, dtype, kind: str) -> np.ndarray:
    dtype = np.dtype(dtype)
    if kind == "small_ints":  # exact in any summation order
        return np.array(rng.integers(-3, 4, size=shape), dtype=dtype)
    x = np.array(rng.standard_normal(shape), dtype=dtype)  # an array even for shape ()
    if kind == "wide":  # magnitudes 1e-6 .. 1e6 (no overflow in a length-40 sum)
        x = np.array(x * 10.0 ** rng.integers(-6, 7, size=shape), dtype=dtype)
    elif kind == "subnormals":
        tiny = np.finfo(dtype).smallest_subnormal
        mask = rng.random(shape) < 0.3
        x[mask] = (rng.integers(-50, 51, size=int(mask.sum())) * tiny).astype(dtype)
    elif kind == "specials":
        specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, np.finfo(dtype).smallest_subnormal],
                            dtype=dtype)
        mask = rng.random(shape) < 0.1
        x[mask] = rng.choice(specials, size=int(mask.sum()))
    return x


def lay_out(rng: np.random.Generator, x: np.ndarray, layout: str) -> np.ndarray:
    """The values of x in the given memory layout (equal values, other strides)."""
    if x.ndim == 0:  # a 0-d array has no strides to vary
        return np.array(x, copy=True)
    if layout == "C":
        return np.array(x, order="C", copy=True)
    if layout == "F":
        return np.array(x, order="F", copy=True)
    if layout == "reversed":  # negative stride on one axis (or all)
        if x.ndim == 0:
            return x.copy()
        axis = int(rng.integers(0, x.ndim + 1))
        sl = [slice(None)] * x.ndim
        for ax in (range(x.ndim) if axis == x.ndim else [axis]):
            sl[ax] = slice(None, None, -1)
        return np.array(x[tuple(sl)], order="C", copy=True)[tuple(sl)]
    if layout == "step":  # every s-th element of a larger buffer, with a NaN between
        steps = [int(s) for s in rng.integers(1, 4, size=x.ndim)]
        buf = np.full([max(1, n) * s for n, s in zip(x.shape, steps)], np.nan, dtype=x.dtype)
        view = buf[tuple(slice(0, n * s, s) for n, s in zip(x.shape, steps))]
        view[...] = x
        return view
    if layout == "transposed":  # a C-order array of the reversed shape, seen transposed
        return np.array(x.T, order="C", copy=True).T
    raise AssertionError(layout)


@st.composite
def arrays(draw, shape, dtype, *, allow_readonly: bool = True, kinds=VALUE_KINDS,
           layouts=LAYOUTS):
    """(array, description): random values and memory layout for a logical shape."""
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(kinds))
    layout = draw(st.sampled_from(layouts))
    readonly = allow_readonly and draw(st.booleans())
    rng = np.random.default_rng(seed)
    x = lay_out(rng, fill_values(rng, shape, dtype, kind), layout)
    if readonly:
        x.flags.writeable = False
    return x, f"{kind}/{layout}{'/ro' if readonly else ''}"


def backends():
    """(label, backend name, isa) for every backend, and every ISA of the C++ one."""
    return [(b if i is None else f"{b}-{i}", b, i) for b, i in BACKEND_ISA]


def run_everywhere(fn):
    """{label: fn(backend_name)} on every backend / ISA variant."""
    out = {}
    for label, name, isa in backends():
        with isa_forced(isa):
            out[label] = fn(name)
    return out


def gemm_bound(a_abs_at_b_abs: np.ndarray, k: int, dtype) -> np.ndarray:
    """Forward error bound of a length-k dot product computed in `dtype` in any
    order (with or without FMA), with both results compared to each other:
    2 * gamma_k * (|a| @ |b|) plus subnormal slack. A wrong kernel (a lost or
    doubled term) is off by a whole |a_i b_j| term, far outside this bound
    except for terms below it, which no test can see anyway."""
    fi = np.finfo(dtype)
    gamma = (k + 2) * float(fi.eps)
    return 2.0 * gamma * a_abs_at_b_abs + (k + 2) * 4 * float(fi.smallest_subnormal)


def assert_matches(got: np.ndarray, ref: np.ndarray, bound, what: str) -> None:
    """got equals ref: same shape and dtype, NaN exactly where ref has NaN,
    the same infinities, and finite values within `bound` (array or scalar)."""
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert got.dtype == ref.dtype, f"{what}: dtype {got.dtype} != {ref.dtype}"
    gn, rn = np.isnan(got), np.isnan(ref)
    assert np.array_equal(gn, rn), (
        f"{what}: NaN at {np.argwhere(gn != rn)[:5].tolist()} differs (got {got[gn != rn][:5]}, "
        f"ref {ref[gn != rn][:5]})")
    ginf, rinf = np.isinf(got), np.isinf(ref)
    assert np.array_equal(ginf, rinf) and np.array_equal(got[ginf], ref[rinf]), (
        f"{what}: infinities differ at {np.argwhere((ginf != rinf) | (ginf & (got != ref)))[:5].tolist()}")
    fin = np.isfinite(ref)
    with np.errstate(all="ignore"):
        err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        b = np.broadcast_to(np.asarray(bound, dtype=np.float64), ref.shape)
        bad = fin & ~(err <= b)
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} values outside the error bound, e.g. at "
        f"{np.argwhere(bad)[0].tolist()}: got {got[bad][0]!r}, ref {ref[bad][0]!r}, "
        f"bound {b[bad][0]:.3g}")


def snapshot(*arrays_):
    """Copies of inputs, to check afterwards that no kernel wrote to them."""
    return [None if a is None else np.array(a, copy=True) for a in arrays_]


def assert_unchanged(before, after, names) -> None:
    for b, a, n in zip(before, after, names):
        if a is None:
            continue
        assert np.array_equal(a, b, equal_nan=True), f"input {n} was modified"
