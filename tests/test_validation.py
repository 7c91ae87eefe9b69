"""Input validation at the public entry points: every bad input is a
TypeError or ValueError whose message names the argument and what was
expected/received; arrays written in place are never silently replaced by a
converted copy; read-only inputs (e.g. memory-mapped files) are accepted
wherever nothing is written to them."""

from __future__ import annotations

import re

import numpy as np
import pytest

import nnkernels as nk
from nnkernels import _C, nn, ops, optim
from nnkernels.backends import load_backend

F32 = np.float32


def ro(shape, dtype=F32, fill=0.0):
    a = np.full(shape, fill, dtype)
    a.flags.writeable = False
    return a


X = np.ones((3, 4), F32)
W = np.ones((5, 4), F32)
B = np.ones(5, F32)
P4 = lambda: np.ones(4, F32)  # noqa: E731
Z4 = lambda: np.zeros(4, F32)  # noqa: E731


def _lin():
    return nn.Linear(2, 2)


# (id, call, exception type, regex the message must match: it names the argument)
BAD = [
    # -- ops.matmul / linear / linear_backward
    ("matmul-int", lambda: ops.matmul(np.ones((3, 4), np.int32), X.T), TypeError, r"^a: expected dtype float32 or float64, got int32"),
    ("matmul-f16", lambda: ops.matmul(X, X.T.astype(np.float16)), TypeError, r"^b: expected dtype float32 or float64, got float16"),
    ("matmul-complex", lambda: ops.matmul(X.astype(np.complex64), X.T), TypeError, r"^a: .*got complex64"),
    ("matmul-str", lambda: ops.matmul("abc", X.T), TypeError, r"^a: expected a numpy array, got str"),
    ("matmul-mixed", lambda: ops.matmul(X, X.T.astype(np.float64)), TypeError, r"dtype mismatch: a is float32, b is float64"),
    ("matmul-3d", lambda: ops.matmul(np.ones((2, 3, 4), F32), X.T), ValueError, r"^a: expected a 2-D array, got shape \(2, 3, 4\)"),
    ("matmul-align", lambda: ops.matmul(X, X), ValueError, r"not aligned \(4 != 3\)"),
    ("matmul-alpha-nan", lambda: ops.matmul(X, X.T, alpha=float("nan")), ValueError, r"^alpha: expected a finite number, got nan"),
    ("matmul-beta-inf", lambda: ops.matmul(X, X.T, beta=float("inf"), out=np.zeros((3, 3), F32)), ValueError, r"^beta: expected a finite number, got inf"),
    ("matmul-alpha-str", lambda: ops.matmul(X, X.T, alpha="1"), TypeError, r"^alpha: expected a number, got str"),
    ("matmul-trans-str", lambda: ops.matmul(X, X, trans_a="yes"), TypeError, r"^trans_a: expected a bool, got str"),
    ("matmul-out-ro", lambda: ops.matmul(X, X.T, out=ro((3, 3))), ValueError, r"^out: array is read-only"),
    ("matmul-out-dtype", lambda: ops.matmul(X, X.T, out=np.zeros((3, 3))), TypeError, r"^out: expected dtype float32, got float64"),
    ("matmul-out-shape", lambda: ops.matmul(X, X.T, out=np.zeros((3, 4), F32)), ValueError, r"^out: expected shape \(3, 3\), got \(3, 4\)"),
    ("matmul-out-list", lambda: ops.matmul(X, X.T, out=[[0.0] * 3] * 3), TypeError, r"^out: expected a numpy array, got list"),
    ("matmul-out-overlap", lambda: (lambda o: ops.matmul(o[:, :3], np.eye(3, dtype=F32), out=o[:, 1:]))(np.ones((3, 4), F32)), ValueError, r"^out: overlaps the memory of an input"),
    ("matmul-beta-no-out", lambda: ops.matmul(X, X.T, beta=1.0), ValueError, r"^out: beta != 0 requires an out array"),
    ("matmul-backend", lambda: ops.matmul(X, X.T, backend="cuda"), ValueError, r"^backend: unknown backend 'cuda'"),
    ("linear-bias-shape", lambda: ops.linear(X, W, np.ones(4, F32)), ValueError, r"^bias: expected shape \(5,\), got \(4,\)"),
    ("linear-bias-2d", lambda: ops.linear(X, W, np.ones((1, 5), F32)), ValueError, r"^bias: expected a 1-D array"),
    ("linear-bias-dtype", lambda: ops.linear(X, W, np.ones(5)), TypeError, r"dtype mismatch: .*bias is float64"),
    ("linear-act", lambda: ops.linear(X, W, B, activation="tanhh"), ValueError, r"^activation: expected None or one of .*got 'tanhh'"),
    ("linear-weight-1d", lambda: ops.linear(X, np.ones(4, F32)), ValueError, r"^weight: expected a 2-D array"),
    ("linear-x-scalar", lambda: ops.linear(np.float32(1), W), ValueError, r"^x: expected at least 1 dimension"),
    ("linear-features", lambda: ops.linear(np.ones((3, 5), F32), W), ValueError, r"x has shape \(3, 5\) but weight has shape \(5, 4\)"),
    ("linear-slope-nan", lambda: ops.linear(X, W, activation="leaky_relu", negative_slope=float("nan")), ValueError, r"^negative_slope: expected a finite number"),
    ("linear-out-shape", lambda: ops.linear(X, W, out=np.zeros((3, 4), F32)), ValueError, r"^out: expected shape \(3, 5\)"),
    ("linbwd-grad-shape", lambda: ops.linear_backward(X, W, np.ones((3, 4), F32)), ValueError, r"^grad_out: expected shape \(3, 5\), got \(3, 4\)"),
    ("linbwd-need-str", lambda: ops.linear_backward(X, W, np.ones((3, 5), F32), need_input_grad="no"), TypeError, r"^need_input_grad: expected a bool"),
    # -- optimizer update ops: state is updated in place, never converted
    ("sgd-param-ro", lambda: ops.sgd_step(ro(4), P4(), lr=0.1), ValueError, r"^param: array is read-only"),
    ("sgd-param-strided", lambda: ops.sgd_step(np.ones(8, F32)[::2], P4(), lr=0.1), ValueError, r"^param: expected a C-contiguous array"),
    ("sgd-param-list", lambda: ops.sgd_step([1.0, 2.0], P4(), lr=0.1), TypeError, r"^param: expected a numpy array, got list"),
    ("sgd-grad-shape", lambda: ops.sgd_step(P4(), np.ones(5, F32), lr=0.1), ValueError, r"^grad: expected shape \(4,\) \(like param\), got \(5,\)"),
    ("sgd-lr-neg", lambda: ops.sgd_step(P4(), P4(), lr=-0.1), ValueError, r"^lr: expected a value in \[0, inf\), got -0.1"),
    ("sgd-lr-nan", lambda: ops.sgd_step(P4(), P4(), lr=float("nan")), ValueError, r"^lr: expected a finite number, got nan"),
    ("sgd-no-buf", lambda: ops.sgd_step(P4(), P4(), lr=0.1, momentum=0.9), ValueError, r"^momentum_buf: required when momentum != 0"),
    ("adam-state-f64", lambda: ops.adam_step(P4(), P4(), np.zeros(4), Z4(), step=1), TypeError, r"param is float32 but exp_avg is float64"),
    ("adam-state-ro", lambda: ops.adam_step(P4(), P4(), Z4(), ro(4), step=1), ValueError, r"^exp_avg_sq: array is read-only"),
    ("adam-step0", lambda: ops.adam_step(P4(), P4(), Z4(), Z4(), step=0), ValueError, r"^step: expected a step count >= 1, got 0"),
    ("adam-step-float", lambda: ops.adam_step(P4(), P4(), Z4(), Z4(), step=1.0), TypeError, r"^step: expected an int, got float"),
    ("adam-beta1", lambda: ops.adam_step(P4(), P4(), Z4(), Z4(), step=1, beta1=1.0), ValueError, r"^beta1: expected a value in \[0, 1\), got 1.0"),
    ("adam-eps", lambda: ops.adam_step(P4(), P4(), Z4(), Z4(), step=1, eps=-1.0), ValueError, r"^eps: expected a value in \[0, inf\)"),
    ("adam-alias", lambda: (lambda s: ops.adam_step(P4(), P4(), s, s, step=1))(Z4()), ValueError, r"exp_avg and exp_avg_sq overlap in memory"),
    ("adam-amsgrad", lambda: ops.adam_step(P4(), P4(), Z4(), Z4(), step=1, amsgrad=True), ValueError, r"^max_exp_avg_sq: required when amsgrad=True"),
    ("rmsprop-alpha", lambda: ops.rmsprop_step(P4(), P4(), Z4(), alpha=-0.5), ValueError, r"^alpha: expected a value in \[0, inf\)"),
    ("adagrad-state-F", lambda: ops.adagrad_step(np.ones((2, 3), F32), np.ones((2, 3), F32), np.zeros((2, 3), F32, order="F"), step=1), ValueError, r"^state_sum: expected a C-contiguous array"),
    # -- bindings called directly (checks run with the GIL held, before the kernel)
    ("C-gemm-int", lambda: _C.gemm(np.zeros((3, 3), F32), np.ones((3, 4), np.int32), X.T), TypeError, r"^a: expected a float32 or float64 array, got dtype int32"),
    ("C-gemm-out-ro", lambda: _C.gemm(ro((3, 3)), X, X.T.copy()), ValueError, r"^out: array is read-only"),
    ("C-gemm-out-1d", lambda: _C.gemm(np.zeros(3, F32), X, X.T.copy()), ValueError, r"^out: expected a 2-D array, got shape \(3,\)"),
    ("C-gemm-out-f64", lambda: _C.gemm(np.zeros((3, 3)), X, X.T.copy()), TypeError, r"dtype mismatch: a is float32 but out is float64"),
    ("C-gemm-overlap", lambda: (lambda o: _C.gemm(o[:, :3], o[:, 1:], np.eye(3, dtype=F32)))(np.ones((3, 4), F32)), ValueError, r"^out overlaps the memory of input a"),
    ("C-gemm-epilogue", lambda: _C.gemm(np.zeros((3, 3), F32), X, X.T.copy(), epilogue="tanh"), ValueError, r"^epilogue: unknown activation 'tanh'"),
    ("C-colsum-strided-out", lambda: _C.colsum(np.zeros(8, F32)[::2], X), ValueError, r"^out: expected a C-contiguous array"),
    ("C-sgd-ro", lambda: _C.sgd_step(ro(4), None, P4(), 0.1, 0.0, 0.0, 0.0, False, False, False), ValueError, r"^param: array is read-only"),
    ("C-sgd-f64-grad", lambda: _C.sgd_step(P4(), None, np.ones(4), 0.1, 0.0, 0.0, 0.0, False, False, False), TypeError, r"param is float32 but grad is float64"),
    ("C-sgd-list", lambda: _C.sgd_step([1.0, 2.0], None, P4(), 0.1, 0.0, 0.0, 0.0, False, False, False), TypeError, r"sgd_step\(\): incompatible function arguments"),
    ("C-set-isa", lambda: _C.set_isa("sse"), ValueError, r"unknown ISA 'sse' \(expected one of"),
    # -- package-level settings
    ("threads-0", lambda: nk.set_num_threads(0), ValueError, r"^n: expected a positive thread count, got 0"),
    ("threads-float", lambda: nk.set_num_threads(2.0), TypeError, r"^n: expected an int, got float"),
    ("backend", lambda: nk.set_backend("jax"), ValueError, r"^backend: unknown backend 'jax'"),
    ("seed-str", lambda: nk.manual_seed("1"), TypeError, r"^seed: expected an int, got str"),
    # -- layers, optimizers, schedulers, data, fit
    ("Linear-neg", lambda: nn.Linear(-1, 3), ValueError, r"^in_features: expected a non-negative int, got -1"),
    ("Linear-float", lambda: nn.Linear(2.5, 3), ValueError, r"^in_features: .*got 2.5"),
    ("Linear-dtype", lambda: nn.Linear(2, 3, dtype=np.int32), TypeError, r"^dtype: expected float32 or float64, got int32"),
    ("Linear-input-f64", lambda: nn.Linear(4, 3)(np.ones((2, 4))), TypeError, r"input has dtype float64 but the module's dtype is float32"),
    ("Linear-input-shape", lambda: nn.Linear(4, 3)(np.ones((2, 5), F32)), ValueError, r"x has shape \(2, 5\) but weight has shape \(3, 4\)"),
    ("Dropout-p", lambda: nn.Dropout(1.5), ValueError, r"^p: dropout probability has to be between 0 and 1, but got 1.5"),
    ("MLP-sizes", lambda: nn.MLP([4]), ValueError, r"^sizes: expected at least \[in, out\], got \[4\]"),
    ("SGD-lr-neg", lambda: optim.SGD(_lin().parameters(), lr=-1), ValueError, r"Invalid learning rate value: -1 \(lr must be"),
    ("SGD-lr-nan", lambda: optim.SGD(_lin().parameters(), lr=float("nan")), ValueError, r"\(lr must be a finite number >= 0\)"),
    ("SGD-lr-str", lambda: optim.SGD(_lin().parameters(), lr="0.1"), TypeError, r"^lr: expected a number, got str"),
    ("Adam-betas", lambda: optim.Adam(_lin().parameters(), betas=(1.0, 0.9)), ValueError, r"Invalid beta parameter at index 0: 1.0"),
    ("Adam-eps", lambda: optim.Adam(_lin().parameters(), eps=-1), ValueError, r"Invalid epsilon value: -1 \(eps must be"),
    ("Adam-params", lambda: optim.Adam(np.ones(3)), TypeError, r"optimizer can only optimize Parameters"),
    ("StepLR-0", lambda: optim.lr_scheduler.StepLR(optim.SGD(_lin().parameters(), lr=0.1), step_size=0), ValueError, r"^step_size: expected a positive int, got 0"),
    ("Cosine-0", lambda: optim.lr_scheduler.CosineAnnealingLR(optim.SGD(_lin().parameters(), lr=0.1), T_max=0), ValueError, r"^T_max: expected a positive int, got 0"),
    ("DataLoader-bs", lambda: nk.DataLoader(np.ones((4, 2)), np.ones(4), batch_size=0), ValueError, r"^batch_size: expected a positive int, got 0"),
    ("DataLoader-y", lambda: nk.DataLoader(np.ones((4, 2)), np.ones(3)), ValueError, r"^y: expected 4 samples like X, got shape \(3,\)"),
    ("fit-epochs", lambda: nk.fit(_lin(), nn.MSELoss(), optim.SGD(_lin().parameters(), lr=0.1), (np.ones((4, 2), F32),) * 2, epochs=-1), ValueError, r"^epochs: expected an int >= 0, got -1"),
    ("fit-data", lambda: nk.fit(_lin(), nn.MSELoss(), optim.SGD(_lin().parameters(), lr=0.1), np.ones((4, 2)), progress=False), TypeError, r"^data: expected an \(X, y\) pair or a DataLoader"),
    ("fit-batch", lambda: nk.fit(_lin(), nn.MSELoss(), optim.SGD(_lin().parameters(), lr=0.1), (np.ones((4, 2), F32),) * 2, batch_size=0, progress=False), ValueError, r"^batch_size: expected a positive int, got 0"),
]

