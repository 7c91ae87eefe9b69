"""Sequential/MLP.train_step: the fused path against the layer-by-layer path
and PyTorch after 50 steps (every activation, loss and optimizer), fallbacks,
fit's fused flag, predict, state_dict and thread independence."""

from __future__ import annotations

import numpy as np
import pytest

import nnkernels
from nnkernels import nn, optim
from nnkernels.train import _layer_train_step, fit

torch = pytest.importorskip("torch")

ACTS = ["relu", "leaky_relu", "gelu", "gelu_tanh", "silu", "tanh", "sigmoid"]
OPTS = {
    "sgd_momentum": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3)),
    "adam": (lambda p: optim.Adam(p, lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2)),
    "adamw": (lambda p: optim.AdamW(p, lr=1e-2), lambda p: torch.optim.AdamW(p, lr=1e-2)),
    "rmsprop": (lambda p: optim.RMSprop(p, lr=1e-3, momentum=0.5, centered=True),
                lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5, centered=True)),
}


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def act_module(name):
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if name == "leaky_relu":
        return nn.LeakyReLU(0.1)
    from nnkernels.nn.activation import ACTIVATIONS
    return ACTIVATIONS[name]()


def build(act, dims=(12, 24, 16, 5), seed=3):
    mods = []
    for i in range(len(dims) - 1):
        mods.append(nn.Linear(dims[i], dims[i + 1], rng=seed + i))
        if i < len(dims) - 2:
            mods.append(act_module(act))
    return nn.Sequential(*mods)


def torch_twin(model, act):
    tacts = {"relu": torch.nn.ReLU(), "leaky_relu": torch.nn.LeakyReLU(0.1), "gelu": torch.nn.GELU(),
             "gelu_tanh": torch.nn.GELU(approximate="tanh"), "silu": torch.nn.SiLU(), "tanh": torch.nn.Tanh(),
             "sigmoid": torch.nn.Sigmoid()}
    mods = []
    for m in model:
        if isinstance(m, nn.Linear):
            lin = torch.nn.Linear(m.in_features, m.out_features)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(m.weight.data.copy()))
                lin.bias.copy_(torch.from_numpy(m.bias.data.copy()))
            mods.append(lin)
        else:
            mods.append(tacts[act])
    return torch.nn.Sequential(*mods)


def data(rng, steps, n, dims, loss):
    xs = [rng.standard_normal((n, dims[0])).astype(np.float32) for _ in range(steps)]
    if loss == "ce":
        ys = [rng.integers(0, dims[-1], n) for _ in range(steps)]
    else:
        ys = [rng.standard_normal((n, dims[-1])).astype(np.float32) for _ in range(steps)]
    return xs, ys


def states_close(a, b, **tol):
    for (k, va), (k2, vb) in zip(a.items(), b.items()):
        assert k == k2
        np.testing.assert_allclose(np.asarray(va), np.asarray(vb), err_msg=k, **tol)


