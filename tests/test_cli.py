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


# --------------------------------------------------------------------------- runs

@pytest.fixture(autouse=True)
def restore_runtime():
    """The commands set the process-wide backend and thread count: put them back."""
    import nnkernels

    backend, threads = nnkernels.get_backend(), nnkernels.get_num_threads()
    yield
    nnkernels.set_backend(backend)
    nnkernels.set_num_threads(threads)


def test_train_digits_output(capsys):
    rc, out, err = run_cli(capsys, "train", "--epochs", "3", "--seed", "1")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("dataset: digits, 1295 train / 143 validation / 359 test samples")
    assert "MLP 64-256-128-10 (relu, batchnorm, dropout 0.1)" in lines[1]
    epoch_lines = [l for l in lines if l.startswith("epoch ")]
    assert [l.split()[1] for l in epoch_lines] == ["1/3", "2/3", "3/3"]
    assert all("train loss" in l and "val loss" in l and "val acc" in l for l in epoch_lines)
    acc_line = next(l for l in lines if l.startswith("test accuracy:"))
    acc = float(acc_line.split()[2].rstrip("%"))
    assert acc > 85.0
    i = lines.index("confusion matrix (rows: true class, columns: predicted class):")
    rows = [list(map(int, l.split()[1:])) for l in lines[i + 2: i + 12]]
    cm = np.array(rows)
    assert cm.sum() == 359 and cm.trace() == int(acc_line.split("(")[1].split("/")[0])
    assert lines[-1].startswith("total time") and "samples/s" in lines[-1]


def test_train_quiet_and_deterministic(capsys):
    rc, out1, _ = run_cli(capsys, "train", "--dataset", "xor", "--epochs", "3", "--quiet")
    rc2, out2, _ = run_cli(capsys, "train", "--dataset", "xor", "--epochs", "3", "--quiet")
    assert rc == rc2 == 0
    assert len(out1.splitlines()) == 2 and out1.startswith("test accuracy:")
    assert out1.splitlines()[0] == out2.splitlines()[0]  # same seed, same result


def test_train_from_argv_result():
    from nnkernels.commands.train import train_from_argv

    import io

    r = train_from_argv(["--dataset", "moons", "--quiet"], out=io.StringIO())
    assert r.history.epochs == 100 and len(r.history.val_accuracy) == 100
    assert r.test_accuracy > 0.95  # the moons are easy
    assert r.confusion.shape == (2, 2) and r.confusion.sum() == 200


def test_early_stopping(capsys):
    rc, out, _ = run_cli(capsys, "train", "--dataset", "digits", "--epochs", "100",
                         "--early-stopping", "1", "--lr", "0.01", "--scheduler", "none")
    assert rc == 0
    assert "early stopping after epoch" in out
    assert len([l for l in out.splitlines() if l.startswith("epoch ")]) < 100


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
@pytest.mark.parametrize("scheduler", ["none", "step", "cosine", "onecycle", "plateau"])
def test_optimizers_and_schedulers(capsys, optimizer, scheduler):
    rc, out, err = run_cli(capsys, "train", "--dataset", "xor", "--epochs", "3", "--quiet",
                           "--optimizer", optimizer, "--scheduler", scheduler)
    assert rc == 0, err
    acc = float(out.split()[2].rstrip("%"))
    assert 0 <= acc <= 100


@pytest.mark.parametrize("backend", ["numpy"])  # numba: JIT compilation takes ~10 s
def test_backends(capsys, backend):
    rc, out, err = run_cli(capsys, "train", "--dataset", "moons", "--epochs", "2",
                           "--backend", backend, "--threads", "1", "--activation", "tanh")
    assert rc == 0, err
    assert f"backend: {backend}, 1 threads" in out