# Activation/loss ops, when this build has them (branch `acts`).
if hasattr(ops, "relu"):
    BAD += [
        ("relu-int", lambda: ops.relu(np.ones(3, np.int64)), TypeError, r"^x: expected dtype float32 or float64, got int64"),
        ("relu-out-ro", lambda: ops.relu(X, out=ro((3, 4))), ValueError, r"^out: array is read-only"),
        ("relu-out-strided", lambda: ops.relu(X, out=np.zeros((3, 8), F32)[:, ::2]), ValueError, r"^out: expected a C-contiguous array"),
        ("relu-out-f64", lambda: ops.relu(X, out=np.zeros((3, 4))), TypeError, r"^out: expected dtype float32, got float64"),
        ("relu_bwd-shape", lambda: ops.relu_backward(np.ones((3, 5), F32), X), ValueError, r"^grad_out: expected the shape of x \(3, 4\), got \(3, 5\)"),
        ("softmax-int", lambda: ops.softmax(np.ones(3, np.int64)), TypeError, r"^x: expected dtype float32 or float64"),
        ("ce-target-oob", lambda: ops.cross_entropy(X, np.array([0, 1, 7])), ValueError, r"^target: class index 7 at position 2 is out of range \[0, 4\)"),
        ("ce-target-len", lambda: ops.cross_entropy(X, np.array([0, 1])), ValueError, r"^target: class indices must have shape \(3,\)"),
        ("ce-reduction", lambda: ops.cross_entropy(X, np.array([0, 1, 2]), reduction="avg"), ValueError, r"^reduction: expected one of .*got 'avg'"),
        ("ce-smoothing", lambda: ops.cross_entropy(X, np.array([0, 1, 2]), label_smoothing=1.5), ValueError, r"^label_smoothing: expected a value in \[0, 1\], got 1.5"),
        ("mse-shape", lambda: ops.mse_loss(X, np.ones((3, 5), F32)), ValueError, r"^target: expected the input's shape \(3, 4\), got \(3, 5\)"),
        ("huber-delta", lambda: ops.huber_loss(X, X, delta=-1.0), ValueError, r"^delta: expected a positive value, got -1.0"),
        ("bce-range", lambda: ops.binary_cross_entropy(X * 2, X * 0.5), ValueError, r"^input: all elements must be probabilities in \[0, 1\]"),
    ]


