"""nnkernels.save / load: exact round trip, PyTorch interop, atomic writes,
clear errors on corrupt or mismatched files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nnkernels
from nnkernels import nn, serialization

from _pylayer import best_backend


@pytest.fixture(autouse=True)
def _default_backend():
    with nnkernels.use_backend(best_backend()):
        yield


def _trained_bn_model(dtype=np.float32):
    m = nn.MLP([6, 8, 4], batchnorm=True, dropout=0.1, activation="gelu", dtype=dtype, rng=0)
    m(np.random.default_rng(0).standard_normal((10, 6)).astype(dtype))  # running stats move
    return m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_roundtrip_exact(tmp_path, dtype):
    m = _trained_bn_model(dtype)
    path = tmp_path / "model.safetensors"
    nnkernels.save(m, path)
    m2 = nnkernels.load(path)
    assert type(m2) is nn.MLP and m2.dtype == dtype
    assert repr(m2) == repr(m)
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert list(sd) == list(sd2)
    for k in sd:
        assert sd[k].dtype == sd2[k].dtype
        np.testing.assert_array_equal(sd[k], sd2[k])
    x = np.ones((3, 6), dtype)
    np.testing.assert_array_equal(m.eval()(x), m2.eval()(x))


def test_sequential_of_modules_roundtrip(tmp_path):
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 5, rng=1), nn.LeakyReLU(0.2), nn.Linear(5, 3, bias=False),
                      nn.Softplus(beta=2.0), nn.Softmax(dim=-1))
    p = tmp_path / "seq.safetensors"
    nnkernels.save(m, p)
    m2 = nnkernels.load(p)
    assert repr(m2) == repr(m)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(m(x), m2(x))


def test_file_is_plain_safetensors_readable_by_torch(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    m = _trained_bn_model()
    p = tmp_path / "m.safetensors"
    nnkernels.save(m, p)
    tsd = load_file(str(p))
    twin = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.GELU(),
                               torch.nn.Dropout(0.1), torch.nn.Linear(8, 4))
    twin.load_state_dict(tsd)
    np.testing.assert_array_equal(twin[1].running_mean.numpy(), m[1].running_mean)


def test_load_into_existing_model_and_mismatch(tmp_path):
    m = nn.MLP([4, 3, 2], rng=0)
    p = tmp_path / "w.safetensors"
    nnkernels.save(m, p)
    other = nn.MLP([4, 3, 2], rng=1).double()
    nnkernels.load(p, model=other)
    assert other.dtype == np.float64
    np.testing.assert_allclose(other[0].weight.data, m[0].weight.data)
    with pytest.raises(ValueError, match="do not match.*shape"):
        nnkernels.load(p, model=nn.MLP([4, 5, 2]))
    with pytest.raises(ValueError, match="do not match.*missing"):
        nnkernels.load(p, model=nn.MLP([4, 3, 3, 2]))


def test_custom_module_weights_only(tmp_path):
    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2, rng=0)

        def forward(self, x):
            return self.lin(x)

    p = tmp_path / "c.safetensors"
    with pytest.raises(TypeError, match="architecture=False"):
        nnkernels.save(Mine(), p)
    nnkernels.save(Mine(), p, architecture=False)
    with pytest.raises(ValueError, match="weights only"):
        nnkernels.load(p)
    got = nnkernels.load(p, model=Mine())
    assert isinstance(got, Mine)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "header", "not_ours"])
def test_corrupt_files_raise_clear_errors(tmp_path, damage):
    m = nn.MLP([4, 3, 2], rng=0)
    p = tmp_path / "m.safetensors"
    nnkernels.save(m, p)
    raw = p.read_bytes()
    if damage == "truncate":
        p.write_bytes(raw[: len(raw) - 20])
        match = "corrupt or truncated"
    elif damage == "garbage":
        p.write_bytes(b"\x00" * 7)
        match = "truncated"
    elif damage == "empty":
        p.write_bytes(b"")
        match = "truncated"
    elif damage == "header":
        p.write_bytes(raw[:8] + b"{" * (len(raw) - 8))
        match = "corrupt"
    else:
        from safetensors.numpy import save_file
        save_file({"a": np.zeros(2, np.float32)}, str(p))
        match = "not an nnkernels model file"
    with pytest.raises(ValueError, match=match):
        nnkernels.load(p)


def test_interrupted_save_keeps_old_file(tmp_path, monkeypatch):
    m_old = nn.MLP([4, 3, 2], rng=0)
    p = tmp_path / "m.safetensors"
    nnkernels.save(m_old, p)
    before = p.read_bytes()

    real_fsync = os.fsync

    def boom(fd):  # the write has happened but the file is not yet in place
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(serialization.os, "fsync", boom)
    with pytest.raises(OSError, match="simulated"):
        nnkernels.save(nn.MLP([4, 3, 2], rng=1), p)
    monkeypatch.setattr(serialization.os, "fsync", real_fsync)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]  # temp file cleaned up
    np.testing.assert_array_equal(nnkernels.load(p)[0].weight.data, m_old[0].weight.data)


def test_killed_save_keeps_old_file(tmp_path):
    # A subprocess is SIGKILLed in the middle of writing the bytes: no cleanup
    # code runs, the old file must still load.
    p = tmp_path / "m.safetensors"
    nnkernels.save(nn.MLP([4, 3, 2], rng=0), p)
    before = p.read_bytes()
    code = textwrap.dedent(f"""
        import os, signal
        import nnkernels
        from nnkernels import nn, serialization
        real = os.fdopen
        class Half:
            def __init__(self, f): self.f = f
            def __enter__(self): return self
            def __exit__(self, *a): return False
            def write(self, data):
                self.f.write(data[: len(data) // 2]); self.f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            def flush(self): pass
            def fileno(self): return self.f.fileno()
        serialization.os.fdopen = lambda fd, mode: Half(real(fd, mode))
        nnkernels.save(nn.MLP([4, 30, 2], rng=1), {str(p)!r})
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert r.returncode == -9, r.stderr.decode()
    assert p.read_bytes() == before
    assert nnkernels.load(p)[0].weight.shape == (3, 4)


def test_metadata_contents(tmp_path):
    p = tmp_path / "m.safetensors"
    nnkernels.save(nn.MLP([4, 3, 2], rng=0), p, metadata={"note": "hello"})
    raw = p.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8:8 + n])["__metadata__"]
    assert meta["format"] == "nnkernels" and meta["note"] == "hello"
    assert json.loads(meta["architecture"])["config"]["sizes"] == [4, 3, 2]