@pytest.mark.parametrize("backend_name", ["cpp", "numba"])
@pytest.mark.parametrize("opt", list(OPTS))
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_fused_vs_layer_vs_torch_50_steps(backend_name, opt, act, loss, rng):
    if backend_name == "numba" and (act not in ("relu", "gelu") or opt not in ("adam", "sgd_momentum")):
        pytest.skip("numba: a representative subset (the kernel-level tests cover the rest)")
    dims = (12, 24, 16, 5)
    fused_m, layer_m = build(act), build(act)
    tm = torch_twin(fused_m, act)
    of, ol = OPTS[opt][0](fused_m.parameters()), OPTS[opt][0](layer_m.parameters())
    ot = OPTS[opt][1](tm.parameters())
    lf = nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss()
    tlf = torch.nn.CrossEntropyLoss() if loss == "ce" else torch.nn.MSELoss()
    xs, ys = data(rng, 50, 16, dims, loss)
    with nnkernels.use_backend(backend_name):
        for x, y in zip(xs, ys):
            lfused = fused_m.train_step(x, y, lf, of)
            assert fused_m.last_step_fused
            llayer = _layer_train_step(layer_m, lf, ol, x, y)
            ot.zero_grad()
            lt = tlf(tm(torch.from_numpy(x)), torch.from_numpy(y))
            lt.backward()
            ot.step()
    # float32 rounding differences (different summation orders) grow over 50 Adam/RMSprop
    # steps (they divide by sqrt of small running averages): a few elements reach ~1e-4
    tol = dict(rtol=1e-3, atol=2e-4)
    assert lfused == pytest.approx(llayer, rel=1e-4, abs=1e-6)
    assert lfused == pytest.approx(lt.item(), rel=1e-3, abs=1e-5)
    states_close(fused_m.state_dict(), layer_m.state_dict(), **tol)
    tsd = {k: v.detach().numpy() for k, v in tm.state_dict().items()}
    # vs PyTorch: float32 rounding differences grow over 50 steps (RMSprop divides by
    # sqrt of tiny running averages), so the bound is looser than fused vs layer path
    states_close(fused_m.state_dict(), tsd, rtol=2e-3, atol=3e-4)
    # gradients of the last step are visible through Parameter.grad, as after the layer path
    for pf, pl in zip(fused_m.parameters(), layer_m.parameters()):
        np.testing.assert_allclose(pf.grad, pl.grad, **tol)
    # optimizer state_dicts agree (same keys, same arrays)
    sf, sl = of.state_dict()["state"], ol.state_dict()["state"]
    assert sf.keys() == sl.keys()
    for i in sf:
        assert sf[i].keys() == sl[i].keys()
        for k in sf[i]:
            np.testing.assert_allclose(sf[i][k], sl[i][k], **tol)


def _run(model, opt, lf, xs, ys):
    losses = [model.train_step(x, y, lf, opt) for x, y in zip(xs, ys)]
    return losses, model.last_step_fused


@pytest.mark.parametrize("case", ["dropout", "batchnorm", "adagrad", "amsgrad", "l1", "smoothing",
                                  "two_groups", "ignore_index", "elu"])
def test_fallbacks_match_layer_path(case, rng):
    dims = (10, 16, 4)

    def make():
        mods = [nn.Linear(10, 16, rng=1)]
        if case == "batchnorm":
            mods.append(nn.BatchNorm1d(16))
        mods.append(nn.ELU() if case == "elu" else nn.ReLU())
        if case == "dropout":
            mods.append(nn.Dropout(0.3, rng=7))
        mods.append(nn.Linear(16, 4, rng=2))
        m = nn.Sequential(*mods)
        if case == "adagrad":
            o = optim.Adagrad(m.parameters(), lr=0.1)
        elif case == "amsgrad":
            o = optim.Adam(m.parameters(), lr=0.01, amsgrad=True)
        elif case == "two_groups":
            ps = list(m.parameters())
            o = optim.SGD([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.01}], lr=0.1)
        else:
            o = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        if case == "l1":
            lf = nn.L1Loss()
        elif case == "smoothing":
            lf = nn.CrossEntropyLoss(label_smoothing=0.1)
        else:
            lf = nn.CrossEntropyLoss()
        return m, o, lf

    xs, ys = data(rng, 5, 8, dims, "mse" if case == "l1" else "ce")
    if case == "ignore_index":
        ys[2][3] = -100
    m1, o1, lf1 = make()
    m2, o2, lf2 = make()
    l1, fused = _run(m1, o1, lf1, xs, ys)
    l2 = [_layer_train_step(m2, lf2, o2, x, y) for x, y in zip(xs, ys)]
    if case != "ignore_index":
        assert not fused
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    states_close(m1.state_dict(), m2.state_dict(), rtol=1e-6, atol=1e-7)


def test_dropout_eval_mode_and_p0_are_fused(rng):
    m = nn.MLP([8, 16, 3], dropout=0.5, rng=0)
    o = optim.Adam(m.parameters())
    xs, ys = data(rng, 2, 4, (8, 16, 3), "ce")
    m.train_step(xs[0], ys[0], nn.CrossEntropyLoss(), o)
    assert not m.last_step_fused  # training-mode dropout: layer path (NumPy masks)
    m.eval()
    m.train_step(xs[1], ys[1], nn.CrossEntropyLoss(), o)
    assert m.last_step_fused


