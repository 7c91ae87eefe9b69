"""scikit-learn drop-ins: MLPClassifier and MLPRegressor trained by nnkernels' kernels.

They are subclasses of ``sklearn.neural_network.MLPClassifier`` /
``MLPRegressor``: same constructor parameters, defaults and meanings, same
input validation, label handling, Glorot initialisation (drawn from the same
random stream), early-stopping split, stopping rule (``tol``,
``n_iter_no_change``, ``ConvergenceWarning``), fitted attributes and
prediction code. What changes is the stochastic training loop (solvers
``"sgd"`` and ``"adam"``): each minibatch runs

* forward: one GEMM per layer with the bias (and ReLU) in its epilogue;
* loss: one fused softmax + cross-entropy (+ gradient) kernel for multiclass,
  scikit-learn's squared/binary log loss otherwise;
* backward: two GEMMs per layer and a column sum; the ``1/n`` of the mean is
  folded into the output delta and the L2 term ``alpha * W / n`` into the
  optimizer kernel's weight decay, so no extra passes;
* update: one fused, in-place optimizer kernel per parameter array (Adam or
  SGD with momentum/Nesterov, written to give scikit-learn's update rule).

Multiclass classification with ``solver="adam"`` goes further: the whole
minibatch step (forward, softmax cross-entropy, backward, the L2 term and
scikit-learn's Adam update) is the backend's fused MLP step
(docs/fused-step.md), on flat copies of ``coefs_``/``intercepts_`` and the
Adam moments that are written back after every epoch (see :class:`_FusedStep`);
when X is in the training dtype (converted once per fit), a whole epoch of
minibatches, with their gathers and each one's L2 penalty, is ONE call.

Three extra parameters: ``backend`` (None: nnkernels' current backend),
``n_threads`` (None: nnkernels' current thread count; otherwise used for the
duration of ``fit``/``partial_fit``) and ``dtype``: the precision training
runs in, ``"float32"`` by default (twice the arithmetic throughput of
float64 and half the memory traffic); ``dtype=None`` trains in the input's
dtype (float64 unless X is float32), exactly as scikit-learn does.

Differences from scikit-learn: the multiclass loss reported in
``loss_``/``loss_curve_`` is the exact cross-entropy (scikit-learn clips
probabilities at machine epsilon first; they only differ when the model puts
probability < 1e-7 (float32) on a true class). ``solver="lbfgs"``,
``sample_weight``, sparse inputs and ``loss="poisson"`` use scikit-learn's
own (NumPy) code path, unchanged.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import warnings
from numbers import Integral

import numpy as np
from scipy import sparse
from scipy.special import expit
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkMLPClassifier
from sklearn.neural_network import MLPRegressor as _SkMLPRegressor
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer
from sklearn.utils import gen_batches, shuffle as _sk_shuffle
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array

from . import ops
from ._native import _C
from ._threads import get_num_threads, set_num_threads
from .backends import available_backends, resolve
from .backends.interface.fused import MlpSpec, OptimConfig

__all__ = ["MLPClassifier", "MLPRegressor"]


# --------------------------------------------------------------------------
# optimizers: scikit-learn's classes (learning-rate schedule, stopping), with
# the update done in place by nnkernels' fused kernels
# --------------------------------------------------------------------------

class _AdamKernel(AdamOptimizer):
    """scikit-learn's Adam, each parameter updated by one ``ops.adam_step`` call.

    scikit-learn: ``p -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)``;
    the kernel (PyTorch's rule) adds its eps to ``sqrt(v)/sqrt(1-b2^t)``, so
    passing ``eps / sqrt(1-b2^t)`` gives the same update.
    """

    def __init__(self, params, learning_rate_init, beta_1, beta_2, epsilon, backend=None):
        super().__init__(params, learning_rate_init, beta_1, beta_2, epsilon)
        self.backend = backend

    def update_params(self, params, grads, weight_decays=None, checked=True):
        """``grads[i]`` (+ ``weight_decays[i] * params[i]``) is the gradient of ``params[i]``.

        ``checked=False`` (our own loop, whose buffers are known to fit) calls
        the backend kernel without the ops layer's argument checks.
        """
        self.t += 1
        bc2 = 1.0 - self.beta_2 ** self.t
        self.learning_rate = self.learning_rate_init * math.sqrt(bc2) / (1.0 - self.beta_1 ** self.t)
        eps = self.epsilon / math.sqrt(bc2)
        kernel = None if checked else resolve(self.backend).adam_step
        lr, b1, b2 = float(self.learning_rate_init), float(self.beta_1), float(self.beta_2)
        for i, (p, g) in enumerate(zip(params, grads)):
            wd = 0.0 if weight_decays is None else float(weight_decays[i])
            if kernel is not None:
                kernel(p, self.ms[i], self.vs[i], None, g, self.t, lr, b1, b2, eps, wd, False, False, False)
            else:
                ops.adam_step(p, g, self.ms[i], self.vs[i], step=self.t, lr=lr, beta1=b1, beta2=b2,
                              eps=eps, weight_decay=wd, backend=self.backend)


class _SGDKernel(SGDOptimizer):
    """scikit-learn's SGD (momentum, Nesterov, invscaling/adaptive) via ``ops.sgd_step``.

    scikit-learn keeps a velocity ``v = momentum * v - lr * g`` and adds it
    (Nesterov: adds ``momentum * v - lr * g``). The kernel (PyTorch's rule)
    keeps ``buf = momentum * buf + g`` and subtracts ``lr * buf`` (Nesterov:
    ``lr * (g + momentum * buf)``): the same steps with ``buf = -v / lr``.
    When the learning rate changes, buf is rescaled to keep that identity.
    """

    def __init__(self, params, learning_rate_init, lr_schedule, momentum, nesterov, power_t,
                 backend=None):
        super().__init__(params, learning_rate_init, lr_schedule, momentum, nesterov, power_t)
        self.backend = backend
        self.buffers = self.velocities  # zeros; scikit-learn's velocities are -lr * buffers

    def _set_lr(self, lr: float) -> None:
        old = self.learning_rate
        self.learning_rate = lr
        if self.momentum and lr != old and lr > 0:
            for b in self.buffers:
                b *= b.dtype.type(old / lr)

    def update_params(self, params, grads, weight_decays=None, checked=True):
        for i, (p, g) in enumerate(zip(params, grads)):
            wd = 0.0 if weight_decays is None else weight_decays[i]
            ops.sgd_step(p, g, self.buffers[i] if self.momentum else None, lr=self.learning_rate,
                         momentum=self.momentum, weight_decay=wd, nesterov=bool(self.nesterov),
                         backend=self.backend)

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self._set_lr(float(self.learning_rate_init) / (time_step + 1) ** self.power_t)

    def trigger_stopping(self, msg, verbose):
        lr = self.learning_rate
        stop = super().trigger_stopping(msg, verbose)  # may divide learning_rate by 5
        if not stop:
            new, self.learning_rate = self.learning_rate, lr
            self._set_lr(new)
        return stop

    @property
    def velocities_(self):
        """scikit-learn's velocities (``-lr * buf``)."""
        return [-self.learning_rate * b for b in self.buffers]


# --------------------------------------------------------------------------
# the training loop
# --------------------------------------------------------------------------

@contextlib.contextmanager
def _threads(n):
    if n is None:
        yield
        return
    prev = get_num_threads()
    set_num_threads(int(n))
    try:
        yield
    finally:
        set_num_threads(prev)


_EXTRA_CONSTRAINTS = {
    "backend": [None, StrOptions(set(available_backends()))],
    "n_threads": [None, Interval(Integral, 1, None, closed="left")],
    "dtype": [None, StrOptions({"float32", "float64"}), type],
}


# X is converted to the training dtype once per fit when the copy takes at most
# this much memory; larger inputs are converted minibatch by minibatch.
_CONVERT_ONCE_BYTES = 1 << 30


def _train_dtype(dtype, X):
    """The dtype to train in: ``dtype`` (None: X's own, as scikit-learn does)."""
    if dtype is None:
        return X.dtype
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: expected None, 'float32' or 'float64', got {dtype!r}")
    return dt


class _NNKMixin:
    """The minibatch loop of scikit-learn's ``_fit_stochastic``, on nnkernels' kernels."""

    def _fit(self, X, y, sample_weight=None, incremental=False):
        with _threads(self.n_threads):
            return super()._fit(X, y, sample_weight=sample_weight, incremental=incremental)

    def _validate_input(self, X, y, incremental, reset):
        X, checked = _convert_checked(self, X, y)
        # X (converted and checked for NaN/inf) and y (checked) are known to be
        # finite: scikit-learn's own check (a NumPy sum over all of X) is skipped
        with config_context(assume_finite=True) if checked else contextlib.nullcontext():
            X, y = super()._validate_input(X, y, incremental, reset)
        # The stochastic kernel loop converts each minibatch to the training
        # dtype as it gathers it (no full converted copy of X); lbfgs and
        # sparse inputs get X converted here.
        dt = _train_dtype(self.dtype, X)
        if X.dtype != dt and (self.solver == "lbfgs" or sparse.issparse(X)):
            X = X.astype(dt)
        return X, y

    def _initialize(self, y, layer_units, dtype):
        # coefs_/intercepts_ (and so training) in the training dtype, not X's
        super()._initialize(y, layer_units, _train_dtype(self.dtype, np.empty(0, dtype)))

    def _kernel_path_ok(self, X, sample_weight) -> bool:
        if sample_weight is not None or sparse.issparse(X):
            return False
        if getattr(self, "loss", "log_loss") not in ("log_loss", "squared_error"):
            return False
        arrays = list(self.coefs_) + list(self.intercepts_)
        dt = arrays[0].dtype
        return dt in (np.float32, np.float64) and all(
            a.dtype == dt and a.flags.c_contiguous and a.flags.writeable for a in arrays)

    def _fit_stochastic(self, X, y, sample_weight, activations, deltas, coef_grads,
                        intercept_grads, layer_units, incremental):
        if not self._kernel_path_ok(X, sample_weight):
            # scikit-learn's own loop, in the coefficients' dtype; the optimizer
            # (ours or theirs) only needs update_params
            dt = self.coefs_[0].dtype
            if X.dtype != dt:
                X = X.astype(dt)
                activations[0] = X
            return super()._fit_stochastic(X, y, sample_weight, activations, deltas, coef_grads,
                                           intercept_grads, layer_units, incremental)
        params = self.coefs_ + self.intercepts_
        if not incremental or not isinstance(getattr(self, "_optimizer", None), (_AdamKernel, _SGDKernel)):
            if self.solver == "sgd":
                self._optimizer = _SGDKernel(params, self.learning_rate_init, self.learning_rate,
                                             self.momentum, self.nesterovs_momentum, self.power_t,
                                             backend=self.backend)
            else:
                self._optimizer = _AdamKernel(params, self.learning_rate_init, self.beta_1,
                                              self.beta_2, self.epsilon, backend=self.backend)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            should_stratify = self._is_classifier() and self.n_outputs_ == 1
            X_train, X_val, y_train, y_val = train_test_split(
                X, y, random_state=self._random_state, test_size=self.validation_fraction,
                stratify=y if should_stratify else None)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            if self._is_classifier():
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_train, y_train, X_val, y_val = X, y, None, None

        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=int)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than "
                              "sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        dt = self.coefs_[0].dtype
        fused = _FusedStep.make(self, dt, batch_size)
        step = fused if fused is not None else _Step(self, dt, batch_size, y_train.shape[1])
        if X_train.dtype != dt and X_train.shape[0] * X_train.shape[1] * dt.itemsize <= _CONVERT_ONCE_BYTES:
            # one conversion for the whole fit, rather than one per minibatch and epoch
            X_train = _convert_rows(X_train, dt)
        X_train = np.ascontiguousarray(X_train)  # else any float dtype: batches are converted to dt
        if fused is not None:  # class indices (y_train is the label-binarized one-hot matrix)
            y_train = np.argmax(y_train, axis=1).astype(np.int64)
        else:
            y_train = np.ascontiguousarray(y_train, dtype=dt)
        # the fused step on X in the training dtype runs a whole epoch per call
        whole_epochs = fused is not None and X_train.dtype == dt
        try:
            self.n_iter_ = 0
            for it in range(self.max_iter):
                if self.shuffle:
                    sample_idx = _sk_shuffle(sample_idx, random_state=self._random_state)
                if whole_epochs:
                    accumulated_loss = fused.epoch(X_train, y_train, np.ascontiguousarray(sample_idx, np.int64))
                else:
                    accumulated_loss = 0.0
                    for batch_slice in gen_batches(n_samples, batch_size):
                        if self.shuffle:
                            idx = sample_idx[batch_slice]
                            xb, yb = step.gather(X_train, y_train, idx)
                        else:
                            xb, yb = step.slice(X_train, y_train, batch_slice)
                        batch_loss = step.run(xb, yb)
                        accumulated_loss += batch_loss * (batch_slice.stop - batch_slice.start)

                if fused is not None:
                    fused.sync()  # coefs_/intercepts_ and the optimizer state, for what follows
                self.n_iter_ += 1
                self.loss_ = accumulated_loss / X_train.shape[0]
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                self._update_no_improvement_count(early_stopping, X_val, y_val, None)
                self._optimizer.iteration_ends(self.t_)
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    if self._optimizer.trigger_stopping(msg, self.verbose):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                                  "optimization hasn't converged yet." % self.max_iter,
                                  ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            if fused is not None:
                fused.sync()
        if early_stopping:
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

    def _is_classifier(self) -> bool:
        return isinstance(self, _SkMLPClassifier)


def _take_rows(out, X, idx) -> None:
    """out[:] = X[idx] in out's dtype: the native row gather (threads over rows,
    converts on the way) for C-contiguous float X, NumPy otherwise."""
    if X.dtype in (np.float32, np.float64) and X.flags.c_contiguous:
        _C.take_rows(out, X, np.asarray(idx, dtype=np.int64))
    elif X.dtype == out.dtype:
        np.take(X, idx, axis=0, out=out)
    else:
        out[...] = X[idx]


# From this size the training copy of X is mapped with small pages (below).
_SMALL_PAGES_BYTES = 64 << 20


def _empty_small_pages(shape, dt) -> np.ndarray:
    """np.empty(shape, dt) for the training copy of X, in ordinary 4 KiB pages.

    NumPy advises its large allocations as transparent huge pages (THP). On
    the project's machine (a VM; THP enabled and defrag both "madvise") the
    first write to such memory often stalls, typically after the process has
    allocated and freed a lot (e.g. right after another fit), although
    /proc/buddyinfo showed gigabytes of free 2 MiB blocks: the cause (page
    compaction, or the hypervisor backing memory the guest never touched) is
    not pinned down. Measured, Fashion-MNIST's 60000 x 784 float64 X to
    float32 (188 MB): huge pages 28-53 ms when they came quickly, 140-460 ms
    when they stalled; small pages a steady 49-61 ms on 2 threads, 92 ms on
    1 (on a machine without the stalls, small pages cost those 20-40 ms more
    per fit). Gathering the
    shuffled minibatch rows from the copy costs the same either way (an
    epoch: 11.4-11.8 ms vs 10.5-11.6 ms). docs/dropin.md has the fit times."""
    dt = np.dtype(dt)
    nbytes = int(np.prod(shape)) * dt.itemsize
    if nbytes < _SMALL_PAGES_BYTES or not hasattr(mmap, "MADV_NOHUGEPAGE"):
        return np.empty(shape, dtype=dt)
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    except OSError:  # a kernel built without THP refuses the advice: its pages are small anyway
        pass
    return np.frombuffer(buf, dtype=dt).reshape(shape)  # the array keeps the mapping alive


def _convert_rows(X, dt):
    """X in dtype dt (the training copy made once per fit), converted by threads."""
    if X.dtype in (np.float32, np.float64) and X.flags.c_contiguous and X.ndim == 2:
        out = _empty_small_pages(X.shape, dt)
        _C.take_rows(out, X, None)
        return out
    return X.astype(dt)


def _convert_checked(est, X, y):
    """(X, True) with X converted to the training dtype and X and y checked for
    NaN/inf, or (X, False) untouched when that is not the fast case.

    scikit-learn checks a float X for NaN/inf by summing all of it (one
    single-threaded pass, 22 ms for Fashion-MNIST in float64), and the fit
    then converts X to float32 once (another pass). When X is a dense,
    C-contiguous float array in another dtype than the training one, both are
    done by one threaded pass (``take_rows(check_finite=True)``). With a NaN
    or inf in X, scikit-learn's own check runs on the original X and raises
    its usual error (ValueError naming X), before anything is fitted.
    """
    if (not isinstance(X, np.ndarray) or X.ndim != 2 or not X.flags.c_contiguous
            or X.dtype not in (np.float32, np.float64) or not isinstance(y, np.ndarray)):
        return X, False
    dt = _train_dtype(est.dtype, X)
    if X.dtype == dt or X.size * dt.itemsize > _CONVERT_ONCE_BYTES or X.shape[0] < 1:
        return X, False
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and not np.isfinite(y).all()):
        return X, False  # object/complex labels, or a NaN in y: scikit-learn's checks say so
    out = _empty_small_pages(X.shape, dt)
    if not _C.take_rows(out, X, None, check_finite=True):
        check_array(X, dtype=None, input_name="X", estimator=est)  # raises scikit-learn's error
        return X, False  # unreachable unless the two checks disagree: scikit-learn's path
    return out, True


