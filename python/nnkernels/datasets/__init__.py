"""Datasets for training MLPs: scikit-learn's 8x8 digits, (Fashion-)MNIST and toy 2-D sets.

Every loader returns a :class:`Dataset`: float32 features scaled to [0, 1]
(one row per sample), int64 labels, a fixed train/test split and the list of
class names::

    ds = nnkernels.datasets.load_digits()
    X_train, y_train = ds.train
    X_test, y_test = ds.test
    ds.classes            # ['0', '1', ..., '9']

Fashion-MNIST and MNIST are read from the four IDX files of the original
distribution (gzipped or not). Without ``path`` they are searched for in
``$NNKERNELS_DATA/<name>``, ``~/.cache/nnkernels/<name>`` and
``/usr/share/datasets/<name>`` (Debian's ``dataset-fashion-mnist`` package).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .fetch import DownloadError, download_file, sha256_of
from .idx import IDXFormatError, read_idx, write_idx

__all__ = [
    "DataNotFoundError", "Dataset", "DownloadError", "IDXFormatError", "MNIST_MIRRORS",
    "cache_dir", "download_file", "load_digits", "load_fashion_mnist", "load_mnist", "make_moons",
    "make_spirals", "make_xor", "read_idx", "sha256_of", "write_idx",
]


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are in none of the places searched (the message says where and how to get them)."""


@dataclass(frozen=True, repr=False)
class Dataset:
    """A classification dataset with a fixed train/test split.

    ``X_*`` are float32 of shape (n, n_features) with values in [0, 1];
    ``y_*`` are int64 class indices into ``classes``. ``image_shape`` is the
    (height, width) of one sample for image datasets, else None.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list = field(default_factory=list)
    image_shape: tuple | None = None

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        return self.X_train, self.y_train

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self.X_test, self.y_test

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def split_validation(self, fraction: float, seed: int = 0):
        """Split the training set into ((X_train, y_train), (X_val, y_val)), stratified by class.

        ``fraction`` of every class (rounded) goes to validation; 0 gives an
        empty validation set. The test set is never touched.
        """
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"fraction: expected a number in [0, 1), got {fraction}")
        rng = np.random.default_rng(seed)
        val_idx = []
        for c in np.unique(self.y_train):
            idx = np.flatnonzero(self.y_train == c)
            rng.shuffle(idx)
            val_idx.append(idx[: int(round(fraction * len(idx)))])
        val = np.sort(np.concatenate(val_idx)) if val_idx else np.zeros(0, np.int64)
        keep = np.ones(len(self.y_train), dtype=bool)
        keep[val] = False
        return ((self.X_train[keep], self.y_train[keep]),
                (self.X_train[val], self.y_train[val]))

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
                f"features={self.n_features}, classes={self.n_classes})")


def _check(ds: Dataset) -> Dataset:
    for part in ("train", "test"):
        X, y = getattr(ds, part)
        assert X.dtype == np.float32 and X.ndim == 2 and X.flags.c_contiguous, part
        assert y.dtype == np.int64 and y.shape == (X.shape[0],), part
    return ds


def _stratified_test_split(X, y, test_size: float, seed: int):
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test.append(idx[: int(round(test_size * len(idx)))])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(y)), test)
    return X[train], y[train], X[test], y[test]


# --------------------------------------------------------------------------- digits

def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (data 0..16, target). Reads the CSV that scikit-learn
    bundles directly (importing sklearn.datasets costs ~2 s); falls back to its loader."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin:
        csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            table = np.loadtxt(csv, delimiter=",", dtype=np.float32)
            if table.shape == (1797, 65):
                return table[:, :64], table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits as _sk_load_digits

    d = _sk_load_digits()
    return d.data.astype(np.float32), d.target.astype(np.int64)


def load_digits(test_size: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1797 samples, 64 features, 10 classes).

    Pixel values 0..16 are scaled to [0, 1]. The split is stratified and fixed
    by ``seed`` (default: 1438 train / 359 test).
    """
    data, y = _digits_arrays()
    X = np.ascontiguousarray(data / np.float32(16.0), dtype=np.float32)
    Xtr, ytr, Xte, yte = _stratified_test_split(X, y, test_size, seed)
    return _check(Dataset("digits", Xtr, ytr, Xte, yte, [str(i) for i in range(10)], (8, 8)))


# --------------------------------------------------------------------------- IDX datasets

