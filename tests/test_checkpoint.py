"""Checkpoints: format round trip, damaged files, exact resume of fit, and
SIGKILL during checkpoint writes (NNK_KILL_ROUNDS sets how many kills)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import nnkernels as nk
from nnkernels import nn, optim
from nnkernels.backends import load_backend
from nnkernels.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

# fit needs every kernel; use the fastest backend that has them all
TRAIN_BACKEND = next(b for b in ("cpp", "numba", "numpy") if not load_backend(b).missing())


# ---- format ------------------------------------------------------------------------

def test_round_trip_keeps_types_and_bytes(tmp_path):
    ro = np.arange(6, dtype=np.float32).reshape(2, 3)
    ro.flags.writeable = False
    state = {
        "f32": np.array([1.5, np.nan, -np.inf, -0.0, np.finfo(np.float32).smallest_subnormal], np.float32),
        "f64_fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "readonly": ro, "strided": np.arange(20.0)[::-3], "empty": np.zeros((0, 5), np.float64),
        "ints": np.arange(5, dtype=np.int64), "scalar0d": np.array(3.25),
        "np_scalar": np.float32(0.1), "py": [1, 2.5, float("inf"), None, True, "s", 2**100],
        "tuple": (0.9, 0.999), "int_keys": {0: {"step": 3.0}, 7: "x"},
        "nested": {"a": [{"b": np.ones(2)}]},
        "rng": np.random.default_rng(5).bit_generator.state,
    }
    p = tmp_path / "c.ckpt"
    save_checkpoint(p, state)
    got = load_checkpoint(p)
    assert set(got) == set(state)
    for k in ("f32", "f64_fortran", "readonly", "strided", "empty", "ints", "scalar0d"):
        assert got[k].dtype == state[k].dtype and got[k].shape == state[k].shape
        assert got[k].tobytes() == np.ascontiguousarray(state[k]).tobytes(), k
        assert got[k].flags.writeable
    assert type(got["np_scalar"]) is np.float32 and got["np_scalar"] == np.float32(0.1)
    assert got["py"][:2] == [1, 2.5] and got["py"][2] == float("inf") and got["py"][3:] == [None, True, "s", 2**100]
    assert got["tuple"] == (0.9, 0.999) and isinstance(got["tuple"], tuple)
    assert got["int_keys"] == {0: {"step": 3.0}, 7: "x"}
    assert np.array_equal(got["nested"]["a"][0]["b"], np.ones(2))
    g = np.random.default_rng()
    g.bit_generator.state = got["rng"]
    assert g.random() == np.random.default_rng(5).random()
    assert os.listdir(tmp_path) == ["c.ckpt"]  # no temporary file left behind


@pytest.mark.parametrize("bad,msg", [
    ({"f": lambda: 0}, "state.f: cannot save a value of type function"),
    ({"o": np.array([object()])}, "state.o: object arrays"),
    ({"d": {(1, 2): 3}}, "dict keys must be str or int"),
])
def test_unsavable_values_name_the_key(tmp_path, bad, msg):
    with pytest.raises(TypeError, match=msg.replace("(", r"\(").replace(".", r"\.")):
        save_checkpoint(tmp_path / "c.ckpt", bad)
    assert os.listdir(tmp_path) == []


def test_state_must_be_a_dict(tmp_path):
    with pytest.raises(TypeError, match="state: expected a dict, got list"):
        save_checkpoint(tmp_path / "c", [1])
    with pytest.raises(ValueError, match="does not exist"):
        save_checkpoint(tmp_path / "nodir" / "c", {})


def test_damaged_files_raise_checkpoint_error(tmp_path):
    p = tmp_path / "c.ckpt"
    save_checkpoint(p, {"w": np.arange(1000.0)})
    data = p.read_bytes()
    for name, content in [("truncated", data[: len(data) // 2]), ("empty", b""),
                          ("flipped", data[:500] + bytes([data[500] ^ 0xFF]) + data[501:]),
                          ("other", b"PK\x05\x06" + b"\0" * 18)]:
        q = tmp_path / name
        q.write_bytes(content)
        with pytest.raises(CheckpointError, match="damaged|not an nnkernels checkpoint"):
            load_checkpoint(q)
    np.savez(tmp_path / "plain.npz", x=np.ones(3))
    with pytest.raises(CheckpointError, match="not an nnkernels checkpoint"):
        load_checkpoint(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing")


# ---- fit(checkpoint=, resume=) -----------------------------------------------------

def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((192, 12)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    return X, y


def _setup(sched="step"):
    nk.manual_seed(0)
    m = nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Dropout(0.25), nn.Linear(24, 3))
    o = optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.01)
    s = optim.lr_scheduler.StepLR(o, 2, 0.5) if sched == "step" else optim.lr_scheduler.ReduceLROnPlateau(o, patience=1)
    return m, o, s


def _fit(m, o, s, epochs, **kw):
    X, y = _data()
    return nk.fit(m, nn.CrossEntropyLoss(), o, (X, y), val=(X[:64], y[:64]), epochs=epochs,
                  batch_size=32, scheduler=s, progress=False, seed=3, **kw)


@pytest.mark.parametrize("sched", ["step", "plateau"])
def test_resume_reaches_the_same_weights(tmp_path, sched):
    with nk.use_backend(TRAIN_BACKEND):
        m, o, s = _setup(sched)
        h_ref = _fit(m, o, s, 5)
        ref = m.state_dict()
        ck = tmp_path / "run.ckpt"
        m, o, s = _setup(sched)
        _fit(m, o, s, 2, checkpoint=ck)  # "interrupted" after 2 epochs
        nk.manual_seed(12345)  # the global generator is restored from the checkpoint
        m, o, s = _setup(sched)
        h = _fit(m, o, s, 5, resume=ck, checkpoint=ck)
    for k, v in ref.items():
        assert np.array_equal(m.state_dict()[k], v), k
    assert h.train_loss == h_ref.train_loss and h.lr == h_ref.lr and h.val_loss == h_ref.val_loss
    assert load_checkpoint(ck)["epoch"] == 5


def test_checkpoint_every_and_early_stopping(tmp_path):
    ck = tmp_path / "c.ckpt"
    with nk.use_backend(TRAIN_BACKEND):
        m, o, s = _setup()
        es = nk.train.EarlyStopping(patience=1, monitor="train_loss", min_delta=10.0)
        h = _fit(m, o, s, 6, checkpoint=ck, checkpoint_every=4, early_stopping=es)
        assert h.stopped_epoch == 1  # min_delta=10: never improves after epoch 0
        st = load_checkpoint(ck)
        assert st["finished"] and st["epoch"] == 2
        w = m.state_dict()
        m2, o2, s2 = _setup()
        es2 = nk.train.EarlyStopping(patience=1, monitor="train_loss", min_delta=10.0)
        h2 = _fit(m2, o2, s2, 6, resume=ck, early_stopping=es2)  # finished: restores, trains no more
    assert h2.train_loss == h.train_loss and h2.stopped_epoch == 1
    for k, v in w.items():
        assert np.array_equal(m2.state_dict()[k], v)


def test_fit_checkpoint_argument_errors(tmp_path):
    m, o, s = _setup()
    with pytest.raises(ValueError, match="checkpoint_every: expected a positive int.*got 0"):
        _fit(m, o, s, 1, checkpoint=tmp_path / "c", checkpoint_every=0)
    with pytest.raises(TypeError, match="checkpoint: expected a file path.*got int"):
        _fit(m, o, s, 1, checkpoint=3)
    with pytest.raises(ValueError, match="resume: no checkpoint file at"):
        _fit(m, o, s, 1, resume=tmp_path / "missing")
    with nk.use_backend(TRAIN_BACKEND):
        _fit(m, o, s, 1, checkpoint=tmp_path / "c")
        m2 = nn.Sequential(nn.Linear(12, 5), nn.ReLU(), nn.Dropout(0.25), nn.Linear(5, 3))
        o2 = optim.AdamW(m2.parameters(), lr=1e-2)
        with pytest.raises(ValueError, match="resume: .*does not match the model"):
            nk.fit(m2, nn.CrossEntropyLoss(), o2, _data(), epochs=2, progress=False, seed=3,
                   scheduler=optim.lr_scheduler.StepLR(o2, 2), resume=tmp_path / "c")
        with pytest.raises(ValueError, match="resume: the checkpoint has scheduler state but fit was called without"):
            m3, o3, _ = _setup()
            nk.fit(m3, nn.CrossEntropyLoss(), o3, _data(), epochs=2, progress=False, seed=3,
                   resume=tmp_path / "c")


# ---- SIGKILL during checkpoint writes ----------------------------------------------

# A child trains a model whose checkpoint (weights + Adam state, ~6 MB) takes
# most of each epoch's time, checkpointing every epoch, and is SIGKILLed at a
# random moment. The last checkpoint on disk must always load, and resuming
# from it must reach the uninterrupted run's weights exactly.
CHILD = textwrap.dedent("""
    import sys, numpy as np, nnkernels as nk
    from nnkernels import nn, optim
    nk.set_backend(sys.argv[1]); nk.set_num_threads(1)
    path, epochs = sys.argv[2], int(sys.argv[3])
    resume = sys.argv[4] if len(sys.argv) > 4 else None
    nk.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 700), nn.ReLU(), nn.Linear(700, 700), nn.ReLU(), nn.Linear(700, 2))
    o = optim.Adam(m.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 8)).astype(np.float32); y = rng.integers(0, 2, 16)
    print("started", flush=True)
    nk.fit(m, nn.CrossEntropyLoss(), o, (X, y), epochs=epochs, batch_size=8, progress=False,
           seed=1, checkpoint=path, resume=resume)
    np.save(path + ".final.npy", np.concatenate([v.ravel() for v in m.state_dict().values()]))
