"""DataLoader, fit (schedulers, early stopping, clipping, callbacks, progress),
evaluate/predict, gradient clipping utilities."""

from __future__ import annotations

import numpy as np
import pytest

import nnkernels
from nnkernels import nn, optim
from nnkernels.data import DataLoader
from nnkernels.optim import lr_scheduler as sched
from nnkernels.train import EarlyStopping, evaluate, fit, predict
from nnkernels.utils import clip_grad_norm_, clip_grad_value_

from _pylayer import best_backend

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _default_backend():
    with nnkernels.use_backend(best_backend()):
        yield


def _blobs(n=400, d=10, k=3, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    X = (centers[y] + rng.standard_normal((n, d))).astype(dtype)
    return X, y


def test_dataloader_batches_and_shuffle():
    X = np.arange(10)[:, None].astype(np.float32)
    y = np.arange(10)
    dl = DataLoader(X, y, batch_size=4)
    assert len(dl) == 3
    sizes = [len(xb) for xb, _ in dl]
    assert sizes == [4, 4, 2]
    assert len(DataLoader(X, y, batch_size=4, drop_last=True)) == 2
    a = [yb.tolist() for _, yb in DataLoader(X, y, batch_size=4, shuffle=True, seed=1)]
    b = [yb.tolist() for _, yb in DataLoader(X, y, batch_size=4, shuffle=True, seed=1)]
    assert a == b and sorted(sum(a, [])) == list(range(10)) and sum(a, []) != list(range(10))
    dl = DataLoader(X, y, batch_size=4, shuffle=True, seed=1)
    e1 = [yb.tolist() for _, yb in dl]
    e2 = [yb.tolist() for _, yb in dl]
    assert e1 != e2  # a new permutation every epoch
    for xb, yb in dl:
        np.testing.assert_array_equal(xb[:, 0], yb)  # pairs stay aligned
    with pytest.raises(ValueError, match="samples"):
        DataLoader(X, y[:5])
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(X, y, batch_size=0)


def test_fit_learns_and_records_history():
    X, y = _blobs()
    nnkernels.manual_seed(0)
    m = nn.MLP([10, 32, 3])
    h = fit(m, nn.CrossEntropyLoss(), optim.Adam(m.parameters(), lr=1e-2), (X, y), val=(X, y),
            epochs=5, batch_size=32, progress=False, seed=0)
    assert h.epochs == 5 and len(h.val_loss) == 5 and len(h.seconds) == 5
    assert h.train_loss[-1] < h.train_loss[0]
    assert h.val_accuracy[-1] > 0.95
    assert evaluate(m, X, y, loss_fn=nn.CrossEntropyLoss())["accuracy"] == pytest.approx(h.val_accuracy[-1])
    assert m.training  # evaluate restored the mode


def test_fit_uint8_and_float64_inputs_cast_per_batch():
    X, y = _blobs()
    m = nn.MLP([10, 8, 3], rng=0)
    fit(m, nn.CrossEntropyLoss(), optim.SGD(m.parameters(), lr=0.1), (X.astype(np.float64), y),
        epochs=1, progress=False)
    assert predict(m, X.astype(np.float64)).dtype == np.float32


def test_fit_matches_manual_loop():
    X, y = _blobs(n=96)
    m1, m2 = nn.MLP([10, 8, 3], rng=0), nn.MLP([10, 8, 3], rng=0)
    o1, o2 = optim.SGD(m1.parameters(), lr=0.1, momentum=0.9), optim.SGD(m2.parameters(), lr=0.1, momentum=0.9)
    fit(m1, nn.CrossEntropyLoss(), o1, DataLoader(X, y, batch_size=32), epochs=2, progress=False)
    lf = nn.CrossEntropyLoss()
    for _ in range(2):
        for xb, yb in DataLoader(X, y, batch_size=32):
            o2.zero_grad()
            lf(m2(xb), yb)
            m2.backward(lf.backward())
            o2.step()
    # fit takes the fused native step (issue 8): same math, other summation orders
    for k, v in m1.state_dict().items():
        np.testing.assert_allclose(v, m2.state_dict()[k], rtol=1e-5, atol=1e-6)


def test_fit_with_schedulers():
    X, y = _blobs(n=128)
    for make in (lambda o: sched.StepLR(o, 1, 0.5),
                 lambda o: sched.OneCycleLR(o, max_lr=0.1, epochs=3, steps_per_epoch=4),
                 lambda o: sched.ReduceLROnPlateau(o, patience=0, factor=0.5, threshold=10.0)):
        m = nn.MLP([10, 8, 3], rng=0)
        o = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        s = make(o)
        h = fit(m, nn.CrossEntropyLoss(), o, (X, y), val=(X, y), epochs=3, batch_size=32, scheduler=s,
                progress=False)
        assert len(set(h.lr)) > 1 or o.param_groups[0]["lr"] != 0.1


def test_early_stopping_restores_best():
    X, y = _blobs(n=64)
    Xv, yv = _blobs(n=64, seed=5)
    yv = (yv + 1) % 3  # validation labels the model cannot learn: val loss rises
    m = nn.MLP([10, 16, 3], rng=0)
    es = EarlyStopping(patience=2, restore_best=True)
    snapshots = []
    h = fit(m, nn.CrossEntropyLoss(), optim.Adam(m.parameters(), lr=0.05), (X, y), val=(Xv, yv),
            epochs=50, batch_size=16, early_stopping=es, progress=False,
            callbacks=[lambda e, logs, model: snapshots.append(model.state_dict())])
    assert h.stopped_epoch is not None and h.epochs < 50
    assert h.best_epoch == int(np.argmin(h.val_loss))
    assert h.epochs == h.best_epoch + 1 + 2
    best = snapshots[h.best_epoch]
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, best[k])


