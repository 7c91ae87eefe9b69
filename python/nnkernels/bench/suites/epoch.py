"""One training epoch of the MLP (ReLU, cross-entropy, Adam lr 1e-3,
mini-batches of 128, shuffled) on Fashion-MNIST's 60,000 training images
(from /usr/share/datasets/fashion-mnist; scikit-learn's 8x8 digits if that
is absent, with a 64-input MLP), end to end from NumPy arrays.

Ours: ``nnkernels.train.fit(..., epochs=1)`` and, if present,
``nnkernels.sklearn.MLPClassifier.partial_fit``. Peers: a plain PyTorch
loop (index a shuffled permutation, step), scikit-learn's MLPClassifier
(``partial_fit``: one pass over the data in mini-batches). Each repeat is
one more epoch of the same model. Reported as time per epoch and samples/s.

A second case fits ``MLPClassifier`` from scratch with scikit-learn's
defaults (one hidden layer of 100 ReLUs, Adam, batches of 200, L2 alpha 1e-4)
and ``max_iter=20, random_state=0`` on the same images converted to float64
(the dtype images divided by 255.0 usually arrive in), both libraries; each
timed call is one whole ``fit`` (3 of them, after an untimed calibration fit)
and the note gives the test accuracy on the 10,000 test images.
"""

from __future__ import annotations

import gzip
import inspect
import os
import warnings

import numpy as np

from ..core import NotAvailable, Task, ours
from ..timing import Budget
from . import _mlp
from ._util import ours_attr

NAME = "epoch"
PEERS = ("torch", "sklearn")
BATCH = 128
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
QUICK_SAMPLES = 2000
EPOCH_BUDGET = Budget(target=1e-6, repeats=3, min_repeats=3, max_time=1e-6, warmup=1, slow=120.0)
EPOCH_BUDGET_QUICK = Budget(target=1e-6, repeats=2, min_repeats=2, max_time=1e-6, warmup=1, slow=2.0)
FIT_EPOCHS = 20
FIT_EPOCHS_QUICK = 2
QUICK_TEST_SAMPLES = 500
# a fit is minutes of work for scikit-learn: no warm-up call (each fit starts
# from scratch anyway), the calibration call and 3 timed fits
FIT_BUDGET = Budget(target=1e-6, repeats=3, min_repeats=3, max_time=1e-6, warmup=0, slow=600.0)
FIT_BUDGET_QUICK = Budget(target=1e-6, repeats=1, min_repeats=1, max_time=1e-6, warmup=0, slow=2.0)


def _idx(path: str, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def load_data(directory: str = FASHION_DIR):
    """(X float32 in [0, 1], y int64, name)."""
    images = os.path.join(directory, "train-images-idx3-ubyte.gz")
    labels = os.path.join(directory, "train-labels-idx1-ubyte.gz")
    if os.path.exists(images) and os.path.exists(labels):
        x = _idx(images, 16).reshape(-1, 784).astype(np.float32) / np.float32(255.0)
        y = _idx(labels, 8).astype(np.int64)
        return x, y, "fashion-mnist"
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64), "digits"


def load_test(directory: str = FASHION_DIR):
    """The 10,000 test images (X float32 in [0, 1], y int64), or None."""
    images = os.path.join(directory, "t10k-images-idx3-ubyte.gz")
    labels = os.path.join(directory, "t10k-labels-idx1-ubyte.gz")
    if not (os.path.exists(images) and os.path.exists(labels)):
        return None
    x = _idx(images, 16).reshape(-1, 784).astype(np.float32) / np.float32(255.0)
    return x, _idx(labels, 8).astype(np.int64)


def _classifier_fit(cls, x, y, x_test, y_test, epochs):
    """(one whole fit from scratch, its note: test accuracy and epochs run)."""
    from sklearn.exceptions import ConvergenceWarning

    last = {}

    def fit():
        clf = cls(max_iter=epochs, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x, y)
        last["clf"] = clf

    def note():
        clf = last["clf"]
        return f"test accuracy {100 * clf.score(x_test, y_test):.2f}%, {clf.n_iter_} epochs"
    return fit, note


def _fit_kwargs(fit, **wanted):
    params = inspect.signature(fit).parameters
    return {k: v for k, v in wanted.items() if k in params}


def _ours_fit(x, y, sizes):
    fit = ours_attr("train", "fit")
    MLP = ours_attr("nn", "MLP")
    Adam = ours_attr("optim", "Adam")
    CrossEntropyLoss = ours_attr("nn", "CrossEntropyLoss")
    model = MLP(list(sizes), activation="relu")
    opt = Adam(model.parameters(), lr=_mlp.LR)
    kwargs = _fit_kwargs(fit, epochs=1, batch_size=BATCH, shuffle=True, progress=False, verbose=False)
    loss_fn = CrossEntropyLoss()
    how = "fused train_step" if hasattr(model, "train_step") else "layer by layer"
    return (lambda: fit(model, loss_fn, opt, (x, y), **kwargs)), how