@pytest.mark.parametrize("call,exc,pattern", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_reported_by_name(call, exc, pattern):
    with nk.use_backend("numpy"):  # validation happens before any kernel runs
        with pytest.raises(exc) as info:
            call()
    assert type(info.value) in (TypeError, ValueError) or issubclass(type(info.value), (TypeError, ValueError))
    assert re.search(pattern, str(info.value)), f"message {str(info.value)!r} does not match {pattern!r}"


def test_bad_input_catalogue_size():
    # the report quotes this number; every entry above is a distinct bad input
    assert len(BAD) >= 80


# ---- read-only and memory-mapped inputs -----------------------------------------

def _backends():
    return [b for b in nk.available_backends() if not load_backend(b).missing()] or ["numpy"]


@pytest.mark.parametrize("backend", nk.available_backends())
def test_memory_mapped_read_only_inputs_are_accepted(tmp_path, backend):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5)).astype(F32)
    path = tmp_path / "a.npy"
    np.save(path, a)
    mm = np.load(path, mmap_mode="r")  # read-only memory map
    assert not mm.flags.writeable
    w = np.ascontiguousarray(rng.standard_normal((3, 5)).astype(F32))
    w.flags.writeable = False
    ref = a.astype(np.float64) @ w.T.astype(np.float64)
    np.testing.assert_allclose(ops.matmul(mm, w.T, backend=backend), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.linear(mm, w, backend=backend), ref, rtol=1e-5, atol=1e-5)
    g = np.ones((7, 3), F32)
    g.flags.writeable = False
    gx, gw, gb = ops.linear_backward(mm, w, g, backend=backend)
    np.testing.assert_allclose(gb, np.full(3, 7.0), rtol=1e-6)
    # the gradient of an optimizer step is read only
    p = np.ones(5, F32)
    grad = np.load(path, mmap_mode="r")[0]
    ops.sgd_step(p, grad, lr=0.5, backend=backend)
    np.testing.assert_allclose(p, 1 - 0.5 * a[0], rtol=1e-6)
    if hasattr(ops, "relu") and not load_backend(backend).missing():
        np.testing.assert_array_equal(ops.relu(mm, backend=backend), np.maximum(a, 0))