def test_callback_can_stop_and_progress_bar(capsys):
    X, y = _blobs(n=64)
    m = nn.MLP([10, 4, 3], rng=0)
    h = fit(m, nn.CrossEntropyLoss(), optim.SGD(m.parameters(), lr=0.1), (X, y), epochs=10,
            callbacks=[lambda e, logs, model: e == 1], progress=True)
    assert h.epochs == 2
    err = capsys.readouterr()
    assert "epoch 2/10" in err.err + err.out and "train_loss" in err.err + err.out
    fit(m, nn.CrossEntropyLoss(), optim.SGD(m.parameters(), lr=0.1), (X, y), epochs=1, progress=False)
    err = capsys.readouterr()
    assert err.err == "" and err.out == ""


def test_fit_uses_fused_train_step_hook():
    X, y = _blobs(n=64)
    m = nn.MLP([10, 4, 3], rng=0)
    calls = []
    m.train_step = lambda xb, yb, loss_fn, opt: calls.append(len(xb)) or 0.5
    h = fit(m, nn.CrossEntropyLoss(), optim.SGD(m.parameters(), lr=0.1), (X, y), epochs=1,
            batch_size=32, progress=False)
    assert calls == [32, 32] and h.train_loss == [0.5]


def test_clip_grad_norm_matches_torch():
    m = nn.MLP([5, 4, 3], rng=0, dtype=np.float64)
    rng = np.random.default_rng(0)
    for p in m.parameters():
        p.grad[...] = rng.standard_normal(p.shape)
    tps = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in m.parameters()]
    for tp, p in zip(tps, m.parameters()):
        tp.grad = torch.from_numpy(p.grad.copy())
    total = clip_grad_norm_(m.parameters(), 1.0)
    ttotal = torch.nn.utils.clip_grad_norm_(tps, 1.0)
    assert total == pytest.approx(float(ttotal), rel=1e-12)
    for tp, p in zip(tps, m.parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12)
    clip_grad_value_(m.parameters(), 0.01)
    assert max(np.abs(p.grad).max() for p in m.parameters()) <= 0.01


def test_fit_clip_grad_norm_runs():
    X, y = _blobs(n=64)
    m = nn.MLP([10, 4, 3], rng=0)
    h = fit(m, nn.CrossEntropyLoss(), optim.SGD(m.parameters(), lr=0.1), (X, y), epochs=2,
            clip_grad_norm=0.5, progress=False)
    assert np.isfinite(h.train_loss).all()


def test_predict_in_batches_eval_mode():
    m = nn.MLP([10, 16, 3], dropout=0.5, rng=0)
    X, _ = _blobs(n=50)
    a = predict(m, X, batch_size=7)
    b = predict(m, X, batch_size=50)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # dropout off, batches independent
    assert a.shape == (50, 3) and m.training


@pytest.mark.parametrize("opt_name,kw", [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)), ("Adam", dict(lr=1e-3, amsgrad=True)),
    ("AdamW", dict(lr=1e-3)), ("RMSprop", dict(lr=1e-3, centered=True, momentum=0.5)),
    ("Adagrad", dict(lr=1e-2))])
def test_mnist_sized_mlp_trains_with_every_optimizer(opt_name, kw):
    # MLP([784, 256, 128, 10]) on a learnable random problem: the loss goes down.
    rng = np.random.default_rng(0)
    X = rng.random((256, 784), dtype=np.float32)
    w = rng.standard_normal((784, 10)).astype(np.float32)
    y = (X @ w).argmax(1)
    m = nn.MLP([784, 256, 128, 10], rng=0)
    o = getattr(optim, opt_name)(m.parameters(), **kw)
    h = fit(m, nn.CrossEntropyLoss(), o, (X, y), epochs=2, batch_size=64, progress=False,
            scheduler=sched.CosineAnnealingLR(o, T_max=3))
    assert h.train_loss[-1] < h.train_loss[0]