@pytest.mark.parametrize("batch", [1, 64, 200])
def test_thread_count_independence(batch, rng):
    results = []
    xs, ys = data(rng, 5, batch, (784, 256, 128, 10), "ce")
    prev = nnkernels.get_num_threads()
    try:
        for nt in (1, 2):
            nnkernels.set_num_threads(nt)
            m = nn.MLP([784, 256, 128, 10], rng=0)
            o = optim.Adam(m.parameters(), lr=1e-3)
            losses, fused = _run(m, o, nn.CrossEntropyLoss(), xs, ys)
            assert fused
            results.append((losses, m.state_dict()))
    finally:
        nnkernels.set_num_threads(prev)
    assert results[0][0] == results[1][0]
    for k in results[0][1]:
        np.testing.assert_array_equal(results[0][1][k], results[1][1][k])


def test_fit_uses_fused_path_and_says_so(rng):
    X = rng.standard_normal((256, 10)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    m = nn.MLP([10, 32, 2], rng=0)
    h = fit(m, nn.CrossEntropyLoss(), optim.Adam(m.parameters(), lr=1e-2), (X, y), epochs=3,
            batch_size=32, progress=False, seed=0)
    assert h.fused is True and h.as_dict()["fused"] is True
    assert h.train_loss[-1] < h.train_loss[0]
    m2 = nn.MLP([10, 32, 2], rng=0)
    h2 = fit(m2, nn.CrossEntropyLoss(), optim.Adam(m2.parameters(), lr=1e-2), (X, y), epochs=3,
             batch_size=32, progress=False, seed=0, clip_grad_norm=1.0)
    assert h2.fused is False


def test_fit_same_results_fused_or_not(rng):
    X = rng.standard_normal((128, 6)).astype(np.float32)
    y = rng.standard_normal((128, 2)).astype(np.float32)
    hs, models = [], []
    for fused in (True, False):
        m = nn.MLP([6, 16, 2], activation="tanh", rng=0)
        if not fused:
            m.train_step = None  # hide the method: fit takes the layer path
        h = fit(m, nn.MSELoss(), optim.RMSprop(m.parameters(), lr=1e-3), (X, y), epochs=2,
                batch_size=16, progress=False, seed=1)
        hs.append(h)
        models.append(m)
    assert hs[0].fused and not hs[1].fused
    np.testing.assert_allclose(hs[0].train_loss, hs[1].train_loss, rtol=1e-5)
    states_close(models[0].state_dict(), models[1].state_dict(), rtol=1e-5, atol=1e-6)


def test_predict_fused_forward_matches_layer_forward(rng):
    m = nn.MLP([20, 30, 5], activation="gelu", dropout=0.2, rng=0)
    o = optim.SGD(m.parameters(), lr=0.1)
    x = rng.standard_normal((7, 20)).astype(np.float32)
    m.eval()
    m.train_step(x, rng.integers(0, 5, 7), nn.CrossEntropyLoss(), o)
    m.train()
    assert m._fused_plans
    out = m.predict(x)
    m.eval()
    ref = m(x)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert nnkernels.train.predict(m, x).shape == (7, 5)


def test_plan_follows_scheduler_and_load_state_dict(rng):
    xs, ys = data(rng, 6, 8, (6, 12, 3), "ce")
    ms = [nn.MLP([6, 12, 3], rng=0) for _ in range(2)]
    os_ = [optim.Adam(m.parameters(), lr=1e-2) for m in ms]
    sd = None
    for i, (x, y) in enumerate(zip(xs, ys)):
        for m, o in zip(ms, os_):
            if i == 3:
                o.param_groups[0]["lr"] = 1e-3
                o.param_groups[0]["weight_decay"] = 0.1
            if i == 4:
                o.load_state_dict(sd if sd is not None else o.state_dict())
            if m is ms[0]:
                m.train_step(x, y, nn.CrossEntropyLoss(), o)
                assert m.last_step_fused
            else:
                _layer_train_step(m, nn.CrossEntropyLoss(), o, x, y)
        if i == 3:
            sd = None
    states_close(ms[0].state_dict(), ms[1].state_dict(), rtol=1e-5, atol=1e-7)
