"""nnkernels.torch: autograd ops (gradcheck), PyTorch fallbacks, patch/unpatch,
optimizers equal to torch.optim's, nn conversion, and coexisting thread pools."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nnkernels  # noqa: E402
import nnkernels.torch as nt  # noqa: E402
from nnkernels.backends import load_backend  # noqa: E402

F = torch.nn.functional
KERNEL_BACKENDS = ["cpp", "numpy"]


def _with_kernels(backend, *names):
    missing = [n for n in names if n not in load_backend(backend).kernels]
    if missing:
        pytest.skip(f"backend {backend!r} does not implement {missing} yet")
    return nnkernels.use_backend(backend)


def _ours(y) -> bool:
    """The result came from one of our autograd Functions (not PyTorch's op)."""
    return y.grad_fn is not None and type(y.grad_fn).__name__.lstrip("_").split("Backward")[0] in (
        "LinearFn", "ActFn", "CrossEntropyFn", "MseFn", "StackFn")


def _f64(*shape, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(requires_grad)


# ---- gradcheck on every op (float64) -------------------------------------------

@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_linear_gradcheck(backend):
    with _with_kernels(backend, "linear_forward", "linear_backward"):
        x, w, b = _f64(5, 3), _f64(4, 3, seed=1), _f64(4, seed=2)
        assert _ours(nt.linear(x, w, b))
        assert torch.autograd.gradcheck(nt.linear, (x, w, b))
        assert torch.autograd.gradcheck(nt.linear, (x, w, None))
        assert torch.autograd.gradcheck(nt.linear, (_f64(2, 3, 3, seed=3), w, b))  # leading dims
        for act in ("relu", "leaky_relu"):
            f = lambda x, w, b: nt._linear_act(x, w, b, act, 0.2)
            assert torch.autograd.gradcheck(f, (x, w, b))
        # double backward goes through PyTorch's formulas
        assert torch.autograd.gradgradcheck(nt.linear, (x, w, b))


ACTS = [
    (nt.relu, F.relu, {}), (nt.gelu, F.gelu, {}), (nt.gelu, F.gelu, {"approximate": "tanh"}),
    (nt.silu, F.silu, {}), (nt.leaky_relu, F.leaky_relu, {"negative_slope": 0.2}),
]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("ours,theirs,kw", ACTS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_activation_gradcheck_and_values(backend, ours, theirs, kw):
    with _with_kernels(backend, "activation_forward", "activation_backward"):
        x = _f64(6, 5)
        y = ours(x, **kw)
        assert _ours(y)
        torch.testing.assert_close(y, theirs(x, **kw))
        assert torch.autograd.gradcheck(lambda t: ours(t, **kw), (x,))
        assert torch.autograd.gradgradcheck(lambda t: ours(t, **kw), (x,))
        x32 = torch.randn(64, 33)
        torch.testing.assert_close(ours(x32, **kw), theirs(x32, **kw))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("kw", [{}, {"reduction": "sum"}, {"reduction": "none"}, {"label_smoothing": 0.1},
                                {"ignore_index": 1}, {"weight": "w"}])
def test_cross_entropy_gradcheck(backend, kw):
    with _with_kernels(backend, "softmax_cross_entropy"):
        z = _f64(7, 4)
        t = torch.tensor([0, 1, 3, 2, 1, 0, 3])
        kw = {k: (torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64) if v == "w" else v)
              for k, v in kw.items()}
        y = nt.cross_entropy(z, t, **kw)
        assert _ours(y)
        torch.testing.assert_close(y, F.cross_entropy(z, t, **kw))
        assert torch.autograd.gradcheck(lambda a: nt.cross_entropy(a, t, **kw), (z,))
        assert torch.autograd.gradgradcheck(lambda a: nt.cross_entropy(a, t, **kw), (z,))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_gradcheck(backend, reduction):
    with _with_kernels(backend, "pointwise_loss"):
        a, b = _f64(5, 3), _f64(5, 3, seed=1)
        y = nt.mse_loss(a, b, reduction=reduction)
        assert _ours(y)
        torch.testing.assert_close(y, F.mse_loss(a, b, reduction=reduction))
        assert torch.autograd.gradcheck(lambda p, q: nt.mse_loss(p, q, reduction=reduction), (a, b))


# ---- fallbacks: never a wrong answer ------------------------------------------

def test_fallbacks_to_pytorch():
    w32, b32 = torch.randn(4, 3), torch.randn(4)
    for x in (torch.randn(2, 3, dtype=torch.bfloat16), torch.randn(2, 3, dtype=torch.float16)):
        y = nt.linear(x, w32.to(x.dtype), b32.to(x.dtype))
        assert not _ours(y) and y.dtype == x.dtype
        torch.testing.assert_close(y, F.linear(x, w32.to(x.dtype), b32.to(x.dtype)))
        torch.testing.assert_close(nt.relu(x), F.relu(x))
    # mixed dtypes: PyTorch's own error
    with pytest.raises(RuntimeError):
        nt.linear(torch.randn(2, 3, dtype=torch.float64), w32)
    with pytest.raises(RuntimeError):  # shape mismatch: PyTorch's own error too
        nt.linear(torch.randn(2, 5), w32, b32)
    # in-place variants, probability targets, broadcasting mse and empty tensors go to PyTorch
    x = torch.randn(3, 4)
    y = x.clone()
    assert nt.relu(y, inplace=True) is y
    torch.testing.assert_close(y, F.relu(x))
    p = torch.softmax(torch.randn(3, 4), 1)
    torch.testing.assert_close(nt.cross_entropy(x, p), F.cross_entropy(x, p))
    with pytest.warns(UserWarning, match="target size"):  # PyTorch's own warning, from PyTorch
        torch.testing.assert_close(nt.mse_loss(x, x[:1]), F.mse_loss(x, x[:1]))
    assert nt.linear(torch.randn(0, 3), w32, b32).shape == (0, 4)
    # under torch.compile-style tracing and vmap our path steps aside
    xs = torch.randn(2, 5, 3)
    torch.testing.assert_close(torch.vmap(lambda t: nt.linear(t, w32, b32))(xs), F.linear(xs, w32, b32))


def test_functional_matches_torch_float32():
    x, w, b = torch.randn(64, 300), torch.randn(200, 300) / 17, torch.randn(200)
    torch.testing.assert_close(nt.linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-5)


# ---- modules, patch / unpatch -------------------------------------------------

def _model(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8),
                               torch.nn.GELU(), torch.nn.Linear(8, 8), torch.nn.LeakyReLU(0.1),
                               torch.nn.Linear(8, 3)).to(dtype)


def test_linear_module_is_torch_linear():
    torch.manual_seed(3)
    a = nt.Linear(5, 4)
    torch.manual_seed(3)
    b = torch.nn.Linear(5, 4)
    assert isinstance(a, torch.nn.Linear)
    assert list(a.state_dict()) == list(b.state_dict()) == ["weight", "bias"]
    torch.testing.assert_close(a.weight, b.weight)  # same init from the same seed
    x = torch.randn(3, 5)
    torch.testing.assert_close(a(x), b(x))
    assert _ours(a(x))


def test_patch_unpatch_keeps_weights_and_outputs():
    m = _model()
    x = torch.randn(10, 12)
    ref = m(x).detach()
    keys = list(m.state_dict())
    w0 = m[0].weight
    hook_calls = []
    m[2].register_forward_hook(lambda mod, i, o: hook_calls.append(1))
    assert nt.patch(m) is m and nt.is_patched(m)
    assert type(m[0]) is nt.Linear and m[0].weight is w0 and list(m.state_dict()) == keys
    assert type(m[3]) is nt.GELU and type(m[1]).__name__ == "_FusedReLU"   # fused into m[0]
    assert type(m[2]) is nt.Linear and "_nnk_fused" not in m[2].__dict__  # has a hook: not fused
    out = m(x)
    assert _ours(out) and hook_calls == [1]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    nt.unpatch(m)
    assert not nt.is_patched(m)
    assert [type(c) for c in m] == [type(c) for c in _model()]
    torch.testing.assert_close(m(x).detach(), ref)


def test_patch_fuse_false_and_user_subclasses_untouched():
    class MyLinear(torch.nn.Linear):
        pass

    m = torch.nn.Sequential(MyLinear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2), torch.nn.ReLU())
    nt.patch(m, fuse=False)
    assert type(m[0]) is MyLinear and type(m[1]) is nt.ReLU and type(m[2]) is nt.Linear
    assert type(m[3]) is nt.ReLU
    with pytest.raises(TypeError, match="model"):
        nt.patch(object())


