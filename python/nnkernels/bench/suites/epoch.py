"""One training epoch of the MLP (ReLU, cross-entropy, Adam lr 1e-3,
mini-batches of 128, shuffled) on Fashion-MNIST's 60,000 training images
(from /usr/share/datasets/fashion-mnist; scikit-learn's 8x8 digits if that
is absent, with a 64-input MLP), end to end from NumPy arrays.

Ours: ``nnkernels.train.fit(..., epochs=1)`` and, if present,
``nnkernels.sklearn.MLPClassifier.partial_fit``. Peers: a plain PyTorch
loop (index a shuffled permutation, step), scikit-learn's MLPClassifier
(``partial_fit``: one pass over the data in mini-batches). Each repeat is
one more epoch of the same model. Reported as time per epoch and samples/s.
"""

from __future__ import annotations

import gzip
import inspect
import os

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
    return out