""")


def _child(args, **kw):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(nk.__file__)))
    return subprocess.Popen([sys.executable, "-c", CHILD, TRAIN_BACKEND, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _tmp_files(d, path):
    return [f for f in d.iterdir() if f.name.startswith(f".{path.name}.")]


@pytest.mark.slow
def test_sigkill_during_checkpoint_writes_leaves_a_loadable_checkpoint(tmp_path):
    rounds = int(os.environ.get("NNK_KILL_ROUNDS", "4"))
    epochs = 12
    ref_path = tmp_path / "ref.ckpt"
    t_start = time.monotonic()
    p = _child([ref_path, epochs])
    out, err = p.communicate(timeout=300)
    t_run = time.monotonic() - t_start  # kill within the time a whole run takes
    assert p.returncode == 0, err
    ref = np.load(str(ref_path) + ".final.npy")

    rng = np.random.default_rng(int(os.environ.get("NNK_KILL_SEED", "0")))
    killed_mid_write = resumed = 0
    for r in range(rounds):
        path = tmp_path / f"k{r}.ckpt"
        p = _child([path, epochs])
        assert p.stdout.readline().strip() == "started"
        t0 = time.monotonic()
        while not path.exists() and time.monotonic() - t0 < 60:  # first checkpoint written
            time.sleep(0.005)
        if r % 2 == 0:  # at a random moment
            time.sleep(rng.uniform(0.0, 0.7 * t_run))
        else:  # while a temporary checkpoint file is being written (plus 0-50 ms)
            t0 = time.monotonic()
            while not _tmp_files(tmp_path, path) and time.monotonic() - t0 < 30:
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.05))
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
        if p.returncode == 0:
            continue  # finished before the kill
        killed_mid_write += bool(_tmp_files(tmp_path, path))
        st = load_checkpoint(path)  # must never be torn
        assert 1 <= st["epoch"] <= epochs
        # resume in a fresh process (also clear leftovers) and finish the run
        for f in _tmp_files(tmp_path, path):
            f.unlink()
        p = _child([path, epochs, path])
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert np.array_equal(np.load(str(path) + ".final.npy"), ref), f"round {r}: resumed from epoch {st['epoch']}"
        resumed += 1
    print(f"\n[kill] rounds={rounds} resumed={resumed} killed_during_write={killed_mid_write}")
    assert resumed >= rounds // 2