def _stack_model(dtype=torch.float64):
    torch.manual_seed(1)
    L = torch.nn.Linear
    return torch.nn.Sequential(L(6, 9), torch.nn.ReLU(), L(9, 8), torch.nn.GELU(), L(8, 7, bias=False),
                               torch.nn.SiLU(), L(7, 6), torch.nn.GELU(approximate="tanh"), L(6, 5),
                               torch.nn.LeakyReLU(0.2), L(5, 4)).to(dtype)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_sequential_stack_node_gradcheck_and_parity(backend):
    ref, m = _stack_model(), nt.patch(_stack_model())
    assert type(m).__name__ == "_StackSequential" and isinstance(m, torch.nn.Sequential)
    x = _f64(5, 2, 6, seed=3)
    with _with_kernels(backend, "linear_forward", "linear_backward", "activation_forward",
                       "activation_backward"):
        out = m(x)
        assert type(out.grad_fn).__name__ == "_StackFnBackward"  # one node for the whole stack
        plan, params = m._plan()
        assert [a for _, a in plan] == [("relu", 0.0), ("gelu", 0.0), ("silu", 0.0),
                                        ("gelu_tanh", 0.0), ("leaky_relu", 0.2), None]
        assert torch.autograd.gradcheck(lambda x_, *p: nt._StackFn.apply(x_, plan, *p),
                                        (x, *params), eps=1e-6, atol=1e-6)
        torch.testing.assert_close(out, ref(x))
        out.square().sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    ref(x2).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    for a, b in zip(m.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_sequential_stack_node_falls_back_and_unpatches():
    m, ref = nt.patch(_stack_model()), _stack_model()
    x = _f64(4, 6, seed=4)
    m[4].weight.requires_grad_(False)  # a frozen layer: no gradient for it, the rest exact
    ref[4].weight.requires_grad_(False)
    m(x).sum().backward()
    ref(x.detach().clone().requires_grad_(True)).sum().backward()
    assert m[4].weight.grad is None
    for a, b in zip(m.parameters(), ref.parameters()):
        if b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad)
    # double backward goes to PyTorch's formulas, through the same node
    (gx,) = torch.autograd.grad(m(x).sum(), x, create_graph=True)
    (gx_ref,) = torch.autograd.grad(ref(x).sum(), x, create_graph=True)
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(torch.autograd.grad(gx.sum(), x)[0], torch.autograd.grad(gx_ref.sum(), x)[0])
    # the output is saved for the backward (the last ReLU's derivative is read off it):
    # changing it in place is caught, as PyTorch does
    relu_last = nt.patch(torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU()).double())
    out = relu_last(x)
    out.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()
    # a hook added after patch: the modules run one by one (and the hook fires)
    seen = []
    h = m[2].register_forward_hook(lambda mod, i, o: seen.append(o.shape))
    out = m(x)
    assert seen == [(4, 8)] and type(out.grad_fn).__name__ != "_StackFnBackward"
    torch.testing.assert_close(out, ref(x))
    h.remove()
    # a module the node does not know (Dropout): module by module, still our kernels
    m.append(torch.nn.Dropout(0.0))
    out = m(x)
    assert type(out.grad_fn).__name__ != "_StackFnBackward" and _ours(out)
    with pytest.raises(RuntimeError):  # sizes that do not chain: PyTorch's error
        nt.patch(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(5, 2)))(torch.randn(2, 3))
    nt.unpatch(m)
    assert type(m) is torch.nn.Sequential and not nt.is_patched(m)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("opt", ["Adam", "AdamW", "SGD"])
