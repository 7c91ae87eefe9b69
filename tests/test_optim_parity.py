"""Optimizers and LR schedulers against PyTorch: an MLP and its torch twin
(same weights) train 25 steps on the same batches; weights must agree to
1e-5 relative (float64) / 1e-4 (float32), learning rates to 1e-12."""

from __future__ import annotations

import numpy as np
import pytest

import nnkernels
from nnkernels import nn, optim
from nnkernels.optim import lr_scheduler as sched

from _pylayer import MLP_KERNELS, best_backend, on_backend, require_kernels, torch_twin

torch = pytest.importorskip("torch")

STEPS = 25
SIZES = [12, 16, 16, 4]

OPTIMIZERS = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd_momentum": ("SGD", dict(lr=0.05, momentum=0.9)),
    "sgd_nesterov_wd": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    "sgd_dampening_maximize": ("SGD", dict(lr=0.02, momentum=0.5, dampening=0.2, maximize=True)),
    "adam": ("Adam", dict(lr=1e-2)),
    "adam_wd_amsgrad": ("Adam", dict(lr=1e-2, weight_decay=1e-2, amsgrad=True, betas=(0.8, 0.99))),
    "adamw": ("AdamW", dict(lr=1e-2)),
    "adamw_amsgrad": ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    "rmsprop": ("RMSprop", dict(lr=1e-3)),
    "rmsprop_centered_momentum_wd": ("RMSprop", dict(lr=1e-3, centered=True, momentum=0.9,
                                                     weight_decay=1e-2)),
    "adagrad": ("Adagrad", dict(lr=0.05)),
    "adagrad_decay_wd_init": ("Adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=1e-3,
                                              initial_accumulator_value=0.1)),
}

SCHEDULERS = {
    "step": ("StepLR", dict(step_size=5, gamma=0.5)),
    "multistep": ("MultiStepLR", dict(milestones=[3, 8, 15], gamma=0.3)),
    "exponential": ("ExponentialLR", dict(gamma=0.9)),
    "cosine": ("CosineAnnealingLR", dict(T_max=10, eta_min=1e-3)),
    "linear": ("LinearLR", dict(start_factor=0.25, total_iters=10)),
    "onecycle": ("OneCycleLR", dict(max_lr=0.1, total_steps=STEPS)),
    "onecycle_3phase_linear": ("OneCycleLR", dict(max_lr=0.1, total_steps=STEPS, three_phase=True,
                                                  anneal_strategy="linear")),
    "plateau": ("ReduceLROnPlateau", dict(patience=1, factor=0.5, threshold=0.05)),
}


@pytest.fixture(autouse=True)
def _default_backend():
    with nnkernels.use_backend(best_backend()):
        yield