def _ours_sklearn(x, y, sizes):
    MLPClassifier = ours_attr("sklearn", "MLPClassifier")
    clf = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), batch_size=BATCH,
                        learning_rate_init=_mlp.LR, random_state=0)
    if not hasattr(clf, "partial_fit"):
        raise NotAvailable("nnkernels.sklearn.MLPClassifier has no partial_fit")
    classes = np.unique(y)
    return lambda: clf.partial_fit(x, y, classes=classes)


def _sklearn(x, y, sizes):
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), solver="adam", batch_size=BATCH,
                        learning_rate_init=_mlp.LR, random_state=0)
    classes = np.unique(y)
    return lambda: clf.partial_fit(x, y, classes=classes)


def _torch(x, y, sizes):
    import torch

    torch.manual_seed(0)
    model = _mlp.torch_model(sizes)
    opt = torch.optim.Adam(model.parameters(), lr=_mlp.LR)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    n = x.shape[0]
    gen = torch.Generator().manual_seed(0)

    def epoch():
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return epoch


def _setup_fit(impl: str, data: dict, epochs: int):
    def make():
        if impl.startswith("nnk:"):
            cls = ours_attr("sklearn", "MLPClassifier")
        elif impl == "sklearn":
            from sklearn.neural_network import MLPClassifier as cls
        else:
            raise ValueError(impl)
        return _classifier_fit(cls, data["x64"], data["y"], data["x_test"], data["y_test"], epochs)
    return make


def _setup(impl: str, data: dict, sizes):
    def make():
        x, y = data["x"], data["y"]
        if impl.endswith("-sklearn") and impl.startswith("nnk:"):
            return _ours_sklearn(x, y, sizes)
        if impl.startswith("nnk:"):
            return _ours_fit(x, y, sizes)
        if impl == "torch":
            return _torch(x, y, sizes)
        if impl == "sklearn":
            return _sklearn(x, y, sizes)
        raise ValueError(impl)
    return make


def tasks(cfg) -> list:
    x, y, name = load_data()
    if cfg.quick and x.shape[0] > QUICK_SAMPLES:
        x, y = x[:QUICK_SAMPLES], y[:QUICK_SAMPLES]
    sizes = (x.shape[1],) + tuple(_mlp.SIZES[1:])
    data = {"x": np.ascontiguousarray(x), "y": y}
    n = x.shape[0]
    impls = [ours(b) for b in cfg.backends] + [ours(cfg.backends[0]) + "-sklearn"] + list(PEERS)
    out = []
    for t in cfg.threads:
        for impl in impls:
            backend = impl[4:].split("-")[0] if impl.startswith("nnk:") else None
            out.append(Task(NAME, f"{name} {n} samples", impl, t, _setup(impl, data, sizes),
                            flops=_mlp.step_flops(n, sizes), samples=n, roof="fma",
                            params={"dataset": name, "samples": n, "batch": BATCH},
                            budget=EPOCH_BUDGET_QUICK if cfg.quick else EPOCH_BUDGET, backend=backend))
    test = load_test() if name == "fashion-mnist" else None
    if test is None:  # digits: the last fifth is the test set
        cut = n - n // 5
        x, y, test = x[:cut], y[:cut], (x[cut:], y[cut:])
    x_test, y_test = test
    if cfg.quick and x_test.shape[0] > QUICK_TEST_SAMPLES:
        x_test, y_test = x_test[:QUICK_TEST_SAMPLES], y_test[:QUICK_TEST_SAMPLES]
    epochs = FIT_EPOCHS_QUICK if cfg.quick else FIT_EPOCHS
    fit_data = {"x64": x.astype(np.float64), "y": y, "x_test": x_test.astype(np.float64), "y_test": y_test}
    fit_sizes = (x.shape[1], 100, int(y.max()) + 1)
    m = x.shape[0]
    case = f"{name} MLPClassifier().fit, max_iter={epochs}, X float64"
    for t in cfg.threads:
        for impl in (ours(cfg.backends[0]) + "-sklearn", "sklearn"):
            backend = impl[4:].split("-")[0] if impl.startswith("nnk:") else None
            out.append(Task(NAME, case, impl, t, _setup_fit(impl, fit_data, epochs),
                            flops=epochs * _mlp.step_flops(m, fit_sizes), samples=epochs * m, roof="fma",
                            params={"dataset": name, "samples": m, "batch": min(200, m), "epochs": epochs},
                            budget=FIT_BUDGET_QUICK if cfg.quick else FIT_BUDGET, backend=backend))
    return out
