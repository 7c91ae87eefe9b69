"""nnkernels.nn modules: forward/backward against torch autograd, gradcheck,
state_dict layout, dtype handling, initialisers, flat parameter buffers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnkernels
from nnkernels import nn
from nnkernels.utils import gradcheck

from _pylayer import MLP_KERNELS, best_backend, on_backend, require_kernels, torch_twin

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _default_backend():
    with nnkernels.use_backend(best_backend()):
        yield


def _modules():
    return [
        ("Linear", lambda dt: nn.Linear(6, 4, dtype=dt, rng=1)),
        ("LinearNoBias", lambda dt: nn.Linear(6, 4, bias=False, dtype=dt, rng=1)),
        ("ReLU", lambda dt: nn.ReLU(dtype=dt)),
        ("LeakyReLU", lambda dt: nn.LeakyReLU(0.2, dtype=dt)),
        ("ELU", lambda dt: nn.ELU(0.7, dtype=dt)),
        ("Sigmoid", lambda dt: nn.Sigmoid(dtype=dt)),
        ("Tanh", lambda dt: nn.Tanh(dtype=dt)),
        ("GELU", lambda dt: nn.GELU(dtype=dt)),
        ("GELUtanh", lambda dt: nn.GELU("tanh", dtype=dt)),
        ("SiLU", lambda dt: nn.SiLU(dtype=dt)),
        ("Softplus", lambda dt: nn.Softplus(beta=2.0, threshold=3.0, dtype=dt)),
        ("Softmax", lambda dt: nn.Softmax(dim=-1, dtype=dt)),
        ("Softmax0", lambda dt: nn.Softmax(dim=0, dtype=dt)),
        ("LogSoftmax", lambda dt: nn.LogSoftmax(dim=1, dtype=dt)),
        ("BatchNorm1d", lambda dt: nn.BatchNorm1d(6, dtype=dt)),
        ("Flatten", lambda dt: nn.Flatten(dtype=dt)),
        ("Identity", lambda dt: nn.Identity(dtype=dt)),
    ]


MODULES = _modules()


def _torch_module(name, m):
    if name.startswith("Linear"):
        t = torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    elif name == "BatchNorm1d":
        t = torch.nn.BatchNorm1d(m.num_features)
    elif name.startswith("GELU"):
        t = torch.nn.GELU(approximate=m.approximate)
    elif name.startswith("Softmax") or name == "LogSoftmax":
        t = getattr(torch.nn, "LogSoftmax" if name == "LogSoftmax" else "Softmax")(dim=m.dim)
    else:
        kw = {"LeakyReLU": {"negative_slope": 0.2}, "ELU": {"alpha": 0.7},
              "Softplus": {"beta": 2.0, "threshold": 3.0}}.get(name, {})
        t = getattr(torch.nn, name)(**kw)
    t = t.double()
    t.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float64) if v.dtype.kind == "f" else v)
                       for k, v in m.state_dict().items()})
    return t


@pytest.mark.parametrize("name,make", MODULES, ids=[n for n, _ in MODULES])
def test_module_backward_matches_torch(backend, dtype, name, make):
    require_kernels(backend, *MLP_KERNELS)
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((5, 6)) * 2).astype(dtype)
    with on_backend(backend):
        m = make(dtype)
        t = _torch_module(name, m)
        y = m(x)
        go = rng.standard_normal(y.shape).astype(dtype)
        gx = m.backward(go)
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    ty = t(tx)
    ty.backward(torch.from_numpy(go.astype(np.float64)))
    tol = 2e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=tol, atol=tol)
    for (pn, p), (tn, tp) in zip(m.named_parameters(), t.named_parameters()):
        assert pn == tn
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=tol, atol=tol, err_msg=pn)
    if name == "BatchNorm1d":
        np.testing.assert_allclose(m.running_var, t.running_var.numpy(), rtol=tol)
        assert int(m.num_batches_tracked) == int(t.num_batches_tracked) == 1


@pytest.mark.parametrize("name,make", MODULES, ids=[n for n, _ in MODULES])
def test_module_gradcheck(name, make):
    x = np.random.default_rng(8).standard_normal((4, 6))
    assert gradcheck(make(np.float64), x)


def test_gradcheck_catches_wrong_backward():
    class Bad(nn.Tanh):
        def backward(self, grad_out, need_input_grad=True):
            return grad_out  # wrong: ignores tanh'
    with pytest.raises(AssertionError, match="input"):
        gradcheck(Bad(dtype=np.float64), np.ones((2, 3)))


def test_gradcheck_mlp_with_batchnorm():
    m = nn.MLP([5, 7, 3], activation="tanh", batchnorm=True, dtype=np.float64, rng=0)
    assert gradcheck(m, np.random.default_rng(0).standard_normal((6, 5)))


def test_backward_accumulates_into_grad():
    lin = nn.Linear(3, 2, dtype=np.float64, rng=0)
    x = np.ones((4, 3))
    lin(x)
    lin.backward(np.ones((4, 2)))
    g1 = lin.weight.grad.copy()
    lin(x)
    lin.backward(np.ones((4, 2)))
    np.testing.assert_allclose(lin.weight.grad, 2 * g1)
    grad_obj = lin.weight.grad
    lin.zero_grad()
    assert lin.weight.grad is grad_obj and not grad_obj.any()


def test_linear_init_matches_torch_distribution():
    # kaiming_uniform(a=sqrt(5)) => U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
    lin = nn.Linear(400, 300, rng=0)
    bound = 1 / math.sqrt(400)
    for a in (lin.weight.data, lin.bias.data):
        assert a.dtype == np.float32
        assert np.abs(a).max() <= bound
        assert np.abs(a).max() > 0.95 * bound
    assert abs(lin.weight.data.std() - bound / math.sqrt(3)) < 0.02 * bound
    torch.manual_seed(0)
    t = torch.nn.Linear(400, 300)
    assert abs(float(t.weight.detach().std()) - float(lin.weight.data.std())) < 0.02 * bound


def test_init_functions_statistics():
    rng = np.random.default_rng(0)
    w = np.empty((500, 400))
    nn.init.kaiming_normal_(w, nonlinearity="relu", rng=rng)
    assert abs(w.std() - math.sqrt(2 / 400)) < 0.01 * math.sqrt(2 / 400) * 5
    nn.init.xavier_uniform_(w, rng=rng)
    assert np.abs(w).max() <= math.sqrt(6 / 900)
    nn.init.xavier_normal_(w, rng=rng)
    assert abs(w.std() - math.sqrt(2 / 900)) < 0.05 * math.sqrt(2 / 900)
    nn.init.kaiming_uniform_(w, a=0, rng=rng)
    assert np.abs(w).max() <= math.sqrt(6 / 400)
    nn.init.zeros_(w)
    assert not w.any()
    p = nn.Parameter(np.zeros(3))
    nn.init.ones_(p)
    assert (p.data == 1).all()


def test_manual_seed_reproducible():
    nnkernels.manual_seed(5)
    a = nn.MLP([4, 8, 2]).state_dict()
    nnkernels.manual_seed(5)
    b = nn.MLP([4, 8, 2]).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = nn.MLP([4, 8, 2], rng=1).state_dict()
    assert not np.array_equal(a["0.weight"], c["0.weight"])


def test_state_dict_keys_match_torch_sequential():
    m = nn.MLP([6, 5, 4, 3], batchnorm=True, dropout=0.1, rng=0)
    t = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.ReLU(),
                            torch.nn.Dropout(0.1), torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4),
                            torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(4, 3))
    sd = m.state_dict()
    tsd = t.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        assert sd[k].shape == tuple(tsd[k].shape), k
    # ours -> torch and torch -> ours
    t.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    with torch.no_grad():
        for p in t.parameters():
            p.mul_(2)
    m.load_state_dict(t.state_dict())
    np.testing.assert_allclose(m[0].weight.data, 2 * sd["0.weight"])
    assert m[1].num_batches_tracked.dtype == np.int64


def test_load_state_dict_checks():
    m = nn.MLP([4, 3, 2], rng=0)
    sd = m.state_dict()
    bad = dict(sd)
    bad["0.weight"] = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match=r"0\.weight"):
        m.load_state_dict(bad)
    bad = dict(sd)
    del bad["2.bias"]
    with pytest.raises(KeyError, match=r"2\.bias"):
        m.load_state_dict(bad)
    # float64 values are copied into the float32 model (its own dtype)
    sd64 = {k: v.astype(np.float64) + 1 for k, v in sd.items()}
    m.load_state_dict(sd64)
    assert m[0].weight.data.dtype == np.float32
    np.testing.assert_allclose(m[0].weight.data, sd["0.weight"] + 1, rtol=1e-6)


def test_dtype_conversion_and_mismatch_error():
    m = nn.MLP([4, 3, 2], rng=0)
    assert m.dtype == np.float32
    x64 = np.ones((2, 4))
    with pytest.raises(TypeError, match="float64.*float32"):
        m(x64)
    m.double()
    assert all(p.data.dtype == np.float64 and p.grad.dtype == np.float64 for p in m.parameters())
    assert m(x64).dtype == np.float64
    with pytest.raises(TypeError, match="float32.*float64"):
        m(np.ones((2, 4), np.float32))
    m.float()
    assert m(np.ones((2, 4), np.float32)).dtype == np.float32
    bn = nn.BatchNorm1d(3).double()
    assert bn.running_mean.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64


def test_repr_and_counts():
    m = nn.MLP([784, 256, 128, 10])
    r = repr(m)
    assert "(0): Linear(in_features=784, out_features=256, bias=True)" in r
    assert "(1): ReLU()" in r
    assert "235,146" in m.summary()
    assert len(list(m.parameters())) == 6
    assert [n for n, _ in m.named_parameters()][:2] == ["0.weight", "0.bias"]


def test_train_eval_modes_dropout_batchnorm():
    m = nn.Sequential(nn.Linear(4, 50, rng=0), nn.BatchNorm1d(50), nn.Dropout(0.5, rng=1))
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    y_train = m(x)
    assert (y_train == 0).mean() > 0.3  # dropout active
    assert int(m[1].num_batches_tracked) == 1
    m.eval()
    assert not m[2].training
    y1, y2 = m(x), m(x)
    np.testing.assert_array_equal(y1, y2)
    assert int(m[1].num_batches_tracked) == 1  # no update in eval
    with pytest.raises(RuntimeError, match="training mode"):
        nn.Linear(2, 2).eval().backward(np.ones((1, 2), np.float32))


def test_dropout_backward_uses_mask():
    d = nn.Dropout(0.3, dtype=np.float64, rng=0)
    x = np.ones((200, 10))
    y = d(x)
    g = d.backward(np.ones_like(x))
    np.testing.assert_array_equal(g, y)
    assert abs(y.mean() - 1) < 0.1
    assert set(np.unique(y)) <= {0.0, 1 / 0.7}


def test_flat_parameters_rebinding():
    m = nn.MLP([5, 4, 3], rng=0)
    before = m.state_dict()
    flat = nn.flatten_parameters(m.parameters())
    assert flat.data.size == m.num_parameters()
    for p in m.parameters():
        assert p.data.base is flat.data and p.grad.base is flat.grad
    after = m.state_dict()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    # modules accumulate into the views; load_state_dict writes in place
    x = np.ones((2, 5), np.float32)
    m(x)
    m.backward(np.ones((2, 3), np.float32))
    assert flat.grad.any()
    m.load_state_dict(before)
    flat.check_bound()
    m.double()
    with pytest.raises(RuntimeError, match="flat buffer"):
        flat.check_bound()
    with pytest.raises(TypeError, match="one dtype"):
        nn.flatten_parameters([nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(2, np.float32))])


def test_mlp_options():
    m = nn.MLP([3, 4, 2], activation="gelu", dropout=0.2, batchnorm=True, init="xavier", rng=0)
    assert [type(x).__name__ for x in m] == ["Linear", "BatchNorm1d", "GELU", "Dropout", "Linear"]
    assert not m[0].bias.data.any()
    with pytest.raises(ValueError, match="activation"):
        nn.MLP([3, 2], activation="swish2")
    t = nn.MLP([3, 4, 2], init="torch", rng=0)
    assert t[0].bias.data.any()


def test_mlp_forward_matches_torch_twin():
    m = nn.MLP([6, 8, 8, 3], activation="elu", rng=0, dtype=np.float64)
    t = torch_twin(m, torch)
    x = np.random.default_rng(0).standard_normal((4, 6))
    np.testing.assert_allclose(m(x), t(torch.from_numpy(x)).detach().numpy(), rtol=1e-12)


def _loss_cases(rng):
    x = rng.standard_normal((6, 4))
    cls = rng.integers(0, 4, 6)
    p = 1 / (1 + np.exp(-x))
    t01 = rng.random((6, 4))
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    q = rng.random((6, 4))
    q /= q.sum(1, keepdims=True)
    w = np.array([1.0, 2.0, 0.5, 1.5])
    return [
        ("CrossEntropyLoss", {}, x, cls),
        ("CrossEntropyLoss", {"label_smoothing": 0.1, "reduction": "sum"}, x, cls),
        ("CrossEntropyLoss", {"weight": w}, x, cls),
        ("NLLLoss", {}, logp, cls),
        ("MSELoss", {}, x, t01),
        ("L1Loss", {"reduction": "sum"}, x, t01),
        ("HuberLoss", {"delta": 0.5}, x, t01),
        ("BCELoss", {}, p, t01),
        ("BCEWithLogitsLoss", {"pos_weight": np.full(4, 2.0)}, x, t01),
        ("KLDivLoss", {"reduction": "batchmean"}, logp, q),
    ]


@pytest.mark.parametrize("case", range(10))
def test_loss_modules_match_torch(case):
    name, kw, x, t = _loss_cases(np.random.default_rng(case))[case]
    fn = getattr(nn, name)(**kw)
    loss = fn(x, t)
    assert isinstance(loss, float)
    g = fn.backward()
    assert fn.value(x, t) == pytest.approx(loss, rel=1e-12)
    tkw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    tx = torch.from_numpy(x).requires_grad_()
    tl = getattr(torch.nn, name)(**tkw)(tx, torch.from_numpy(t))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-10)
    np.testing.assert_allclose(g, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_loss_reduction_none_backward():
    x = np.random.default_rng(0).standard_normal((5, 3))
    fn = nn.CrossEntropyLoss(reduction="none")
    losses = fn(x, np.array([0, 1, 2, 0, 1]))
    assert losses.shape == (5,)
    g = fn.backward(np.full(5, 0.2))
    mean_fn = nn.CrossEntropyLoss()
    mean_fn(x, np.array([0, 1, 2, 0, 1]))
    np.testing.assert_allclose(g, mean_fn.backward(), rtol=1e-12)
    with pytest.raises(ValueError, match="grad_output"):
        fn.backward()