class _Batches:
    """Minibatches in reused buffers: ``xbuf`` (rows of X in the training dtype
    ``dt``) and ``ybuf`` (rows of y), set up by the subclass."""

    dt: np.dtype
    xbuf: np.ndarray
    ybuf: np.ndarray

    def gather(self, X, y, idx):
        """Rows ``idx`` of X (converted to the training dtype) and of y."""
        n = len(idx)
        xb, yb = self.xbuf[:n], self.ybuf[:n]
        _take_rows(xb, X, idx)
        np.take(y, idx, axis=0, out=yb)
        return xb, yb

    def slice(self, X, y, sl):
        """Rows ``sl`` (no shuffling): views when X is in the training dtype already."""
        if X.dtype == self.dt:
            return X[sl], y[sl]
        xb = self.xbuf[:sl.stop - sl.start]
        xb[...] = X[sl]
        return xb, y[sl]


_FUSED_ACT = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid", "identity": "none"}


class _FusedStep(_Batches):
    """Minibatch steps of multiclass ``solver="adam"``: one native call per
    minibatch (:meth:`run`) or per epoch (:meth:`epoch`).

    The backend's fused MLP step (``mlp_step_plan``) does forward, softmax
    cross-entropy, backward and the update. It works on flat buffers in its
    own layout (W0 as (out, in), b0, W1, b1, ...; so ``coefs_[i]`` is
    ``W_i.T``), filled from ``coefs_``, ``intercepts_`` and the Adam moments
    ``ms``/``vs`` when the step is built; :meth:`sync` writes them back (after
    every epoch and at the end of the fit, so early stopping, validation
    scores, ``partial_fit`` and ``warm_start`` see the usual attributes).

    scikit-learn's semantics, per step t with batch size n:
    * L2 term: gradient ``alpha * W / n`` on the weights only = the kernel's
      coupled weight decay ``alpha / n`` with ``decay_bias=False``; its
      ``0.5 * alpha * sum(W**2) / n`` is added to the reported loss, from the
      weights before the update, as scikit-learn does;
    * Adam: scikit-learn's ``lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)``
      is the kernel's (PyTorch's) rule with eps replaced by ``eps / sqrt(1-b2^t)``
      (as :class:`_AdamKernel` does).
    """

    @classmethod
    def make(cls, est, dt, batch_size: int):
        """The fused step for ``est``, or None when its loop must run layer by layer."""
        if (est.solver != "adam" or est.out_activation_ != "softmax" or est.activation not in _FUSED_ACT
                or len(est.coefs_) > 32 or not isinstance(est._optimizer, _AdamKernel)):
            return None
        kernels = resolve(est.backend)
        if "mlp_step_plan" not in kernels.kernels:
            return None
        return cls(est, dt, batch_size, kernels)

    def __init__(self, est, dt, batch_size: int, kernels) -> None:
        self.est, self.dt = est, np.dtype(dt)
        coefs, L = est.coefs_, len(est.coefs_)
        dims = [coefs[0].shape[0]] + [c.shape[1] for c in coefs]
        w_off, b_off, off = [], [], 0
        for l in range(L):
            w_off.append(off)
            off += dims[l] * dims[l + 1]
            b_off.append(off)
            off += dims[l + 1]
        self.params, self.grads = np.empty(off, self.dt), np.zeros(off, self.dt)
        self.m, self.v = np.empty(off, self.dt), np.empty(off, self.dt)

        def views(flat):  # per layer: W (out, in) and b views of a flat buffer
            return ([flat[w:w + dims[l] * dims[l + 1]].reshape(dims[l + 1], dims[l])
                     for l, w in enumerate(w_off)],
                    [flat[b:b + dims[l + 1]] for l, b in enumerate(b_off)])

        self.layers = [views(a) for a in (self.params, self.m, self.v)]
        opt = est._optimizer
        for (W, b), src in zip(self.layers, ((est.coefs_, est.intercepts_), (opt.ms[:L], opt.ms[L:]),
                                             (opt.vs[:L], opt.vs[L:]))):
            for l in range(L):
                W[l][...] = src[0][l].T
                b[l][...] = src[1][l]
        self.w_flat = [self.params[w:w + dims[l] * dims[l + 1]] for l, w in enumerate(w_off)]
        acts = [_FUSED_ACT[est.activation]] * (L - 1) + ["none"]
        self.betas = (float(opt.beta_1), float(opt.beta_2))
        spec = MlpSpec(tuple(dims), tuple(acts), (0.0,) * L, tuple(w_off), tuple(b_off), self.params,
                       self.grads, (self.m, self.v), "cross_entropy", "adam", self._config(0.0, 1e-8))
        self.impl = kernels.mlp_step_plan(spec)
        self.batch_size = batch_size
        self.xbuf = np.empty((batch_size, dims[0]), self.dt)  # run(): the per-batch path
        self.ybuf = np.empty(batch_size, np.int64)

    def _config(self, weight_decay: float, eps: float) -> OptimConfig:
        return OptimConfig(weight_decay=weight_decay, beta1=self.betas[0], beta2=self.betas[1], eps=eps,
                           decay_bias=False)

    def run(self, xb, yb) -> float:
        est, opt = self.est, self.est._optimizer
        n = xb.shape[0]
        opt.t += 1
        t = opt.t
        bc2 = 1.0 - opt.beta_2 ** t
        opt.learning_rate = opt.learning_rate_init * math.sqrt(bc2) / (1.0 - opt.beta_1 ** t)
        self.impl.set_optimizer(self._config(est.alpha / n, opt.epsilon / math.sqrt(bc2)))
        l2 = 0.0
        for w in self.w_flat:  # the penalty of the weights this step starts from
            l2 += float(np.dot(w, w))
        loss = self.impl.step(xb, yb, float(opt.learning_rate_init), t)
        return loss + 0.5 * est.alpha * l2 / n

    def epoch(self, X, y, order) -> float:
        """The minibatches ``order[i:i + batch_size]`` of (X, y) in ONE native
        call (the plan's ``epoch``: it gathers the rows itself); X must be in
        the training dtype. Per batch the same hyper-parameters as :meth:`run`
        (computed here for all of them at once). Returns the sum over batches
        of (batch loss + L2 term) x batch rows, as the loop of :meth:`run`."""
        est, opt = self.est, self.est._optimizer
        bs = self.batch_size
        count = len(order)
        nb = -(-count // bs)
        rows = np.full(nb, float(bs))
        rows[-1] = count - (nb - 1) * bs
        t = opt.t + np.arange(1, nb + 1, dtype=np.float64)
        bc2 = 1.0 - opt.beta_2 ** t
        losses, sq = np.empty(nb), np.empty(nb)
        self.impl.epoch(X, y, order, bs, np.full(nb, float(opt.learning_rate_init)), est.alpha / rows,
                        opt.epsilon / np.sqrt(bc2), opt.t, losses, sq)
        opt.t += nb
        opt.learning_rate = opt.learning_rate_init * math.sqrt(bc2[-1]) / (1.0 - opt.beta_1 ** opt.t)
        total = 0.0
        for loss, l2, n in zip(losses.tolist(), sq.tolist(), rows.tolist()):  # in batch order, as run()
            total += (loss + 0.5 * est.alpha * l2 / n) * n
        return total

    def sync(self) -> None:
        """Write the weights and Adam moments back to coefs_, intercepts_ and ms/vs."""
        est, L = self.est, len(self.est.coefs_)
        opt = est._optimizer
        for (W, b), dst in zip(self.layers, ((est.coefs_, est.intercepts_), (opt.ms[:L], opt.ms[L:]),
                                             (opt.vs[:L], opt.vs[L:]))):
            for l in range(L):
                dst[0][l][...] = W[l].T
                dst[1][l][...] = b[l]


class _Step(_Batches):
    """One minibatch: forward, loss, backward and update, with preallocated buffers."""

    def __init__(self, est, dtype, batch_size: int, n_outputs: int) -> None:
        self.est = est
        self.dt = np.dtype(dtype)
        self.kernels = resolve(est.backend)
        self.coefs, self.intercepts = est.coefs_, est.intercepts_
        self.sizes = [self.coefs[0].shape[0]] + [c.shape[1] for c in self.coefs]
        self.activation = est.activation
        self.out = est.out_activation_
        self.multiclass = self.out == "softmax"
        self.loss_kernel_ok = "softmax_cross_entropy" in self.kernels.kernels
        self.xbuf = np.empty((batch_size, self.sizes[0]), self.dt)
        self.ybuf = np.empty((batch_size, n_outputs), self.dt)
        self.acts = [[np.empty((batch_size, s), self.dt) for s in self.sizes[1:]]]
        self.deltas = [np.empty((batch_size, s), self.dt) for s in self.sizes[1:]]
        self.gW = [np.empty_like(c) for c in self.coefs]
        self.gb = [np.empty_like(b) for b in self.intercepts]
        self.y_index = None

    def _bufs(self, n):
        return [a[:n] for a in self.acts[0]], [d[:n] for d in self.deltas]

    def run(self, xb, yb) -> float:
        est, k = self.est, self.kernels
        n = xb.shape[0]
        acts, deltas = self._bufs(n)
        last = len(self.coefs) - 1
        # forward: z = a @ W + b, activation in the GEMM epilogue when it is ReLU
        a = xb
        for i, (W, b) in enumerate(zip(self.coefs, self.intercepts)):
            hidden = i < last
            epi = "relu" if hidden and self.activation == "relu" else None
            k.gemm(acts[i], a, W, 1.0, 0.0, b, epi, 0.0)
            if hidden and self.activation == "tanh":
                np.tanh(acts[i], out=acts[i])
            elif hidden and self.activation == "logistic":
                expit(acts[i], out=acts[i])
            a = acts[i]
        # loss and output delta = d loss / d z_last (the 1/n of the mean included)
        loss = self._loss_and_delta(acts[last], yb, deltas[last])
        l2 = 0.0
        for W in self.coefs:
            w = W.reshape(-1)
            l2 += float(np.dot(w, w))
        loss += 0.5 * est.alpha * l2 / n
        # backward: gW = a.T @ delta, gb = sum(delta), delta_prev = delta @ W.T * act'(a)
        for i in range(last, -1, -1):
            a_in = xb if i == 0 else acts[i - 1]
            k.gemm(self.gW[i], a_in.T, deltas[i], 1.0, 0.0, None, None, 0.0)
            k.colsum(self.gb[i], deltas[i], False)
            if i > 0:
                d = deltas[i - 1]
                k.gemm(d, deltas[i], self.coefs[i].T, 1.0, 0.0, None, None, 0.0)
                self._derivative(acts[i - 1], d)
        # update: weight decay alpha/n on the coefficients is the L2 term's gradient
        wd = est.alpha / n
        est._optimizer.update_params(self.coefs + self.intercepts, self.gW + self.gb,
                                     [wd] * len(self.coefs) + [0.0] * len(self.intercepts),
                                     checked=False)
        return loss

    def _derivative(self, z, d):
        """d *= act'(.) given the activation's output z (scikit-learn's DERIVATIVES)."""
        if self.activation == "relu":
            np.multiply(d, z > 0, out=d)
        elif self.activation == "tanh":
            d *= 1 - z * z
        elif self.activation == "logistic":
            d *= z * (1 - z)

    def _loss_and_delta(self, z, yb, delta) -> float:
        n = z.shape[0]
        if self.multiclass and self.loss_kernel_ok:
            target = np.argmax(yb, axis=1)
            loss, grad = ops.softmax_cross_entropy(z, target, reduction="mean",
                                                   backend=self.est.backend)
            np.copyto(delta, grad)
            return float(loss)
        eps = np.finfo(self.dt).eps
        if self.multiclass:
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
            p = np.clip(z, eps, 1 - eps)
            loss = -float(np.sum(yb * np.log(p))) / n
        elif self.out == "logistic":
            expit(z, out=z)
            p = np.clip(z, eps, 1 - eps)
            loss = -float(np.sum(yb * np.log(p) + (1 - yb) * np.log(1 - p))) / n
        else:  # identity, squared error
            loss = 0.5 * float(np.mean((yb - z) ** 2))
        np.subtract(z, yb, out=delta)
        delta *= self.dt.type(1.0 / n)
        return loss


class MLPClassifier(_NNKMixin, _SkMLPClassifier):
    """scikit-learn's ``MLPClassifier`` (same parameters and behaviour) trained by nnkernels.

    Extra parameters: ``backend`` ("cpp", "numba", "numpy"; None: nnkernels'
    current backend), ``n_threads`` (None: nnkernels' current count) and
    ``dtype`` ("float32" (default) or "float64": the training precision;
    None: the input's dtype, as scikit-learn).
    """

    _parameter_constraints: dict = {**_SkMLPClassifier._parameter_constraints, **_EXTRA_CONSTRAINTS}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend=None, n_threads=None, dtype="float32"):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun)
        self.backend = backend
        self.n_threads = n_threads
        self.dtype = dtype


class MLPRegressor(_NNKMixin, _SkMLPRegressor):
    """scikit-learn's ``MLPRegressor`` (same parameters and behaviour) trained by nnkernels.

    Extra parameters: ``backend``, ``n_threads`` and ``dtype`` as in :class:`MLPClassifier`.
    ``loss="poisson"`` runs scikit-learn's own loop.
    """

    _parameter_constraints: dict = {**_SkMLPRegressor._parameter_constraints, **_EXTRA_CONSTRAINTS}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend=None, n_threads=None, dtype="float32"):
        super().__init__(
            loss=loss, hidden_layer_sizes=hidden_layer_sizes, activation=activation,
            solver=solver, alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun)
        self.backend = backend
        self.n_threads = n_threads
        self.dtype = dtype