def test_training_loop_patched_equals_unpatched(dtype, opt):
    kw = {"Adam": dict(lr=1e-2, weight_decay=1e-3, amsgrad=True), "AdamW": dict(lr=1e-2, weight_decay=0.1),
          "SGD": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)}[opt]

    def train(patched):
        m = _model(dtype)
        lf = torch.nn.CrossEntropyLoss()
        if patched:
            nt.patch(m)
            nt.patch(lf)
            o = getattr(nt, opt)(m.parameters(), **kw)
        else:
            o = getattr(torch.optim, opt)(m.parameters(), **kw)
        g = torch.Generator().manual_seed(1)
        for _ in range(20):
            x = torch.randn(32, 12, generator=g, dtype=dtype)
            y = torch.randint(0, 3, (32,), generator=g)
            o.zero_grad()
            lf(m(x), y).backward()
            o.step()
        return m, o

    (ma, oa), (mb, ob) = train(False), train(True)
    tol = dict(rtol=1e-4, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for a, b in zip(ma.parameters(), mb.parameters()):
        torch.testing.assert_close(a, b, **tol)
    # optimizer state has torch.optim's format: each side loads the other's
    sa, sb = oa.state_dict(), ob.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert all(set(sa["state"][i]) == set(sb["state"][i]) for i in sa["state"])
    ob.load_state_dict(sa)


def test_optimizer_falls_back_for_tensor_lr():
    p = torch.nn.Parameter(torch.randn(5))
    q = torch.nn.Parameter(p.detach().clone())
    a = nt.Adam([p], lr=torch.tensor(0.1))
    b = torch.optim.Adam([q], lr=torch.tensor(0.1))
    for o, t in ((a, p), (b, q)):
        (t ** 2).sum().backward()
        o.step()
    torch.testing.assert_close(p, q)


# ---- nnkernels.nn <-> torch.nn ------------------------------------------------

def test_to_torch_from_torch_roundtrip():
    from nnkernels import nn as nkn

    with nnkernels.use_backend("numpy"):
        mlp = nkn.MLP([6, 9, 4, 3], activation="tanh")
        tm = nt.to_torch(mlp)
        assert isinstance(tm, torch.nn.Sequential)
        assert list(tm.state_dict()) == list(mlp.state_dict())
        for k, v in mlp.state_dict().items():
            np.testing.assert_array_equal(tm.state_dict()[k].numpy(), v)
        x = np.random.default_rng(0).random((5, 6), dtype=np.float32)
        mlp.eval()
        tm.eval()
        np.testing.assert_allclose(tm(torch.from_numpy(x)).detach().numpy(), mlp(x), rtol=1e-5, atol=1e-6)
        back = nt.from_torch(nt.patch(tm))
        for k, v in back.state_dict().items():
            np.testing.assert_array_equal(v, mlp.state_dict()[k])
        with pytest.raises(TypeError, match="no nnkernels.nn equivalent"):
            nt.from_torch(torch.nn.Conv1d(1, 1, 1))


# ---- imports and thread pools (fresh interpreters) -------------------------------

_SCRIPT = textwrap.dedent("""
    import sys
    order = sys.argv[1]
    if order == "torch-first":
        import torch, nnkernels, nnkernels.torch as nt
    else:
        import nnkernels, nnkernels.torch as nt, torch
    torch.set_num_threads(2)
    nnkernels.set_num_threads(1)
    assert torch.get_num_threads() == 2, torch.get_num_threads()
    torch.set_num_threads(1)
    nnkernels.set_num_threads(2)
    assert nnkernels.get_num_threads() == 2 and torch.get_num_threads() == 1
    m = nt.patch(torch.nn.Sequential(torch.nn.Linear(300, 200), torch.nn.ReLU(), torch.nn.Linear(200, 3)))
    x = torch.randn(256, 300)
    m(x).sum().backward()
    torch.testing.assert_close(m(x), torch.nn.functional.linear(
        torch.relu(torch.nn.functional.linear(x, m[0].weight, m[0].bias)), m[2].weight, m[2].bias),
        rtol=1e-4, atol=1e-4)
    assert nnkernels.get_num_threads() == 2 and torch.get_num_threads() == 1
    print("ok")
""")


@pytest.mark.parametrize("order", ["torch-first", "nnkernels-first"])
def test_import_orders_and_thread_pools(order):
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(nnkernels.__file__)),
                                                    env.get("PYTHONPATH", "")] if p)
    r = subprocess.run([sys.executable, "-c", _SCRIPT, order], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_import_nnkernels_does_not_import_torch():
    code = "import sys, nnkernels, nnkernels.sklearn as s; print('torch' in sys.modules)"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(nnkernels.__file__))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_optimizer_hooks_profiler_zero_grad_and_mixed_dtypes():
    # step hooks run once per step (ours and torch.optim's global ones), also on the
    # fallback path; the profiler sees the step; float32 and float64 params in one group
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # torch.optim.Adam.step gets torch's wrapper
    ps = [torch.nn.Parameter(torch.randn(7)), torch.nn.Parameter(torch.randn(3, 2, dtype=torch.float64))]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    ours, ref = nt.Adam(ps, lr=0.1, amsgrad=True), torch.optim.Adam(qs, lr=0.1, amsgrad=True)
    calls = []
    ours.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    ours.register_step_post_hook(lambda o, a, k: calls.append("post"))
    from torch.optim.optimizer import register_optimizer_step_pre_hook
    h = register_optimizer_step_pre_hook(lambda o, a, k: calls.append("global"))
    for _ in range(3):
        for o, ts in ((ours, ps), (ref, qs)):
            o.zero_grad()
            sum((t ** 2).sum() for t in ts).backward()
            o.step()
    h.remove()
    assert calls.count("pre") == calls.count("post") == 3 and calls.count("global") == 6
    for p, q in zip(ps, qs):
        torch.testing.assert_close(p, q)
    ours.zero_grad()
    assert all(p.grad is None for p in ps)
    sum(p.sum() for p in ps).backward()
    ours.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in ps)
    # tensor lr: torch.optim's step, its hooks still once
    calls.clear()
    ours.param_groups[0]["lr"] = torch.tensor(0.1)
    ours.step()
    assert calls == ["pre", "post"]
    ours.param_groups[0]["lr"] = 0.1
    with torch.profiler.profile() as prof:
        ours.step()
    assert any("Optimizer.step#Adam.step" in e.name for e in prof.events())