def test_fit_on_memory_mapped_data(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.standard_normal((64, 6)).astype(F32))
    np.save(tmp_path / "y.npy", rng.standard_normal((64, 2)).astype(F32))
    X = np.load(tmp_path / "X.npy", mmap_mode="r")
    y = np.load(tmp_path / "y.npy", mmap_mode="r")
    with nk.use_backend(_backends()[0]):
        nk.manual_seed(0)
        m = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 2))
        h = nk.fit(m, nn.MSELoss(), optim.SGD(m.parameters(), lr=0.05), (X, y), epochs=3,
                   batch_size=16, progress=False, seed=0)
    assert h.train_loss[-1] < h.train_loss[0]


# ---- in-place arguments are never replaced by a converted copy -------------------

@pytest.mark.parametrize("backend", nk.available_backends())
@pytest.mark.parametrize("kind", ["f64", "F-order", "strided", "readonly", "int"])
def test_in_place_state_is_updated_or_rejected(backend, kind):
    """An optimizer state array the kernel cannot update in place is an error,
    never a silent copy whose update is lost."""
    bad = {"f64": np.zeros((3, 4)), "F-order": np.zeros((3, 4), F32, order="F"),
           "strided": np.zeros((3, 8), F32)[:, ::2], "readonly": ro((3, 4)),
           "int": np.zeros((3, 4), np.int32)}[kind]
    p = np.ones((3, 4), F32)
    before = bad.copy()
    with pytest.raises((TypeError, ValueError), match="exp_avg"):
        ops.adam_step(p, np.ones((3, 4), F32), bad, np.zeros((3, 4), F32), step=1, backend=backend)
    assert np.array_equal(p, np.ones((3, 4), F32)) and np.array_equal(bad, before)