IDX_FILES = {  # role -> file stem of the original distribution
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

#: Base URLs tried in order by ``load_mnist(download=True)``; the environment
#: variable NNKERNELS_MNIST_MIRRORS (URLs separated by spaces or commas) replaces it.
MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

#: SHA-256 of the four gzipped MNIST files.
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

_SYSTEM_DATA = Path("/usr/share/datasets")


def cache_dir() -> Path:
    """nnkernels' download cache: ``$XDG_CACHE_HOME/nnkernels`` (default ``~/.cache/nnkernels``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nnkernels"


def _idx_file(directory: Path, stem: str) -> Path | None:
    """The file for ``stem`` in ``directory``: plain or .gz, '-' or '.' before 'idx'."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem + ".gz", stem, dotted + ".gz", dotted):
        p = directory / name
        if p.is_file():
            return p
    return None


def _find_idx_dir(name: str, path) -> tuple[dict | None, list[str]]:
    """Search for the four IDX files; return ({role: file} or None, [what was seen where])."""
    if path is not None:
        # An explicit path is the only place looked at (the directory itself or
        # path/<name>), so a typo never silently falls back to other data.
        candidates = [Path(path).expanduser(), Path(path).expanduser() / name]
    else:
        candidates = []
        if os.environ.get("NNKERNELS_DATA"):
            candidates.append(Path(os.environ["NNKERNELS_DATA"]).expanduser() / name)
        candidates += [cache_dir() / name, _SYSTEM_DATA / name]
    seen = []
    for d in candidates:
        if not d.is_dir():
            seen.append(f"{d} (no such directory)")
            continue
        files = {role: _idx_file(d, stem) for role, stem in IDX_FILES.items()}
        missing = [IDX_FILES[r] for r, f in files.items() if f is None]
        if not missing:
            return files, seen
        seen.append(f"{d} (missing {', '.join(missing)})")
    return None, seen


def _load_idx_dataset(name: str, files: dict, classes: list) -> Dataset:
    parts = {}
    for split in ("train", "test"):
        img_path, lab_path = files[f"{split}_images"], files[f"{split}_labels"]
        images, labels = read_idx(img_path), read_idx(lab_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise IDXFormatError(f"{img_path}: expected uint8 images of shape (n, rows, cols), "
                                 f"got {images.dtype} {images.shape}")
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise IDXFormatError(f"{lab_path}: expected uint8 labels of shape (n,), "
                                 f"got {labels.dtype} {labels.shape}")
        if len(images) != len(labels):
            raise IDXFormatError(f"{img_path} has {len(images)} images but {lab_path} has "
                                 f"{len(labels)} labels")
        if labels.size and labels.max() >= len(classes):
            raise IDXFormatError(f"{lab_path}: label {labels.max()} out of range "
                                 f"(expected 0..{len(classes) - 1})")
        X = images.reshape(len(images), -1).astype(np.float32)
        X *= np.float32(1.0 / 255.0)
        parts[split] = (X, labels.astype(np.int64), images.shape[1:])
    if parts["train"][2] != parts["test"][2]:
        raise IDXFormatError(f"{name}: train images are {parts['train'][2]} but test images "
                             f"are {parts['test'][2]}")
    return _check(Dataset(name, parts["train"][0], parts["train"][1], parts["test"][0],
                          parts["test"][1], list(classes), tuple(parts["train"][2])))


def load_fashion_mnist(path: str | os.PathLike | None = None) -> Dataset:
    """Zalando's Fashion-MNIST (60000 train / 10000 test 28x28 images, 10 classes).

    Reads the four IDX files (``train-images-idx3-ubyte[.gz]`` etc.) from
    ``path`` if given (or ``path/fashion-mnist``), else from the first of
    ``$NNKERNELS_DATA/fashion-mnist``, ``~/.cache/nnkernels/fashion-mnist`` and
    ``/usr/share/datasets/fashion-mnist`` that has all four.
    """
    files, seen = _find_idx_dir("fashion-mnist", path)
    if files is None:
        raise DataNotFoundError(
            "Fashion-MNIST not found; looked in: " + "; ".join(seen) + ". Get it with "
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four files "
            "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
            "t10k-labels-idx1-ubyte.gz from https://github.com/zalandoresearch/fashion-mnist "
            f"into {cache_dir() / 'fashion-mnist'} (or pass path= / set NNKERNELS_DATA)")
    return _load_idx_dataset("fashion-mnist", files, FASHION_MNIST_CLASSES)


def _mirrors(mirrors: Sequence[str] | None) -> list[str]:
    if mirrors is not None:
        return list(mirrors)
    env = os.environ.get("NNKERNELS_MNIST_MIRRORS")
    if env:
        return env.replace(",", " ").split()
    return list(MNIST_MIRRORS)


def load_mnist(path: str | os.PathLike | None = None, download: bool = False, *,
               mirrors: Sequence[str] | None = None, progress: bool = True) -> Dataset:
    """LeCun's MNIST handwritten digits (60000 train / 10000 test 28x28 images).

    Without ``download`` this searches like :func:`load_fashion_mnist` (with
    ``mnist`` in place of ``fashion-mnist``). With ``download=True`` the four
    gzipped files are fetched into ``path`` (default ``~/.cache/nnkernels/mnist``)
    from the first working mirror (``mirrors``, else $NNKERNELS_MNIST_MIRRORS,
    else :data:`MNIST_MIRRORS`), each verified by SHA-256 before it is renamed
    into place; files already there with the right checksum are kept.
    """
    if download:
        dest = Path(path).expanduser() if path is not None else cache_dir() / "mnist"
        urls = _mirrors(mirrors)
        for filename, sha in MNIST_SHA256.items():
            download_file(filename, dest, urls, sha, progress=progress)
        files = {role: dest / (stem + ".gz") for role, stem in IDX_FILES.items()}
    else:
        files, seen = _find_idx_dir("mnist", path)
        if files is None:
            raise DataNotFoundError(
                "MNIST not found; looked in: " + "; ".join(seen) + ". Download it with "
                "nnkernels.datasets.load_mnist(download=True) or "
                "`nnkernels train --dataset mnist --download` (fetches into "
                f"{cache_dir() / 'mnist'}), or pass path= / set NNKERNELS_DATA")
    return _load_idx_dataset("mnist", files, [str(i) for i in range(10)])


# --------------------------------------------------------------------------- toy 2-D sets

def _toy(name, X, y, classes, test_size, rng) -> Dataset:
    perm = rng.permutation(len(y))
    X, y = X[perm], y[perm]
    lo, hi = X.min(axis=0), X.max(axis=0)
    X = ((X - lo) / np.where(hi > lo, hi - lo, 1.0)).astype(np.float32)
    n_test = int(round(test_size * len(y)))
    return _check(Dataset(name, np.ascontiguousarray(X[n_test:]), y[n_test:].astype(np.int64),
                          np.ascontiguousarray(X[:n_test]), y[:n_test].astype(np.int64), classes))


def _check_toy_args(n_samples, noise, test_size, min_samples=2):
    if int(n_samples) < min_samples:
        raise ValueError(f"n_samples: expected at least {min_samples}, got {n_samples}")
    if noise < 0:
        raise ValueError(f"noise: expected >= 0, got {noise}")
    if not 0.0 <= test_size < 1.0:
        raise ValueError(f"test_size: expected a number in [0, 1), got {test_size}")


def make_moons(n_samples: int = 1000, noise: float = 0.1, test_size: float = 0.2,
               seed: int = 0) -> Dataset:
    """Two interleaving half circles (2 features, 2 classes), Gaussian noise of std ``noise``."""
    _check_toy_args(n_samples, noise, test_size)
    rng = np.random.default_rng(seed)
    n0 = n_samples // 2
    n1 = n_samples - n0
    t0 = rng.uniform(0.0, np.pi, n0)
    t1 = rng.uniform(0.0, np.pi, n1)
    upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
    lower = np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
    X = np.concatenate([upper, lower]) + noise * rng.standard_normal((n_samples, 2))
    y = np.concatenate([np.zeros(n0), np.ones(n1)])
    return _toy("moons", X, y, ["upper", "lower"], test_size, rng)


def make_xor(n_samples: int = 1000, noise: float = 0.05, test_size: float = 0.2,
             seed: int = 0) -> Dataset:
    """Points uniform in the square [-1, 1]^2; class 1 where x and y have opposite signs.

    Gaussian noise of std ``noise`` is added after labelling, so points near
    the axes can cross over.
    """
    _check_toy_args(n_samples, noise, test_size)
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n_samples, 2))
    y = ((X[:, 0] > 0) != (X[:, 1] > 0)).astype(np.int64)
    X = X + noise * rng.standard_normal(X.shape)
    return _toy("xor", X, y, ["same sign", "opposite sign"], test_size, rng)


def make_spirals(n_samples: int = 1500, n_classes: int = 3, noise: float = 0.2,
                 turns: float = 1.0, test_size: float = 0.2, seed: int = 0) -> Dataset:
    """``n_classes`` interleaved spiral arms (2 features); ``noise`` is the angle jitter in radians."""
    _check_toy_args(n_samples, noise, test_size, min_samples=n_classes)
    if int(n_classes) < 2:
        raise ValueError(f"n_classes: expected at least 2, got {n_classes}")
    rng = np.random.default_rng(seed)
    sizes = np.full(n_classes, n_samples // n_classes)
    sizes[: n_samples % n_classes] += 1
    Xs, ys = [], []
    for k, n in enumerate(sizes):
        r = rng.uniform(0.05, 1.0, n)
        theta = 2 * np.pi * k / n_classes + 2 * np.pi * turns * r + noise * rng.standard_normal(n)
        Xs.append(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1))
        ys.append(np.full(n, k))
    return _toy("spirals", np.concatenate(Xs), np.concatenate(ys),
                [f"arm {k}" for k in range(n_classes)], test_size, rng)
