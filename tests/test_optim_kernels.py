"""Fused optimizer kernels: every backend (and ISA) against the NumPy reference
and against torch.optim on flat tensors; argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from nnkernels import ops

torch = pytest.importorskip("torch")

N = 1000  # not a multiple of any vector width: exercises the loop tails

SGD_CFGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=1e-3, maximize=True),
]
ADAM_CFGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, weight_decay=1e-2, amsgrad=True),
    dict(lr=1e-2, weight_decay=1e-2, decoupled=True),
    dict(lr=1e-2, betas=(0.3, 0.9), weight_decay=1e-1, decoupled=True, amsgrad=True, maximize=True),
]
RMS_CFGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, centered=True, momentum=0.9, weight_decay=1e-2),
    dict(lr=1e-2, alpha=0.3, momentum=0.5, maximize=True),
    dict(lr=1e-2, centered=True),
]
ADAGRAD_CFGS = [dict(lr=0.1), dict(lr=0.1, lr_decay=0.05, weight_decay=1e-2, maximize=True)]


def _arrays(rng, dtype, k):
    return [rng.standard_normal(N).astype(dtype) for _ in range(k)]


def _run_ours(kind, cfg, dtype, steps, backend, seed=0):
    """Run `steps` updates with our op; returns (param, state dict)."""
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(N).astype(dtype)
    grads = [rng.standard_normal(N).astype(dtype) for _ in range(steps)]
    z = lambda: np.zeros(N, dtype)  # noqa: E731
    st = {}
    for s, g in enumerate(grads, 1):
        if kind == "sgd":
            c = dict(cfg)
            if c.get("momentum", 0):
                st.setdefault("buf", z())
            ops.sgd_step(p, g, st.get("buf"), first_step=(s == 1), backend=backend, **c)
        elif kind == "adam":
            c = dict(cfg)
            b1, b2 = c.pop("betas", (0.9, 0.999))
            st.setdefault("m", z()), st.setdefault("v", z()), st.setdefault("vmax", z())
            ops.adam_step(p, g, st["m"], st["v"], step=s, beta1=b1, beta2=b2,
                          max_exp_avg_sq=st["vmax"] if c.get("amsgrad") else None, backend=backend, **c)
        elif kind == "rmsprop":
            st.setdefault("sq", z()), st.setdefault("buf", z()), st.setdefault("ga", z())
            ops.rmsprop_step(p, g, st["sq"], momentum_buf=st["buf"], grad_avg=st["ga"], backend=backend,
                             **cfg)
        else:
            st.setdefault("sum", z())
            ops.adagrad_step(p, g, st["sum"], step=s, backend=backend, **cfg)
    return p, grads


def _run_torch(kind, cfg, dtype, grads, seed=0):
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(N).astype(dtype)
    t = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    c = dict(cfg)
    if kind == "sgd":
        opt = torch.optim.SGD([t], **c)
    elif kind == "adam":
        dec = c.pop("decoupled", False)
        opt = (torch.optim.AdamW if dec else torch.optim.Adam)([t], **{"weight_decay": 0.0, **c})
    elif kind == "rmsprop":
        opt = torch.optim.RMSprop([t], **c)
    else:
        opt = torch.optim.Adagrad([t], **c)
    for g in grads:
        t.grad = torch.from_numpy(g.copy())
        opt.step()
    return t.detach().numpy()


CASES = ([("sgd", c) for c in SGD_CFGS] + [("adam", c) for c in ADAM_CFGS]
         + [("rmsprop", c) for c in RMS_CFGS] + [("adagrad", c) for c in ADAGRAD_CFGS])


@pytest.mark.parametrize("kind,cfg", CASES, ids=[f"{k}{i}" for i, (k, _) in enumerate(CASES)])
def test_kernel_matches_reference_and_torch(backend, dtype, kind, cfg):
    steps = 5
    p, grads = _run_ours(kind, cfg, dtype, steps, backend)
    ref, _ = _run_ours(kind, cfg, dtype, steps, "numpy")
    # Same formulas in the same dtype: only FMA contraction/rounding differ.
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p, ref, rtol=rtol, atol=rtol)
    want = _run_torch(kind, cfg, dtype, grads)
    np.testing.assert_allclose(p, want, rtol=rtol, atol=rtol)


def test_large_vector_threads_agree(backend):
    # Above the parallel threshold: chunked threads give the reference result.
    n = 300_000
    rng = np.random.default_rng(3)
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    ops.adam_step(p, g, m, v, step=1, lr=0.01, backend=backend)
    ops.adam_step(p2, g, m2, v2, step=1, lr=0.01, backend="numpy")
    np.testing.assert_allclose(p, p2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(v, v2, rtol=1e-6, atol=1e-12)


def test_nan_propagates(backend):
    p = np.ones(20)
    g = np.ones(20)
    g[3] = np.nan
    m, v, vmax = np.zeros(20), np.zeros(20), np.zeros(20)
    ops.adam_step(p, g, m, v, step=1, amsgrad=True, max_exp_avg_sq=vmax, backend=backend)
    assert np.isnan(p[3]) and np.isnan(vmax[3]) and np.isfinite(np.delete(p, 3)).all()


@pytest.mark.parametrize("backend_name", ["cpp", "numba", "numpy"])
def test_state_is_checked_never_converted(backend_name):
    p = np.zeros(8, np.float32)
    g = np.zeros(8, np.float32)
    with pytest.raises(TypeError, match="exp_avg"):
        ops.adam_step(p, g, np.zeros(8), np.zeros(8, np.float32), step=1, backend=backend_name)
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.adam_step(p, g, np.zeros(16, np.float32)[::2], np.zeros(8, np.float32), step=1,
                      backend=backend_name)
    ro = np.zeros(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="exp_avg_sq.*read-only"):
        ops.adam_step(p, g, np.zeros(8, np.float32), ro, step=1, backend=backend_name)
    with pytest.raises(ValueError, match="overlap"):
        ops.sgd_step(p, g, p, lr=0.1, momentum=0.9, backend=backend_name)
    with pytest.raises(ValueError, match="momentum_buf"):
        ops.sgd_step(p, g, None, lr=0.1, momentum=0.9, backend=backend_name)
    with pytest.raises(ValueError, match="shape"):
        ops.adagrad_step(p, g, np.zeros(7, np.float32), step=1, backend=backend_name)
    with pytest.raises(ValueError, match="step"):
        ops.adagrad_step(p, g, np.zeros(8, np.float32), step=0, backend=backend_name)


def test_native_binding_checks_directly():
    # The C++ binding re-checks what it writes (it is reachable without the ops layer).
    from nnkernels import _C
    p = np.zeros(8, np.float32)
    with pytest.raises(TypeError, match="exp_avg"):
        _C.adam_step(p, np.zeros(8), np.zeros(8, np.float32), None, np.zeros(8, np.float32), 1, 1e-3,
                     0.9, 0.999, 1e-8, 0.0, False, False, False)
    ro = np.zeros(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="param.*read-only"):
        _C.sgd_step(ro, None, np.zeros(8, np.float32), 0.1, 0.0, 0.0, 0.0, False, False, False)
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.adagrad_step(p, np.zeros(16, np.float32)[::2], np.zeros(8, np.float32), 1, 0.1, 0.0, 0.0,
                        1e-10, False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpp_updates_flush_denormal_state_and_restore_the_fp_mode(dtype):
    # Decayed optimizer state in the denormal range is read as zero (FTZ/DAZ inside
    # the update, see nnk/fpenv.h: a microcode assist per element otherwise); the
    # caller's floating-point mode is unchanged afterwards.
    import platform
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("FTZ/DAZ are set on x86-64 only")
    from nnkernels import _C
    tiny = np.finfo(dtype).smallest_subnormal * 1000
    n = 100_000  # above the threads threshold too
    p = np.ones(n, dtype)
    g = np.zeros(n, dtype)
    g[:10] = 1.0
    m, v = np.full(n, tiny, dtype), np.full(n, 1e-6, dtype)
    _C.adam_step(p, m, v, None, g, 50, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, False)
    assert np.all(m[10:] == 0)
    np.testing.assert_allclose(m[:10], 0.1, rtol=1e-6)
    buf = np.full(n, tiny, dtype)
    _C.sgd_step(p, buf, g, 0.1, 0.9, 0.0, 0.0, False, False, False)
    assert np.all(buf[10:] == 0) and np.all(buf[:10] == 1)
    assert dtype(tiny) * dtype(1.0) == dtype(tiny) != 0  # NumPy still sees denormals
