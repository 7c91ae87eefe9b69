"""nnkernels.datasets: IDX reader, dataset search, verified download (against a
local HTTP server on 127.0.0.1, no real network), digits and the toy sets.
The IDX files are small ones the tests write themselves; the real
Fashion-MNIST is only checked when installed."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

import nnkernels.datasets as D
from nnkernels.datasets import DataNotFoundError, DownloadError, IDXFormatError, read_idx, write_idx

STEMS = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def write_fake_mnist(directory: Path, n_train=30, n_test=12, shape=(5, 4), gz=True, seed=0,
                     dotted=False):
    """Write the four IDX files of a tiny MNIST-like set; return (images, labels) per split."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    data = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{split}-{kind}-ubyte"
            if dotted:
                name = name.replace("-idx", ".idx")
            write_idx(directory / (name + (".gz" if gz else "")), arr)
        data[split] = (images, labels)
    return data


@pytest.fixture
def no_default_dirs(tmp_path, monkeypatch):
    """Point every default search location at empty temporary directories."""
    monkeypatch.delenv("NNKERNELS_DATA", raising=False)
    monkeypatch.delenv("NNKERNELS_MNIST_MIRRORS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(D, "_SYSTEM_DATA", tmp_path / "system")
    return tmp_path


# --------------------------------------------------------------------------- IDX reader

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_roundtrip(tmp_path, dtype, suffix):
    a = (np.arange(2 * 3 * 4) * 7 - 20).astype(dtype).reshape(2, 3, 4)
    p = tmp_path / ("a.idx" + suffix)
    write_idx(p, a)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    b = read_idx(p)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    np.testing.assert_array_equal(a, b)


def test_idx_header_is_big_endian(tmp_path):
    p = tmp_path / "labels"
    write_idx(p, np.array([3, 1, 2], dtype=np.int32))
    raw = p.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0C, 1])
    assert raw[4:8] == (3).to_bytes(4, "big")
    assert raw[8:12] == (3).to_bytes(4, "big")


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"\x01" + b[1:], "bad magic number"),
    (lambda b: b[:2] + b"\x07" + b[3:], "bad magic number"),
    (lambda b: b[:3] + b"\x00" + b[4:], "0 dimensions"),
    (lambda b: b[:3] + b"\x09" + b[4:], "9 dimensions"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b[:10], "truncated"),
    (lambda b: b + b"\x00", "trailing bytes"),
    (lambda b: b[:2], "only 2 bytes"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_malformed(tmp_path, mutate, message, gz):
    good = tmp_path / "good"
    write_idx(good, np.zeros((3, 2, 2), np.uint8))
    bad = tmp_path / ("bad" + (".gz" if gz else ""))
    raw = mutate(good.read_bytes())
    bad.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(IDXFormatError, match=message) as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


def test_idx_truncated_gzip(tmp_path):
    p = tmp_path / "x.gz"
    write_idx(p, np.arange(1000, dtype=np.int32))
    p.write_bytes(p.read_bytes()[:-20])
    with pytest.raises(IDXFormatError, match="corrupt or truncated gzip"):
        read_idx(p)


def test_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------- IDX datasets

def test_load_fashion_mnist_from_path(tmp_path):
    data = write_fake_mnist(tmp_path / "fm", n_train=30, n_test=12, shape=(5, 4))
    ds = D.load_fashion_mnist(tmp_path / "fm")
    assert ds.name == "fashion-mnist" and ds.image_shape == (5, 4)
    assert ds.classes[0] == "T-shirt/top" and ds.n_classes == 10
    assert ds.X_train.shape == (30, 20) and ds.X_test.shape == (12, 20)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert 0.0 <= ds.X_train.min() and ds.X_train.max() <= 1.0
    images, labels = data["train"]
    np.testing.assert_allclose(ds.X_train * 255, images.reshape(30, 20), atol=1e-4)
    np.testing.assert_array_equal(ds.y_train, labels)
    np.testing.assert_array_equal(ds.y_test, data["t10k"][1])


def test_load_accepts_parent_dir_plain_and_dotted_names(tmp_path):
    write_fake_mnist(tmp_path / "root" / "fashion-mnist", gz=False, dotted=True)
    ds = D.load_fashion_mnist(tmp_path / "root")
    assert ds.X_train.shape == (30, 20)


def test_search_order(no_default_dirs, monkeypatch):
    tmp = no_default_dirs
    write_fake_mnist(tmp / "system" / "fashion-mnist", n_train=7)
    assert len(D.load_fashion_mnist().y_train) == 7
    write_fake_mnist(tmp / "xdg-cache" / "nnkernels" / "fashion-mnist", n_train=8)
    assert len(D.load_fashion_mnist().y_train) == 8
    write_fake_mnist(tmp / "env" / "fashion-mnist", n_train=9)
    monkeypatch.setenv("NNKERNELS_DATA", str(tmp / "env"))
    assert len(D.load_fashion_mnist().y_train) == 9
    write_fake_mnist(tmp / "explicit", n_train=10)
    assert len(D.load_fashion_mnist(tmp / "explicit").y_train) == 10


def test_not_found_says_where_and_how(no_default_dirs, monkeypatch):
    tmp = no_default_dirs
    monkeypatch.setenv("NNKERNELS_DATA", str(tmp / "env"))
    (tmp / "env" / "fashion-mnist").mkdir(parents=True)
    (tmp / "env" / "fashion-mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataNotFoundError) as info:
        D.load_fashion_mnist()
    msg = str(info.value)
    assert "\n" not in msg
    assert str(tmp / "env" / "fashion-mnist") in msg and "missing train-labels-idx1-ubyte, t10k-images-idx3-ubyte" in msg
    assert str(tmp / "xdg-cache" / "nnkernels" / "fashion-mnist") in msg
    assert str(tmp / "system" / "fashion-mnist") in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    with pytest.raises(DataNotFoundError, match="download=True"):
        D.load_mnist()


def test_explicit_path_does_not_fall_back(no_default_dirs, tmp_path):
    write_fake_mnist(tmp_path / "system" / "fashion-mnist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="empty"):
        D.load_fashion_mnist(tmp_path / "empty")


def test_inconsistent_files(tmp_path):
    write_fake_mnist(tmp_path, n_train=30)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(29, np.uint8))
    with pytest.raises(IDXFormatError, match="30 images but .* 29 labels"):
        D.load_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(30, 10, np.uint8))
    with pytest.raises(IDXFormatError, match="label 10 out of range"):
        D.load_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros((30, 1), np.uint8))
    with pytest.raises(IDXFormatError, match="expected uint8 labels"):
        D.load_mnist(tmp_path)


REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (REAL_FASHION / "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    ds = D.load_fashion_mnist(REAL_FASHION)
    assert ds.X_train.shape == (60000, 784) and ds.X_test.shape == (10000, 784)
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.X_train.max() == 1.0 and ds.X_train.min() == 0.0


# --------------------------------------------------------------------------- download

class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; under /corrupt/ flips a byte, under /truncated/ stops halfway."""

    def do_GET(self):
        mode, _, name = self.path.lstrip("/").partition("/")
        body = self.server.files.get(name)
        self.server.requests.append(self.path)
        if body is None or mode not in ("good", "corrupt", "truncated"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "corrupt":
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        elif mode == "truncated":
            body = body[: len(body) // 2]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_server(files: dict):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.files, server.requests = files, []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _listing(d: Path):
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_download_falls_through_bad_mirrors(tmp_path):
    payload = bytes(range(256)) * 100
    sha = hashlib.sha256(payload).hexdigest()
    with http_server({"f.bin": payload}) as (srv, url):
        mirrors = [f"{url}/missing", f"{url}/corrupt", f"{url}/truncated/", f"{url}/good"]
        p = D.download_file("f.bin", tmp_path / "cache", mirrors, sha, progress=True)
        assert srv.requests == ["/missing/f.bin", "/corrupt/f.bin", "/truncated/f.bin", "/good/f.bin"]
    assert p == tmp_path / "cache" / "f.bin" and p.read_bytes() == payload
    assert _listing(tmp_path / "cache") == ["f.bin"]  # no partial files left


def test_download_never_leaves_a_bad_file(tmp_path):
    payload = b"x" * 5000
    sha = hashlib.sha256(payload).hexdigest()
    cache = tmp_path / "cache"
    with http_server({"f.bin": payload}) as (srv, url):
        with pytest.raises(DownloadError) as info:
            D.download_file("f.bin", cache, [f"{url}/corrupt", f"{url}/truncated", f"{url}/nope"],
                            sha, progress=False)
    msg = str(info.value)
    assert "SHA-256 mismatch" in msg and "truncated: received 2500 of 5000 bytes" in msg
    assert "Not Found" in msg
    assert _listing(cache) == []


def test_download_replaces_corrupt_cached_file_and_keeps_good_one(tmp_path):
    payload = b"hello" * 1000
    sha = hashlib.sha256(payload).hexdigest()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "f.bin").write_bytes(payload[:-1])  # e.g. an earlier interrupted copy
    with http_server({"f.bin": payload}) as (srv, url):
        D.download_file("f.bin", cache, [url + "/good"], sha, progress=False)
        assert (cache / "f.bin").read_bytes() == payload
        D.download_file("f.bin", cache, [url + "/good"], sha, progress=False)
        assert len(srv.requests) == 1  # verified copy reused, not fetched again
        # the corrupt cached copy is removed even when every mirror fails
        (cache / "f.bin").write_bytes(b"junk")
        with pytest.raises(DownloadError):
            D.download_file("f.bin", cache, [url + "/corrupt"], sha, progress=False)
    assert _listing(cache) == []


def test_load_mnist_download(tmp_path, no_default_dirs, monkeypatch):
    src = tmp_path / "src"
    data = write_fake_mnist(src, n_train=40, n_test=10, shape=(6, 6))
    files = {p.name: p.read_bytes() for p in src.iterdir()}
    monkeypatch.setattr(D, "MNIST_SHA256", {k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
    with http_server(files) as (srv, url):
        monkeypatch.setenv("NNKERNELS_MNIST_MIRRORS", f"{url}/corrupt, {url}/good")
        ds = D.load_mnist(download=True, progress=False)  # into the (temporary) cache dir
        assert len(srv.requests) == 8
        ds2 = D.load_mnist(download=True, mirrors=[url + "/good"], progress=False)
        assert len(srv.requests) == 8  # all four already verified in the cache
    cache = tmp_path / "xdg-cache" / "nnkernels" / "mnist"
    assert _listing(cache) == sorted(files)
    assert ds.X_train.shape == (40, 36) and ds.image_shape == (6, 6)
    np.testing.assert_array_equal(ds.y_test, data["t10k"][1])
    np.testing.assert_array_equal(ds2.X_train, ds.X_train)
    assert len(D.load_mnist().y_train) == 40  # found in the cache without downloading


# --------------------------------------------------------------------------- digits and toys

def test_load_digits():
    ds = D.load_digits()
    assert ds.X_train.shape[1] == 64 and len(ds.y_train) + len(ds.y_test) == 1797
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.X_train.min() == 0.0 and ds.X_train.max() == 1.0
    assert ds.classes == [str(i) for i in range(10)] and ds.image_shape == (8, 8)
    counts = np.bincount(ds.y_test)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified 20%
    ds2 = D.load_digits()
    np.testing.assert_array_equal(ds.y_test, ds2.y_test)
    # train and test are disjoint: no test row appears in train
    train_rows = {r.tobytes() for r in ds.X_train}
    overlap = sum(r.tobytes() in train_rows for r in ds.X_test)
    assert overlap <= 2  # the digits data itself has a few duplicate images


@pytest.mark.parametrize("make", [D.make_moons, D.make_xor, D.make_spirals])
def test_toy_sets(make):
    a, b, c = make(seed=1), make(seed=1), make(seed=2)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_train, c.X_train)
    X = np.concatenate([a.X_train, a.X_test])
    assert X.dtype == np.float32 and X.shape[1] == 2
    assert X.min() == 0.0 and X.max() == 1.0
    y = np.concatenate([a.y_train, a.y_test])
    assert y.dtype == np.int64 and len(a.y_test) == round(0.2 * len(y))
    counts = np.bincount(y, minlength=a.n_classes)
    assert counts.min() >= 0.4 * len(y) / a.n_classes


def test_xor_labels_are_quadrants():
    ds = D.make_xor(n_samples=2000, noise=0.0)
    X, y = ds.X_train, ds.y_train
    pred = ((X[:, 0] > 0.5) != (X[:, 1] > 0.5)).astype(np.int64)
    assert (pred == y).mean() > 0.99


def test_moons_classes_are_separable_by_a_curve():
    ds = D.make_moons(n_samples=2000, noise=0.0)
    # nearest-neighbour on clean moons is perfect
    Xtr, ytr, Xte, yte = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    d = ((Xte[:, None, :] - Xtr[None, :, :]) ** 2).sum(-1)
    assert (ytr[d.argmin(1)] == yte).mean() == 1.0


def test_toy_argument_checks():
    with pytest.raises(ValueError, match="noise"):
        D.make_moons(noise=-1)
    with pytest.raises(ValueError, match="n_samples"):
        D.make_xor(n_samples=1)
    with pytest.raises(ValueError, match="n_classes"):
        D.make_spirals(n_classes=1)


def test_split_validation():
    ds = D.load_digits()
    (Xt, yt), (Xv, yv) = ds.split_validation(0.1, seed=3)
    assert len(yt) + len(yv) == len(ds.y_train)
    assert abs(len(yv) - 0.1 * len(ds.y_train)) <= 10
    assert set(np.unique(yv)) == set(range(10))
    (_, _), (Xv2, _) = ds.split_validation(0.1, seed=3)
    np.testing.assert_array_equal(Xv, Xv2)
    (_, yt0), (_, yv0) = ds.split_validation(0.0)
    assert len(yv0) == 0 and len(yt0) == len(ds.y_train)
    with pytest.raises(ValueError, match="fraction"):
        ds.split_validation(1.0)


def test_digits_match_scikit_learn():
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    data, target = D._digits_arrays()
    np.testing.assert_array_equal(data, d.data)
    np.testing.assert_array_equal(target, d.target)