def _batches(dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((STEPS, 16, SIZES[0])).astype(dtype)
    y = rng.integers(0, SIZES[-1], (STEPS, 16))
    return X, y


def _train_pair(dtype, opt_name, opt_kw, sched_spec=None, model_kw=None):
    model = nn.MLP(SIZES, dtype=dtype, rng=3, **(model_kw or {}))
    twin = torch_twin(model, torch)
    opt = getattr(optim, opt_name)(model.parameters(), **opt_kw)
    topt = getattr(torch.optim, opt_name)(twin.parameters(), **opt_kw)
    s = ts = None
    if sched_spec is not None:
        sname, skw = sched_spec
        s = getattr(sched, sname)(opt, **skw)
        ts = getattr(torch.optim.lr_scheduler, sname)(topt, **skw)
    loss_fn = nn.CrossEntropyLoss()
    tloss_fn = torch.nn.CrossEntropyLoss()
    X, y = _batches(dtype)
    lrs, tlrs = [], []
    for k in range(STEPS):
        opt.zero_grad()
        out = model(X[k])
        loss = loss_fn(out, y[k])
        model.backward(loss_fn.backward(), need_input_grad=False)
        opt.step()
        topt.zero_grad()
        tloss = tloss_fn(twin(torch.from_numpy(X[k])), torch.from_numpy(y[k]))
        tloss.backward()
        topt.step()
        if s is not None:
            if isinstance(s, sched.ReduceLROnPlateau):
                s.step(loss)
                ts.step(loss)  # the same metric for both: the threshold logic is compared
            else:
                s.step()
                ts.step()
            lrs.append(opt.param_groups[0]["lr"])
            tlrs.append(topt.param_groups[0]["lr"])
    return model, twin, lrs, tlrs, opt, topt


def _assert_weights(model, twin, dtype):
    rtol = 1e-5 if dtype == np.float64 else 1e-4
    tsd = twin.state_dict()
    for k, v in model.state_dict().items():
        t = tsd[k].numpy()
        scale = max(np.abs(t).max(), 1e-3)  # near-zero tensors (bias before BatchNorm): absolute
        np.testing.assert_allclose(v, t, rtol=rtol, atol=rtol * scale, err_msg=k)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_torch(dtype, name):
    opt_name, kw = OPTIMIZERS[name]
    model, twin, *_ = _train_pair(dtype, opt_name, kw)
    _assert_weights(model, twin, dtype)
    # the parameters really moved
    assert not np.allclose(model[0].weight.data, nn.MLP(SIZES, dtype=dtype, rng=3)[0].weight.data)


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_matches_torch(dtype, name):
    opt_name, kw = ("SGD", dict(lr=0.05, momentum=0.9))
    if name == "onecycle":
        opt_name, kw = ("Adam", dict(lr=1e-2))  # cycles beta1
    model, twin, lrs, tlrs, opt, topt = _train_pair(dtype, opt_name, kw, SCHEDULERS[name])
    np.testing.assert_allclose(lrs, tlrs, rtol=1e-12)
    assert len(set(np.round(lrs, 12))) > 1  # the schedule changed the lr
    if name.startswith("onecycle"):
        key = "betas" if opt_name == "Adam" else "momentum"
        np.testing.assert_allclose(np.ravel(opt.param_groups[0][key]),
                                   np.ravel(topt.param_groups[0][key]), rtol=1e-12)
    _assert_weights(model, twin, dtype)


@pytest.mark.parametrize("backend_name", ["cpp", "numba", "numpy"])
def test_adam_parity_on_every_backend(backend_name):
    require_kernels(backend_name, *MLP_KERNELS)
    with on_backend(backend_name):
        for dtype in (np.float32, np.float64):
            model, twin, *_ = _train_pair(dtype, "Adam", dict(lr=1e-2, amsgrad=True))
            _assert_weights(model, twin, dtype)


def test_param_groups_with_own_lr(dtype):
    model = nn.MLP(SIZES, dtype=dtype, rng=3)
    twin = torch_twin(model, torch)
    groups = [{"params": [model[0].weight, model[0].bias], "lr": 0.1},
              {"params": [p for i in (2, 4) for p in model[i].parameters()]}]
    tgroups = [{"params": [twin[0].weight, twin[0].bias], "lr": 0.1},
               {"params": [p for i in (2, 4) for p in twin[i].parameters()]}]
    opt = optim.SGD(groups, lr=0.01, momentum=0.9)
    topt = torch.optim.SGD(tgroups, lr=0.01, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    X, y = _batches(dtype)
    lf, tlf = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    for k in range(STEPS):
        opt.zero_grad()
        lf(model(X[k]), y[k])
        model.backward(lf.backward())
        opt.step()
        topt.zero_grad()
        tlf(twin(torch.from_numpy(X[k])), torch.from_numpy(y[k])).backward()
        topt.step()
    _assert_weights(model, twin, dtype)


def test_batchnorm_mlp_matches_torch():
    model, twin, *_ = _train_pair(np.float64, "SGD", dict(lr=0.05, momentum=0.9),
                                  model_kw=dict(batchnorm=True))
    _assert_weights(model, twin, np.float64)  # includes running_mean/var, num_batches_tracked


def test_optimizer_state_dict_roundtrip_and_torch_layout():
    dtype = np.float64
    model, twin, _, _, opt, topt = _train_pair(dtype, "Adam", dict(lr=1e-2, amsgrad=True))
    sd = opt.state_dict()
    tsd = topt.state_dict()
    assert sd["param_groups"][0]["params"] == tsd["param_groups"][0]["params"]
    assert set(sd["state"][0]) == set(tsd["state"][0])
    for i in sd["state"]:
        for k, v in sd["state"][i].items():
            np.testing.assert_allclose(v, np.asarray(tsd["state"][i][k]), rtol=1e-5, atol=1e-12)
    # continue training from a restored optimizer: identical to continuing the original
    m2 = nn.MLP(SIZES, dtype=dtype, rng=0)
    m2.load_state_dict(model.state_dict())
    opt2 = optim.Adam(m2.parameters(), lr=1.0)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 1e-2
    # torch's optimizer state loads too
    opt3 = optim.Adam(nn.MLP(SIZES, dtype=dtype, rng=0).parameters())
    opt3.load_state_dict(tsd)
    x = np.ones((3, SIZES[0]))
    lf = nn.CrossEntropyLoss()
    for m, o in ((model, opt), (m2, opt2)):
        o.zero_grad()
        lf(m(x), np.array([0, 1, 2]))
        m.backward(lf.backward())
        o.step()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, m2.state_dict()[k])


def test_optimizer_argument_errors():
    ps = list(nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD(ps, lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(ps, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam(ps, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="more than one"):
        optim.SGD([{"params": ps}, {"params": ps[:1]}], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(ValueError, match="total_steps"):
        sched.OneCycleLR(optim.SGD(ps, lr=0.1, momentum=0.9), max_lr=0.1)


def test_optimizer_after_dtype_change_is_clear_error():
    m = nn.Linear(2, 2)
    opt = optim.SGD(m.parameters(), lr=0.1)
    m.double()
    with pytest.raises(RuntimeError, match="flat buffer"):
        opt.step()


def test_one_native_call_per_group(monkeypatch):
    # The whole model is updated by one fused kernel call per step.
    from nnkernels.backends import load_backend
    model = nn.MLP([784, 256, 128, 10], rng=0)
    opt = optim.Adam(model.parameters())
    b = load_backend(nnkernels.get_backend())
    calls = []
    real = b.adam_step
    monkeypatch.setattr(b, "adam_step", lambda *a: (calls.append(a[0].size), real(*a))[1])
    opt.step()
    assert calls == [235_146]