def test_save_plot_evaluate_predict(capsys, tmp_path):
    model, png = tmp_path / "moons.nnk", tmp_path / "moons.png"
    rc, out, err = run_cli(capsys, "train", "--dataset", "moons", "--epochs", "20",
                           "--save", str(model), "--plot", str(png))
    assert rc == 0, err
    acc = float(out.split("test accuracy: ")[1].split("%")[0])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    import matplotlib.image

    h, w = matplotlib.image.imread(png).shape[:2]
    assert w > 2 * h  # three panels side by side for a 2-D dataset

    rc, out, err = run_cli(capsys, "evaluate", str(model), "--dataset", "moons")
    assert rc == 0, err
    assert f"moons test split: accuracy {acc:.2f}%" in out  # same model, same split

    from nnkernels.datasets import make_moons

    ds = make_moons()
    np.save(tmp_path / "x.npy", ds.X_test[:20])
    rc, out, err = run_cli(capsys, "predict", str(model), str(tmp_path / "x.npy"))
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 20 and all(l.split("\t")[1] in ("upper", "lower") for l in lines)
    pred = np.array([int(l.split("\t")[0]) for l in lines])
    assert (pred == ds.y_test[:20]).mean() >= 0.8

    rc, out, _ = run_cli(capsys, "predict", str(model), str(tmp_path / "x.npy"), "--probabilities",
                         "--output", str(tmp_path / "p.npy"))
    assert rc == 0
    p = np.load(tmp_path / "p.npy")
    assert p.shape == (20, 2) and np.allclose(p.sum(axis=1), 1.0)
    assert (p.argmax(1) == pred).all()

    np.save(tmp_path / "bad.npy", np.zeros((4, 3), np.float32))
    assert_one_line_error(capsys, "predict", str(model), str(tmp_path / "bad.npy"),
                          match="shape (4, 3) does not fit the model, which takes 2 features")
    assert_one_line_error(capsys, "evaluate", str(model), "--dataset", "digits",
                          match="takes 2 features and predicts 2 classes; digits has 64")
    (tmp_path / "junk.nnk").write_bytes(b"junk")
    assert_one_line_error(capsys, "evaluate", str(tmp_path / "junk.nnk"), match="junk.nnk")
    assert_one_line_error(capsys, "predict", str(tmp_path / "none.nnk"), "x.npy",
                          match="no such model file")
    assert_one_line_error(capsys, "train", "--dataset", "moons", "--save",
                          str(tmp_path / "no" / "dir" / "m.nnk"), match="does not exist")


def test_fashion_mnist_from_data_dir(capsys, tmp_path):
    write_fake_fashion(tmp_path / "fm")
    model = tmp_path / "fm.nnk"
    rc, out, err = run_cli(capsys, "train", "--dataset", "fashion-mnist", "--data-dir",
                           str(tmp_path / "fm"), "--epochs", "8", "--hidden", "32",
                           "--batch-size", "16", "--save", str(model))
    assert rc == 0, err
    assert "MLP 784-32-10" in out and "Ankle boot" in out  # class names in the confusion matrix
    assert float(out.split("test accuracy: ")[1].split("%")[0]) >= 90.0
    # raw uint8 images are scaled like the training data
    from nnkernels.datasets import read_idx

    images = read_idx(tmp_path / "fm" / "t10k-images-idx3-ubyte.gz")[:10]
    np.save(tmp_path / "img.npy", images)
    rc, out, _ = run_cli(capsys, "predict", str(model), str(tmp_path / "img.npy"))
    labels = read_idx(tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz")[:10]
    pred = [int(l.split("\t")[0]) for l in out.splitlines()]
    assert rc == 0 and (np.array(pred) == labels).mean() >= 0.8


def test_subprocess_smoke(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "nnkernels", "train", "--dataset", "xor",
                           "--epochs", "2", "--threads", "1"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "epoch 2/2" in proc.stdout and "test accuracy:" in proc.stdout
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "nnkernels", "train", "--hidden", "12,x"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "nnkernels train: error: --hidden: cannot parse '12,x': expected positive integers "
        "separated by commas, e.g. 256,128"]
