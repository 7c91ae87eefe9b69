"""nnkernels.sklearn: scikit-learn's estimator contract, and the same training as scikit-learn."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import sklearn.neural_network as skn  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from nnkernels.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

no_convergence_warning = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return train_test_split(X, y, random_state=0)


def _fit_quietly(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


# ---- scikit-learn's estimator checks -------------------------------------------

def _expected_failures(estimator):
    if isinstance(estimator, MLPClassifier) and estimator.dtype is not None:
        return {"check_sample_weight_equivalence_on_dense_data":
                "fits with sample_weight run scikit-learn's NumPy loop, fits without run nnkernels' "
                "kernels: in float32 the two differ in the last bits (1e-8 > the check's rtol=1e-7); "
                "scikit-learn itself runs this check for MLPClassifier only with solver='lbfgs'"}
    return {}


@no_convergence_warning
@parametrize_with_checks([MLPClassifier(max_iter=20, random_state=0),
                          MLPRegressor(max_iter=20, random_state=0),
                          MLPClassifier(max_iter=20, random_state=0, dtype=None)],
                         expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---- same training as scikit-learn ------------------------------------------

CONFIGS = [
    dict(),
    dict(solver="sgd"),
    dict(solver="sgd", learning_rate="invscaling", nesterovs_momentum=False, momentum=0.5),
    dict(solver="sgd", learning_rate="adaptive", momentum=0.0, learning_rate_init=0.3),
    dict(activation="tanh", alpha=0.01),
    dict(activation="logistic", hidden_layer_sizes=(20, 10), batch_size=64),
    dict(activation="identity", shuffle=False),
    dict(early_stopping=True, n_iter_no_change=3, tol=1e-2),
]


@pytest.mark.parametrize("params", CONFIGS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default")
def test_classifier_matches_sklearn(digits, params):
    Xtr, Xte, ytr, yte = digits
    kw = {"hidden_layer_sizes": (32,), "random_state": 0, "max_iter": 15, **params}
    ref = _fit_quietly(skn.MLPClassifier(**kw), Xtr, ytr)
    ours = _fit_quietly(MLPClassifier(**kw), Xtr, ytr)
    assert ours.n_iter_ == ref.n_iter_ and ours.t_ == ref.t_
    assert ours.out_activation_ == ref.out_activation_ and ours.n_layers_ == ref.n_layers_
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-3)
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, ref.validation_scores_, atol=0.01)
        assert ours.best_loss_ is None
    else:
        assert ours.best_loss_ == pytest.approx(ref.best_loss_, rel=1e-3)
    assert abs(ours.score(Xte, yte) - ref.score(Xte, yte)) <= 0.01


def test_float64_with_dtype_none_matches_sklearn_closely(digits):
    Xtr, Xte, ytr, yte = digits
    X64 = Xtr.astype(np.float64)
    kw = dict(hidden_layer_sizes=(16,), random_state=1, max_iter=10)
    ref = _fit_quietly(skn.MLPClassifier(**kw), X64, ytr)
    ours = _fit_quietly(MLPClassifier(dtype=None, **kw), X64, ytr)
    for a, b in zip(ours.coefs_, ref.coefs_):
        assert a.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
    default = _fit_quietly(MLPClassifier(**kw), X64, ytr)
    assert default.coefs_[0].dtype == np.float32  # trains in float32 by default
    assert default.predict_proba(Xte.astype(np.float64)).shape == (len(Xte), 10)


def test_binary_multilabel_and_regressor_match_sklearn(digits):
    Xtr, Xte, ytr, yte = digits
    kw = dict(hidden_layer_sizes=(16,), random_state=0, max_iter=10)
    pairs = [
        (skn.MLPClassifier, MLPClassifier, ytr % 2),                                  # binary
        (skn.MLPClassifier, MLPClassifier, np.stack([ytr % 2, ytr > 4], axis=1)),     # multilabel
        (skn.MLPRegressor, MLPRegressor, ytr.astype(np.float32)),
        (skn.MLPRegressor, MLPRegressor, np.stack([ytr, ytr ** 0.5], axis=1).astype(np.float32)),
    ]
    for ref_cls, cls, y in pairs:
        ref = _fit_quietly(ref_cls(**kw), Xtr, y)
        ours = _fit_quietly(cls(**kw), Xtr, y)
        assert ours.out_activation_ == ref.out_activation_
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-4)
        for a, b in zip(ours.coefs_, ref.coefs_):
            np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)


def test_convergence_warning_and_stopping_rule(digits):
    Xtr, _, ytr, _ = digits
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(Xtr, ytr)
    # a huge tol: the first epoch improves on best_loss_=inf, then n_iter_no_change + 1
    # epochs without improvement stop training, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        kw = dict(hidden_layer_sizes=(8,), max_iter=50, tol=10.0, n_iter_no_change=2, random_state=0)
        m = MLPClassifier(**kw).fit(Xtr, ytr)
        ref = skn.MLPClassifier(**kw).fit(Xtr, ytr)
    assert m.n_iter_ == ref.n_iter_ == 4


def test_fitted_attributes(digits):
    Xtr, _, ytr, _ = digits
    m = _fit_quietly(MLPClassifier(hidden_layer_sizes=(20, 12), max_iter=3, random_state=0), Xtr, ytr)
    assert [c.shape for c in m.coefs_] == [(64, 20), (20, 12), (12, 10)]
    assert [b.shape for b in m.intercepts_] == [(20,), (12,), (10,)]
    assert list(m.classes_) == list(range(10))
    assert m.n_features_in_ == 64 and m.n_outputs_ == 10 and m.n_layers_ == 4
    assert m.out_activation_ == "softmax" and m.n_iter_ == 3 and m.t_ == 3 * len(Xtr)
    assert len(m.loss_curve_) == 3 and m.loss_ == m.loss_curve_[-1]
    assert m.best_loss_ == min(m.loss_curve_)
    assert m.validation_scores_ is None and m.best_validation_score_ is None
    proba = m.predict_proba(Xtr[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_partial_fit_warm_start_and_pickle(digits):
    Xtr, Xte, ytr, yte = digits
    m = MLPClassifier(hidden_layer_sizes=(16,), random_state=0)
    for _ in range(3):
        m.partial_fit(Xtr, ytr, classes=np.arange(10))
    ref = skn.MLPClassifier(hidden_layer_sizes=(16,), random_state=0)
    for _ in range(3):
        ref.partial_fit(Xtr, ytr, classes=np.arange(10))
    assert m.n_iter_ == ref.n_iter_ == 1  # scikit-learn counts the epochs of the last call
    assert m.t_ == ref.t_ == 3 * len(Xtr)
    np.testing.assert_allclose(m.coefs_[0], ref.coefs_[0], rtol=2e-3, atol=2e-4)
    clone = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(clone.predict_proba(Xte), m.predict_proba(Xte))
    clone.partial_fit(Xtr, ytr)  # optimizer state survives pickling
    m.partial_fit(Xtr, ytr)
    np.testing.assert_array_equal(clone.coefs_[0], m.coefs_[0])
    w = _fit_quietly(MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, warm_start=True, random_state=0),
                     Xtr, ytr)
    first = w.coefs_[0].copy()
    _fit_quietly(w, Xtr, ytr)
    assert not np.array_equal(first, w.coefs_[0]) and len(w.loss_curve_) == 4


@no_convergence_warning
def test_pipeline_gridsearch_cross_val(digits):
    Xtr, Xte, ytr, yte = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=30,
                                                         random_state=0))
    pipe.fit(Xtr, ytr)
    ref = make_pipeline(StandardScaler(), skn.MLPClassifier(hidden_layer_sizes=(16,), max_iter=30,
                                                            random_state=0)).fit(Xtr, ytr)
    assert pipe.score(Xte, yte) > 0.8
    assert abs(pipe.score(Xte, yte) - ref.score(Xte, yte)) < 0.01
    grid = GridSearchCV(MLPClassifier(max_iter=5, random_state=0),
                        {"hidden_layer_sizes": [(8,), (16,)], "alpha": [1e-4, 1e-2]}, cv=2)
    grid.fit(Xtr, ytr)
    assert set(grid.best_params_) == {"hidden_layer_sizes", "alpha"}
    scores = cross_val_score(MLPRegressor(hidden_layer_sizes=(16,), max_iter=20, random_state=0),
                             Xtr, ytr.astype(float), cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


@pytest.mark.parametrize("backend", ["cpp", "numba", "numpy"])
def test_backends_and_threads_agree(digits, backend):
    Xtr, _, ytr, _ = digits
    kw = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0, dtype="float64")
    ref = _fit_quietly(MLPClassifier(backend="numpy", **kw), Xtr, ytr)
    ours = _fit_quietly(MLPClassifier(backend=backend, n_threads=1, **kw), Xtr, ytr)
    for a, b in zip(ours.coefs_, ref.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_bad_parameters(digits):
    Xtr, _, ytr, _ = digits
    with pytest.raises(ValueError, match="backend"):
        MLPClassifier(backend="cuda").fit(Xtr, ytr)
    with pytest.raises(ValueError, match="n_threads"):
        MLPClassifier(n_threads=0).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="dtype"):
        MLPClassifier(dtype="float16").fit(Xtr, ytr)


def test_lbfgs_and_sample_weight_use_sklearn_path(digits):
    Xtr, _, ytr, _ = digits
    kw = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    ref = _fit_quietly(skn.MLPClassifier(solver="lbfgs", **kw), Xtr, ytr)
    ours = _fit_quietly(MLPClassifier(solver="lbfgs", **kw), Xtr, ytr)
    np.testing.assert_allclose(ours.coefs_[0], ref.coefs_[0], rtol=1e-4, atol=1e-5)
    sw = np.linspace(0.5, 1.5, len(ytr))
    ref = skn.MLPClassifier(**kw)
    ours = MLPClassifier(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(Xtr, ytr, sample_weight=sw)
        ours.fit(Xtr, ytr, sample_weight=sw)
    np.testing.assert_allclose(ours.coefs_[0], ref.coefs_[0], rtol=2e-3, atol=2e-4)


def test_poisson_regressor_and_regressor_early_stopping_match_sklearn(digits):
    Xtr, _, ytr, _ = digits
    y = ytr.astype(np.float32)
    for kw in (dict(loss="poisson"), dict(early_stopping=True, n_iter_no_change=2)):
        kw = dict(hidden_layer_sizes=(8,), max_iter=6, random_state=0, **kw)
        ref = _fit_quietly(skn.MLPRegressor(**kw), Xtr, y)
        ours = _fit_quietly(MLPRegressor(**kw), Xtr, y)
        assert ours.out_activation_ == ref.out_activation_ and ours.n_iter_ == ref.n_iter_
        np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-4)
        np.testing.assert_allclose(ours.coefs_[0], ref.coefs_[0], rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("params, fused", [
    (dict(), True), (dict(activation="tanh", early_stopping=True, n_iter_no_change=2), True),
    (dict(activation="logistic", hidden_layer_sizes=(12, 8), batch_size=50, shuffle=False), True),
    (dict(solver="sgd"), False)])
def test_multiclass_adam_runs_the_fused_step(digits, monkeypatch, params, fused):
    # multiclass + adam: one native call per epoch (_FusedStep.epoch); the result is
    # scikit-learn's in float64 (dtype=None) to rounding
    import nnkernels.sklearn as nks
    calls = []
    epoch = nks._FusedStep.epoch
    monkeypatch.setattr(nks._FusedStep, "epoch", lambda self, X, y, o: calls.append(len(o)) or epoch(self, X, y, o))
    Xtr, Xte, ytr, _ = digits
    X64 = Xtr.astype(np.float64)
    kw = {"hidden_layer_sizes": (16,), "random_state": 0, "max_iter": 6, **params}
    ref = _fit_quietly(skn.MLPClassifier(**kw), X64, ytr)
    ours = _fit_quietly(MLPClassifier(dtype=None, **kw), X64, ytr)
    assert len(calls) == (ours.n_iter_ if fused else 0)
    assert ours.n_iter_ == ref.n_iter_
    for a, b in zip(ours.coefs_ + ours.intercepts_, ref.coefs_ + ref.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-9)
    if fused:  # Adam's moments are written back: partial_fit continues like scikit-learn's
        for a, b in zip(ours._optimizer.ms + ours._optimizer.vs, ref._optimizer.ms + ref._optimizer.vs):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-12)


def test_take_rows_gathers_converts_and_checks():
    from nnkernels import _C
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 37))
    idx = rng.integers(0, 300, 120)
    for dt in (np.float32, np.float64):
        out = np.empty((120, 37), dt)
        _C.take_rows(out, X, idx)
        np.testing.assert_array_equal(out, X[idx].astype(dt))
        full = np.empty((300, 37), dt)
        _C.take_rows(full, X.astype(np.float32), None)
        np.testing.assert_array_equal(full, X.astype(np.float32).astype(dt))
    out = np.empty((2, 37))
    with pytest.raises(ValueError, match=r"idx: index 300 at position 1"):
        _C.take_rows(out, X, np.array([0, 300]))
    with pytest.raises(ValueError, match="out"):
        _C.take_rows(np.empty((3, 37)), X, np.array([0, 1]))
    with pytest.raises(TypeError, match="idx"):
        _C.take_rows(out, X, np.array([0, 1], dtype=np.int32))
    with pytest.raises(TypeError, match="x"):
        _C.take_rows(out, X.astype(np.int64), np.array([0, 1]))
    with pytest.raises(ValueError, match="x"):
        _C.take_rows(out, X[:, ::2], np.array([0, 1]))


def test_take_rows_checks_finite():
    from nnkernels import _C
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 37))
    out = np.empty((300, 37), np.float32)
    assert _C.take_rows(out, X, None) is None  # not asked
    assert _C.take_rows(out, X, None, check_finite=True) is True
    np.testing.assert_array_equal(out, X.astype(np.float32))
    big = X.copy()
    big[7, 3] = 1e300  # finite in the float64 source (the float32 copy overflows)
    assert _C.take_rows(out, big, None, check_finite=True) is True
    for bad in (np.nan, np.inf, -np.inf):
        for src in (X.copy(), X.astype(np.float32)):
            src[299, 36] = bad
            assert _C.take_rows(np.empty((300, 37), src.dtype), src, None, check_finite=True) is False
            two = np.empty((2, 37), np.float64)
            assert _C.take_rows(two, src, np.array([299, 0]), check_finite=True) is False
            assert _C.take_rows(two, src, np.array([298, 0]), check_finite=True) is True  # rows read only


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
def test_input_check_fused_with_conversion(digits, Est):
    """A C-contiguous float64 X is converted to float32 and checked for NaN/inf
    in one pass (scikit-learn's own sum check skipped): the same model as with
    the same X in Fortran order (scikit-learn's check, then the conversion),
    and for NaN/inf in X or y the same error as scikit-learn's, before anything
    is fitted."""
    Xtr, _, ytr, _ = digits
    X64 = Xtr.astype(np.float64)
    y = ytr if Est is MLPClassifier else ytr.astype(np.float64)
    kw = {"hidden_layer_sizes": (16,), "random_state": 0, "max_iter": 3}
    fast = _fit_quietly(Est(**kw), X64, y)
    slow = _fit_quietly(Est(**kw), np.asfortranarray(X64), y)
    for a, b in zip(fast.coefs_ + fast.intercepts_, slow.coefs_ + slow.intercepts_):
        np.testing.assert_array_equal(a, b)
    Sk = skn.MLPClassifier if Est is MLPClassifier else skn.MLPRegressor
    for bad in (np.nan, np.inf):
        Xb = X64.copy()
        Xb[3, 5] = bad
        yb = y.astype(np.float64)
        yb[4] = bad
        for Xi, yi in ((Xb, y), (X64, yb)):
            with pytest.raises(ValueError) as ours:
                Est(**kw).fit(Xi, yi)
            with pytest.raises(ValueError) as ref:
                Sk(**kw).fit(Xi, yi)
            assert str(ours.value) == str(ref.value).replace(Sk.__name__, Est.__name__)
        est = Est(**kw)
        with pytest.raises(ValueError):
            est.fit(Xb, y)
        assert not hasattr(est, "coefs_") and not hasattr(est, "n_features_in_")


def test_training_copy_in_small_pages(digits, monkeypatch):
    # Above _SMALL_PAGES_BYTES the float32 training copy of X lives in its own
    # anonymous mapping (no huge-page advice); it must hold exactly
    # X.astype(float32), be writable and C-contiguous, and keep its mapping
    # alive on its own; a fit through that path gives the same model.
    import gc
    import mmap

    import nnkernels.sklearn as nks
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 33))
    monkeypatch.setattr(nks, "_SMALL_PAGES_BYTES", 1024)
    out = nks._convert_rows(X, np.float32)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        base = out
        while isinstance(base, np.ndarray):
            base = base.base
        assert isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)
    del X
    gc.collect()
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, np.random.default_rng(0).standard_normal((500, 33)).astype(np.float32))
    out[0, 0] = 1.5
    assert out[0, 0] == 1.5
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # a kernel without THP rejects the advice: still fine
        import types

        class Refusing(mmap.mmap):
            def madvise(self, *args):
                raise OSError(22, "Invalid argument")

        fake = types.SimpleNamespace(mmap=Refusing, MAP_PRIVATE=mmap.MAP_PRIVATE,
                                     MAP_ANONYMOUS=mmap.MAP_ANONYMOUS, MADV_NOHUGEPAGE=mmap.MADV_NOHUGEPAGE)
        monkeypatch.setattr(nks, "mmap", fake)
        X = np.arange(600.0).reshape(20, 30)
        np.testing.assert_array_equal(nks._convert_rows(X, np.float32), X.astype(np.float32))
        monkeypatch.setattr(nks, "mmap", mmap)
    Xtr, _, ytr, _ = digits
    X64 = Xtr.astype(np.float64)
    kw = {"hidden_layer_sizes": (16,), "random_state": 0, "max_iter": 3}
    small = _fit_quietly(MLPClassifier(**kw), X64, ytr)
    monkeypatch.setattr(nks, "_SMALL_PAGES_BYTES", 1 << 62)
    plain = _fit_quietly(MLPClassifier(**kw), X64, ytr)
    for a, b in zip(small.coefs_ + small.intercepts_, plain.coefs_ + plain.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_fused_epochs_equal_fused_steps(digits, monkeypatch):
    """A fit whose X is converted once runs whole epochs in one call
    (_FusedStep.epoch); with X too big to convert once, every minibatch is
    converted as it is gathered and runs as one call (_FusedStep.run). Both
    train the same float32 model, bitwise; the reported losses differ only in
    how the L2 term's sum of squares is accumulated."""
    import nnkernels.sklearn as nks
    Xtr, _, ytr, _ = digits
    X64 = Xtr.astype(np.float64)
    kw = dict(hidden_layer_sizes=(24,), random_state=0, max_iter=4, alpha=1e-2, batch_size=64)
    calls = {"epoch": 0, "run": 0}
    for name in calls:
        f = getattr(nks._FusedStep, name)
        monkeypatch.setattr(nks._FusedStep, name,
                            lambda self, *a, _f=f, _n=name: calls.__setitem__(_n, calls[_n] + 1) or _f(self, *a))
    whole = _fit_quietly(MLPClassifier(**kw), X64, ytr)
    assert calls == {"epoch": 4, "run": 0}
    monkeypatch.setattr(nks, "_CONVERT_ONCE_BYTES", 0)
    steps = _fit_quietly(MLPClassifier(**kw), X64, ytr)
    assert calls["epoch"] == 4 and calls["run"] == 4 * -(-len(ytr) // 64)
    for a, b in zip(whole.coefs_ + whole.intercepts_, steps.coefs_ + steps.intercepts_):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(whole._optimizer.ms + whole._optimizer.vs, steps._optimizer.ms + steps._optimizer.vs):
        np.testing.assert_array_equal(a, b)
    assert whole._optimizer.t == steps._optimizer.t
    assert whole._optimizer.learning_rate == steps._optimizer.learning_rate
    np.testing.assert_allclose(whole.loss_curve_, steps.loss_curve_, rtol=1e-6)
