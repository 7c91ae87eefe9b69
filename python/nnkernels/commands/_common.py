"""Pieces shared by ``nnkernels train``, ``evaluate`` and ``predict``: dataset
choice and loading, backend/thread set-up, one-line argument errors, and the
confusion-matrix report."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import numpy as np

from ..cli import UsageError

# name -> (loader name in nnkernels.datasets, takes a data dir)
DATASETS = {
    "digits": ("load_digits", False),
    "fashion-mnist": ("load_fashion_mnist", True),
    "mnist": ("load_mnist", True),
    "moons": ("make_moons", False),
    "xor": ("make_xor", False),
    "spirals": ("make_spirals", False),
}
BACKENDS = ("cpp", "numba", "numpy")


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make argparse's own errors (bad number, unknown choice) one line on stderr and exit 2,
    like nnkernels.cli.UsageError, instead of the full usage text."""
    prog = parser.prog

    def error(message: str):
        parser.exit(2, f"{prog}: error: {message} (see {prog} --help)\n")

    parser.error = error


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="digits", choices=list(DATASETS), metavar="NAME",
                        help="digits (scikit-learn 8x8, default), fashion-mnist, mnist, "
                             "or the 2-D toy sets moons, xor, spirals")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="directory with the four IDX files of (fashion-)mnist (default: "
                             "search $NNKERNELS_DATA/<name>, ~/.cache/nnkernels/<name>, "
                             "/usr/share/datasets/<name>)")
    parser.add_argument("--download", action="store_true",
                        help="mnist only: fetch the files (SHA-256 verified) into --data-dir or "
                             "~/.cache/nnkernels/mnist")


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="cpp", metavar="NAME",
                        help="kernels: cpp (C++/OpenMP, default), numba or numpy")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="threads for the kernels (default: all cores or $OMP_NUM_THREADS)")


def load_dataset(args, seed: int = 0):
    """The dataset named by ``args.dataset``; user-fixable problems become UsageError."""
    from .. import datasets

    name = args.dataset
    loader_name, takes_dir = DATASETS[name]
    if args.data_dir is not None and not takes_dir:
        raise UsageError(f"--data-dir only applies to fashion-mnist and mnist, not {name}")
    if getattr(args, "download", False) and name != "mnist":
        raise UsageError(f"--download only applies to mnist, not {name}")
    loader = getattr(datasets, loader_name)
    try:
        if name == "mnist":
            return loader(args.data_dir, download=getattr(args, "download", False))
        if takes_dir:
            return loader(args.data_dir)
        if name in ("moons", "xor", "spirals"):
            return loader(seed=seed)
        return loader()
    except (datasets.DataNotFoundError, datasets.IDXFormatError, datasets.DownloadError) as exc:
        raise UsageError(str(exc)) from None
    except PermissionError as exc:
        raise UsageError(f"cannot read the data: {exc}") from None


def setup_runtime(args) -> None:
    """Select the backend and thread count given on the command line."""
    import nnkernels

    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {args.threads}")
        nnkernels.set_num_threads(args.threads)
    nnkernels.set_backend(args.backend)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """cm[i, j] = number of samples of true class i predicted as j."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def format_confusion_matrix(cm: np.ndarray, classes: list) -> str:
    """Rows: true class (index and name), columns: predicted class index."""
    n = len(classes)
    width = max(4, len(str(cm.max())) + 1)
    names = [f"{i:>2}" if str(c) == str(i) else f"{i:>2} {c}" for i, c in enumerate(classes)]
    label_w = max(len(s) for s in names)
    head = " " * label_w + " " + "".join(f"{j:>{width}}" for j in range(n))
    lines = ["confusion matrix (rows: true class, columns: predicted class):", head]
    for i in range(n):
        lines.append(f"{names[i]:<{label_w}} " + "".join(f"{v:>{width}}" for v in cm[i]))
    return "\n".join(lines)


def eprint(*a, **k) -> None:
    print(*a, file=sys.stderr, **k)


@contextlib.contextmanager
def exit_quietly_on_broken_pipe():
    """``nnkernels train | head``: stop without a traceback when the reader goes away."""
    try:
        yield
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail
        raise SystemExit(141) from None


def load_model(path: str):
    """(model, metadata) from a file written by ``nnkernels train --save``; the metadata
    has "dataset" and "classes" (a list) when the file records them."""
    import json

    import nnkernels

    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such model file")
    try:
        model = nnkernels.load(path)
        meta = _safetensors_metadata(path)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    meta = dict(meta or {})
    if "classes" in meta:
        try:
            meta["classes"] = [str(c) for c in json.loads(meta["classes"])]
        except (ValueError, TypeError):
            del meta["classes"]
    return model, meta


def _safetensors_metadata(path: str) -> dict:
    import json
    import struct

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return header.get("__metadata__") or {}