def test_adam_step_multi_checks_its_lists():
    from nnkernels import _C
    p, m, v, g = (np.zeros(4, np.float32) for _ in range(4))
    q = np.zeros(3, np.float64)
    args = (0.1, 0.9, 0.999, 1e-8, 0.0, False, False, False)
    with pytest.raises(ValueError, match="exp_avgs"):
        _C.adam_step_multi([p], [], [v], None, [g], [1], *args)
    with pytest.raises(TypeError, match="params"):
        _C.adam_step_multi([p, q], [m, q.copy()], [v, q.copy()], None, [g, q.copy()], [1, 1], *args)
    with pytest.raises(ValueError, match="share memory"):
        big = np.zeros(8, np.float32)
        _C.adam_step_multi([big[:4], big[2:6]], [m, m.copy()], [v, v.copy()], None, [g, g.copy()], [1, 1],
                           *args)
    with pytest.raises(ValueError, match="step"):
        _C.adam_step_multi([p], [m], [v], None, [g], [0], *args)
    with pytest.raises(ValueError, match="max_exp_avg_sqs"):
        _C.adam_step_multi([p], [m], [v], None, [g], [1], 0.1, 0.9, 0.999, 1e-8, 0.0, True, False, False)
    # the update itself: the same as adam_step per entry
    rng = np.random.default_rng(0)
    a = [rng.standard_normal(n).astype(np.float32) for n in (5, 40)]
    b = [x.copy() for x in a]
    grads = [rng.standard_normal(x.shape).astype(np.float32) for x in a]
    sa = [[np.zeros_like(x) for x in a] for _ in range(2)]
    sb = [[np.zeros_like(x) for x in a] for _ in range(2)]
    _C.adam_step_multi(a, sa[0], sa[1], None, grads, [1, 3], *args)
    for i in range(2):
        _C.adam_step(b[i], sb[0][i], sb[1][i], None, grads[i], [1, 3][i], *args)
        np.testing.assert_array_equal(a[i], b[i])
