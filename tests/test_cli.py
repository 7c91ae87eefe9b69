"""`nnkernels train / evaluate / predict`: in-process through nnkernels.cli.main,
plus one subprocess smoke test. Few epochs, small data: fast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnkernels.cli import main
from nnkernels.datasets import write_idx

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(capsys, *argv, match: str):
    with_exit = None
    try:
        rc, out, err = run_cli(capsys, *argv)
    except SystemExit as exc:  # argparse's own errors (bad number, unknown choice)
        with_exit = exc.code
        out, err = capsys.readouterr()
        rc = with_exit
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]
    return lines[0]


def write_fake_fashion(d: Path, n_train=200, n_test=50, seed=0):
    """Tiny 28x28 'Fashion-MNIST' whose class is readable from the image."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):  # a bright bar at a class-dependent row
            images[i, 2 + 2 * c: 4 + 2 * c, 4:24] = 250
        write_idx(d / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", labels)


# --------------------------------------------------------------------------- argument errors

@pytest.mark.parametrize("argv, match", [
    (["--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["--lr", "-0.1"], "--lr must be a positive number"),
    (["--lr", "0"], "--lr must be a positive number"),
    (["--lr", "fast"], "invalid float value: 'fast'"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--hidden", "256,abc"], "--hidden: cannot parse '256,abc'"),
    (["--hidden", "256,,128"], "--hidden: cannot parse"),
    (["--hidden", "256,0"], "layer sizes must be positive"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--epochs", "1.5"], "invalid int value"),
    (["--batch-size", "-4"], "--batch-size must be at least 1"),
    (["--val-split", "1"], "--val-split must be in [0, 1)"),
    (["--dropout", "1.0"], "--dropout must be in [0, 1)"),
    (["--momentum", "0.9", "--optimizer", "adam"], "--momentum applies to sgd and rmsprop"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (["--early-stopping", "3", "--val-split", "0"], "needs a validation set"),
    (["--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
    (["--backend", "cuda"], "invalid choice: 'cuda'"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--data-dir", "/tmp"], "--data-dir only applies to fashion-mnist and mnist"),
    (["--download"], "--download only applies to mnist"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_train_bad_arguments(capsys, argv, match):
    line = assert_one_line_error(capsys, "train", *argv, match=match)
    assert line.startswith("nnkernels train: error:")


def test_train_data_dir_without_files(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    line = assert_one_line_error(capsys, "train", "--dataset", "fashion-mnist", "--data-dir",
                                 str(tmp_path / "empty"), match="Fashion-MNIST not found")
    assert str(tmp_path / "empty") in line and "apt-get install dataset-fashion-mnist" in line
    assert_one_line_error(capsys, "train", "--dataset", "mnist", "--data-dir",
                          str(tmp_path / "nowhere"), match="no such directory")


def test_train_corrupt_data_file(capsys, tmp_path):
    write_fake_fashion(tmp_path / "fm", n_train=20, n_test=10)
    f = tmp_path / "fm" / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-30])
    assert_one_line_error(capsys, "train", "--dataset", "fashion-mnist", "--data-dir",
                          str(tmp_path / "fm"), "--epochs", "1", match="corrupt or truncated gzip")