@pytest.mark.parametrize("backend", nk.available_backends())
def test_strided_out_is_written_in_place(backend):
    """matmul accepts any `out` strides and writes through them (no temporary)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 5)).astype(F32)
    b = rng.standard_normal((5, 4)).astype(F32)
    for out in (np.zeros((4, 6), F32).T, np.zeros((12, 8), F32)[::2, ::2], np.zeros((6, 4), F32)[::-1]):
        r = ops.matmul(a, b, out=out, backend=backend)
        assert r is out
        np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


# ---- CLI: a user error is one line on stderr naming the option, exit code 2 -------

@pytest.mark.parametrize("argv,pattern", [
    (["train", "--epochs", "-1"], r"--epochs must be at least 1, got -1"),
    (["train", "--lr", "nan"], r"--lr must be a positive number, got nan"),
    (["train", "--batch-size", "0"], r"--batch-size must be at least 1, got 0"),
    (["train", "--hidden", "0"], r"--hidden: layer sizes must be positive, got 0"),
    (["train", "--threads", "0"], r"--threads must be at least 1, got 0"),
    (["train", "--dataset", "nope"], r"argument --dataset: invalid choice: 'nope'"),
])
def test_cli_bad_arguments(argv, pattern, capsys):
    cli = pytest.importorskip("nnkernels.cli")
    if "train" not in cli.SUBCOMMANDS or not _has_module("nnkernels.commands.train"):
        pytest.skip("train command not in this build")
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert re.search(pattern, err), err
    assert "Traceback" not in err and len(err.splitlines()) <= 2


def _has_module(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None
