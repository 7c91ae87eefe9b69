"""The fused MLP step (backends' mlp_step_plan) against PyTorch and the NumPy
reference: forward, loss, gradients and the optimizer update, many steps."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import nnkernels
from nnkernels.backends import load_backend
from nnkernels.backends.interface.fused import STATE_BUFFERS, MlpSpec, OptimConfig

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problems: its thread pool only contends with ours
    yield
    torch.set_num_threads(prev)

TORCH_ACT = {
    "none": lambda t, a: t,
    "relu": lambda t, a: torch.relu(t),
    "leaky_relu": lambda t, a: torch.nn.functional.leaky_relu(t, a),
    "gelu": lambda t, a: torch.nn.functional.gelu(t),
    "gelu_tanh": lambda t, a: torch.nn.functional.gelu(t, approximate="tanh"),
    "silu": lambda t, a: torch.nn.functional.silu(t),
    "tanh": lambda t, a: torch.tanh(t),
    "sigmoid": lambda t, a: torch.sigmoid(t),
}

OPTIMS = {
    "sgd": dict(momentum=0.9, weight_decay=1e-3),
    "sgd_plain": dict(),
    "sgd_nesterov": dict(momentum=0.8, nesterov=True, dampening=0.0),
    "sgd_damp": dict(momentum=0.5, dampening=0.3),
    "adam": dict(weight_decay=1e-2),
    "adamw": dict(weight_decay=1e-2),
    "rmsprop": dict(),
    "rmsprop_full": dict(momentum=0.9, centered=True, weight_decay=1e-3),
}


def make_spec(dims, acts, act_params, loss, opt, dtype, rng, bias=True, **cfg):
    """Flat buffers laid out W0, b0, W1, b1, ... with PyTorch-like init."""
    L = len(dims) - 1
    w_off, b_off, off = [], [], 0
    for l in range(L):
        w_off.append(off)
        off += dims[l + 1] * dims[l]
        if bias:
            b_off.append(off)
            off += dims[l + 1]
        else:
            b_off.append(-1)
    params = np.empty(off, dtype=dtype)
    for l in range(L):
        bound = 1 / np.sqrt(dims[l])
        n = dims[l + 1] * dims[l]
        params[w_off[l]:w_off[l] + n] = rng.uniform(-bound, bound, n)
        if bias:
            params[b_off[l]:b_off[l] + dims[l + 1]] = rng.uniform(-bound, bound, dims[l + 1])
    kind = opt.split("_")[0]
    state = tuple(np.zeros(off, dtype=dtype) for _ in range(STATE_BUFFERS[kind]))
    config = OptimConfig(**{k.replace("beta1", "beta1"): v for k, v in cfg.items()})
    return MlpSpec(tuple(dims), tuple(acts), tuple(act_params), tuple(w_off), tuple(b_off), params,
                   np.zeros(off, dtype=dtype), state, loss, kind, config)


def copy_spec(spec):
    return MlpSpec(spec.dims, spec.activations, spec.act_params, spec.w_off, spec.b_off,
                   spec.params.copy(), spec.grads.copy(), tuple(s.copy() for s in spec.state),
                   spec.loss, spec.optimizer, spec.config)


def torch_model(spec):
    tdt = torch.float32 if spec.params.dtype == np.float32 else torch.float64
    Ws, bs = [], []
    for l in range(spec.n_layers):
        o, i = spec.dims[l + 1], spec.dims[l]
        Ws.append(torch.tensor(spec.params[spec.w_off[l]:spec.w_off[l] + o * i].reshape(o, i),
                               dtype=tdt, requires_grad=True))
        bs.append(torch.tensor(spec.params[spec.b_off[l]:spec.b_off[l] + o], dtype=tdt,
                               requires_grad=True) if spec.b_off[l] >= 0 else None)
    return Ws, bs


def torch_optimizer(spec, params, lr):
    c = spec.config
    kind = spec.optimizer
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=c.momentum, dampening=c.dampening,
                               weight_decay=c.weight_decay, nesterov=c.nesterov, maximize=c.maximize)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(c.beta1, c.beta2), eps=c.eps,
                                weight_decay=c.weight_decay, maximize=c.maximize)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(c.beta1, c.beta2), eps=c.eps,
                                 weight_decay=c.weight_decay, maximize=c.maximize)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=c.alpha, eps=c.eps, weight_decay=c.weight_decay,
                                   momentum=c.momentum, centered=c.centered, maximize=c.maximize)
    raise AssertionError(kind)


def torch_steps(spec, xs, ys, lr):
    Ws, bs = torch_model(spec)
    params = [p for pair in zip(Ws, bs) for p in pair if p is not None]
    groups = params
    if not spec.config.decay_bias:  # weight decay on the weights only: biases in a group without it
        groups = [{"params": Ws}, {"params": [b for b in bs if b is not None], "weight_decay": 0.0}]
    opt = torch_optimizer(spec, groups, lr)
    losses = []
    for x, y in zip(xs, ys):
        opt.zero_grad()
        h = torch.from_numpy(x)
        for l in range(spec.n_layers):
            h = h @ Ws[l].T
            if bs[l] is not None:
                h = h + bs[l]
            h = TORCH_ACT[spec.activations[l]](h, spec.act_params[l])
        if spec.loss == "cross_entropy":
            loss = torch.nn.functional.cross_entropy(h, torch.from_numpy(y))
        else:
            loss = torch.nn.functional.mse_loss(h, torch.from_numpy(y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    flat = np.concatenate([p.detach().numpy().ravel() for p in params])
    grads = np.concatenate([p.grad.numpy().ravel() for p in params])
    return np.array(losses), flat, grads


def batches(spec, rng, n, steps):
    dt = spec.params.dtype
    xs = [rng.standard_normal((n, spec.dims[0])).astype(dt) for _ in range(steps)]
    if spec.loss == "cross_entropy":
        ys = [rng.integers(0, spec.dims[-1], n).astype(np.int64) for _ in range(steps)]
    else:
        ys = [rng.standard_normal((n, spec.dims[-1])).astype(dt) for _ in range(steps)]
    return xs, ys


def run_plan(backend, spec, xs, ys, lr):
    plan = load_backend(backend).mlp_step_plan(spec)
    losses = [plan.step(x, y, lr, t + 1) for t, (x, y) in enumerate(zip(xs, ys))]
    return np.array(losses)


def check_vs_torch(backend, spec, xs, ys, lr):
    """The backend's steps over (xs, ys) give PyTorch's losses, parameters and gradients (float64)."""
    ref_loss, ref_p, ref_g = torch_steps(copy_spec(spec), xs, ys, lr)
    losses = run_plan(backend, spec, xs, ys, lr)
    tol = params_tol(np.float64)
    np.testing.assert_allclose(losses, ref_loss, **tol)
    np.testing.assert_allclose(spec.params, ref_p, **tol)
    np.testing.assert_allclose(spec.grads, ref_g, **tol)


def params_tol(dtype):
    return dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("act", ["none", "relu", "leaky_relu", "gelu", "gelu_tanh", "silu", "tanh",
                                 "sigmoid"])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_activations_vs_torch(backend, act, opt, rng):
    dims = [13, 24, 17, 5]
    acts = [act, act, "none"]
    spec = make_spec(dims, acts, [0.1] * 3, "cross_entropy", opt, np.float64, rng, **OPTIMS[opt])
    xs, ys = batches(spec, rng, 9, 6)
    ref_loss, ref_p, ref_g = torch_steps(copy_spec(spec), xs, ys, 0.01)
    losses = run_plan(backend, spec, xs, ys, 0.01)
    np.testing.assert_allclose(losses, ref_loss, **params_tol(np.float64))
    np.testing.assert_allclose(spec.params, ref_p, **params_tol(np.float64))
    np.testing.assert_allclose(spec.grads, ref_g, **params_tol(np.float64))


@pytest.mark.parametrize("opt", list(OPTIMS))
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_optimizers_losses_vs_torch_50_steps(backend, dtype, opt, loss, rng):
    dims = [20, 32, 16, 4]
    spec = make_spec(dims, ["relu", "tanh", "none"], [0.0] * 3, loss, opt, dtype, rng, **OPTIMS[opt])
    xs, ys = batches(spec, rng, 16, 50)
    lr = 1e-3 if opt.startswith("rmsprop") else 0.01
    ref_loss, ref_p, ref_g = torch_steps(copy_spec(spec), xs, ys, lr)
    losses = run_plan(backend, spec, xs, ys, lr)
    tol = params_tol(dtype)
    np.testing.assert_allclose(losses, ref_loss, **tol)
    np.testing.assert_allclose(spec.params, ref_p, **tol)
    np.testing.assert_allclose(spec.grads, ref_g, **tol)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("opt", list(OPTIMS))
def test_small_batches_every_optimizer_vs_torch(backend, opt, batch, rng):
    # batch <= 4: the C++ step updates each weight row inside the backward pass
    dims = [20, 32, 16, 4]
    spec = make_spec(dims, ["relu", "tanh", "none"], [0.0] * 3, "cross_entropy", opt, np.float64, rng,
                     **OPTIMS[opt])
    xs, ys = batches(spec, rng, batch, 8)
    check_vs_torch(backend, spec, xs, ys, 1e-3 if opt.startswith("rmsprop") else 0.01)


@pytest.mark.parametrize("batch", [3, 40])
@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw", "rmsprop_full"])
def test_weight_decay_on_weights_only(backend, opt, batch, rng):
    # decay_bias=False (scikit-learn's L2 term): the biases get no weight decay;
    # batch 3 takes the C++ in-backward update, batch 40 the pass after it
    dims = [20, 32, 16, 4]
    cfg = dict(OPTIMS[opt], weight_decay=0.05, decay_bias=False)
    spec = make_spec(dims, ["relu", "tanh", "none"], [0.0] * 3, "cross_entropy", opt, np.float64, rng,
                     **cfg)
    xs, ys = batches(spec, rng, batch, 8)
    lr = 1e-3 if opt.startswith("rmsprop") else 0.01
    check_vs_torch(backend, spec, xs, ys, lr)
    # and it differs from decaying the biases too
    both = make_spec(dims, ["relu", "tanh", "none"], [0.0] * 3, "cross_entropy", opt, np.float64,
                     np.random.default_rng(0), **dict(cfg, decay_bias=True))
    only_w = copy_spec(both)
    only_w.config = OptimConfig(**dict(cfg))
    run_plan(backend, both, xs, ys, lr)
    run_plan(backend, only_w, xs, ys, lr)
    b = slice(both.b_off[0], both.b_off[0] + dims[1])
    assert not np.allclose(both.params[b], only_w.params[b], rtol=0, atol=1e-12)


@pytest.mark.parametrize("batch", [70, 130])
@pytest.mark.parametrize("bias", [True, False])
def test_larger_batches_vs_torch(backend, batch, bias, rng):
    """Batches from 48 up: the Numba step's products go through its packed
    GEMM (transposed when the batch is under its 120-row block and the layer
    wider), with and without bias, through z-activations and MSE."""
    dims = [30, 130, 20, 4]
    for loss, acts, opt in (("cross_entropy", ["gelu", "sigmoid", "none"], "adam"),
                            ("mse", ["relu", "silu", "tanh"], "sgd")):
        spec = make_spec(dims, acts, [0.0] * 3, loss, opt, np.float64, rng, bias=bias, **OPTIMS[opt])
        xs, ys = batches(spec, rng, batch, 4)
        check_vs_torch(backend, spec, xs, ys, 0.01)


def test_no_bias_and_single_layer(backend, rng):
    for dims, acts in (([7, 3], ["none"]), ([7, 11, 3], ["gelu", "sigmoid"])):
        spec = make_spec(dims, acts, [0.0] * len(acts), "mse", "adamw", np.float64, rng, bias=False,
                         weight_decay=0.1)
        xs, ys = batches(spec, rng, 5, 10)
        ref_loss, ref_p, _ = torch_steps(copy_spec(spec), xs, ys, 0.05)
        losses = run_plan(backend, spec, xs, ys, 0.05)
        np.testing.assert_allclose(losses, ref_loss, **params_tol(np.float64))
        np.testing.assert_allclose(spec.params, ref_p, **params_tol(np.float64))


def test_forward_matches_reference(backend, dtype, rng):
    spec = make_spec([30, 40, 10], ["silu", "none"], [0, 0], "cross_entropy", "none", dtype, rng)
    x = rng.standard_normal((70, 30)).astype(dtype)
    out = np.empty((70, 10), dtype=dtype)
    load_backend(backend).mlp_step_plan(spec).forward(out, x)
    ref = np.empty_like(out)
    load_backend("numpy").mlp_step_plan(spec).forward(ref, x)
    np.testing.assert_allclose(out, ref, **params_tol(dtype))


@contextlib.contextmanager
def num_threads(nt):
    prev = nnkernels.get_num_threads()
    nnkernels.set_num_threads(nt)
    try:
        yield
    finally:
        nnkernels.set_num_threads(prev)


@pytest.mark.parametrize("batch", [1, 64, 300])
def test_thread_count_independent(batch, rng):
    """Bitwise identical results with 1 and 2 threads (fixed-order reductions)."""
    spec = make_spec([784, 256, 128, 10], ["relu", "relu", "none"], [0] * 3, "cross_entropy", "adam",
                     np.float32, rng)
    xs, ys = batches(spec, rng, batch, 3)
    results = []
    for nt in (1, 2):
        with num_threads(nt):
            s = copy_spec(spec)
            losses = run_plan("cpp", s, xs, ys, 1e-3)
            results.append((losses, s.params, s.grads))
    for a, b in zip(results[0], results[1]):
        np.testing.assert_array_equal(a, b)


TEAM_CASES = [  # (dims, activations, loss, optimizer, config): every pass of the step's team
    ((784, 256, 128, 10), ("relu", "relu", "none"), "cross_entropy", "adam", {}),
    ((300, 130, 70, 10), ("gelu", "sigmoid", "none"), "cross_entropy", "sgd", dict(momentum=0.9)),
    # RMSprop with momentum but not centered: centered, sqrt(E[g^2] - E[g]^2)
    # cancels in float32 and the comparison with NumPy below would measure
    # the cancellation (covered against PyTorch in float64 above)
    ((300, 130, 70, 10), ("silu", "tanh", "leaky_relu"), "mse", "rmsprop",
     {"momentum": 0.9, "weight_decay": 1e-3}),
    ((784, 100, 10), ("relu", "none"), "cross_entropy", "adam",
     dict(weight_decay=1e-3, decay_bias=False)),
]


@pytest.mark.parametrize("case", range(len(TEAM_CASES)))
@pytest.mark.parametrize("batch", [3, 37, 200])
def test_team_step_thread_count_independent(case, batch, rng):
    """The step runs as one OpenMP team: with 1 and 2 threads the losses,
    parameters, gradients and optimizer state are bitwise equal, for every kind
    of pass (via-z activations, MSE, bias vectors without decay, the
    small-batch in-backward update at batch 3), and they match NumPy."""
    dims, acts, loss, opt, cfg = TEAM_CASES[case]
    kind = opt.split("_")[0]
    spec = make_spec(list(dims), list(acts), [0.1] * len(acts), loss, opt, np.float32, rng,
                     **{**OPTIMS.get(opt, {}), **cfg})
    xs, ys = batches(spec, rng, batch, 3)
    results = []
    for nt in (1, 2):
        with num_threads(nt):
            s = copy_spec(spec)
            losses = run_plan("cpp", s, xs, ys, 1e-2 if kind == "sgd" else 1e-3)
            results.append((losses, s.params, s.grads) + tuple(s.state))
    for a, b in zip(results[0], results[1]):
        np.testing.assert_array_equal(a, b)
    lr = 1e-2 if kind == "sgd" else 1e-3
    ref_losses = run_plan("numpy", copy_spec(spec), xs, ys, lr)
    np.testing.assert_allclose(results[1][0], ref_losses, rtol=1e-4, atol=1e-5)
    # the parameters against NumPy in float64: in float32 the first steps of
    # Adam/RMSprop (about lr * sign(g)) amplify last-bit differences of
    # near-zero gradients, which differ between builds (-O2 vs -O3)
    s64 = make_spec(list(dims), list(acts), [0.1] * len(acts), loss, opt, np.float64,
                    np.random.default_rng(1), **{**OPTIMS.get(opt, {}), **cfg})
    ref64 = copy_spec(s64)
    x64 = [x.astype(np.float64) for x in xs]
    y64 = [y if y.dtype == np.int64 else y.astype(np.float64) for y in ys]
    with num_threads(2):
        run_plan("cpp", s64, x64, y64, lr)
    run_plan("numpy", ref64, x64, y64, lr)
    np.testing.assert_allclose(s64.params, ref64.params, rtol=1e-7, atol=1e-9)


def relayout(spec, order, gap):
    """The same model with its blocks (W0, b0, W1, b1, ...) placed in `order`,
    `gap` unused elements after each block (parameters, gradients and state)."""
    blocks = []
    for l in range(spec.n_layers):
        blocks.append((spec.w_off[l], spec.dims[l] * spec.dims[l + 1]))
        blocks.append((spec.b_off[l], spec.dims[l + 1]))
    new_off, off = [0] * len(blocks), 0
    for i in order:
        new_off[i] = off
        off += blocks[i][1] + gap

    def move(a):
        out = np.full(off, 0.5, a.dtype)
        for (o, size), no in zip(blocks, new_off):
            out[no:no + size] = a[o:o + size]
        return out

    return MlpSpec(spec.dims, spec.activations, spec.act_params, tuple(new_off[0::2]),
                   tuple(new_off[1::2]), move(spec.params), move(spec.grads),
                   tuple(move(s) for s in spec.state), spec.loss, spec.optimizer, spec.config), new_off


@pytest.mark.parametrize("dims", [(784, 100, 10), (3000, 6, 10)], ids=["rows", "dW-split-by-columns"])
@pytest.mark.parametrize("order,gap", [((0, 1, 2, 3), 0), ((3, 2, 1, 0), 0), ((0, 1, 2, 3), 5)],
                         ids=["contiguous", "reversed", "gaps"])
def test_team_step_update_split_any_layout(dims, order, gap, rng):
    """On a team each thread updates the weight rows and bias columns whose
    gradients it computed when the blocks tile the buffer (in any order), and
    the optimizer pass takes chunks of the whole buffer otherwise (gaps): every
    layout gives the contiguous layout's parameters, gradients and state bit
    for bit, and the whole buffers are bitwise equal on 1 and 2 threads."""
    spec = make_spec(list(dims), ["relu", "none"], [0, 0], "cross_entropy", "adam", np.float32, rng,
                     weight_decay=1e-3, decay_bias=False)
    xs, ys = batches(spec, rng, 200, 3)
    base = copy_spec(spec)
    with num_threads(1):
        run_plan("cpp", base, xs, ys, 1e-3)
    whole = []
    for nt in (1, 2):
        s, _ = relayout(copy_spec(spec), order, gap)
        with num_threads(nt):
            run_plan("cpp", s, xs, ys, 1e-3)
        whole.append((s.params, s.grads) + s.state)
        back, _ = relayout(s, range(4), 0)  # the blocks read back in the contiguous order
        for a, b in zip((back.params, back.grads) + back.state, (base.params, base.grads) + base.state):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(*whole):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("batch", [3, 64])
def test_team_step_bad_label_changes_nothing(batch, rng):
    """A class index out of range raises on every thread count and leaves the
    parameters and the optimizer state as they were."""
    spec = make_spec([784, 256, 128, 10], ["relu", "relu", "none"], [0] * 3, "cross_entropy", "adam",
                     np.float32, rng)
    x = rng.standard_normal((batch, 784)).astype(np.float32)
    y = np.zeros(batch, np.int64)
    y[-1] = 10
    for nt in (1, 2):
        with num_threads(nt):
            s = copy_spec(spec)
            with pytest.raises(ValueError, match="y: a class index"):
                load_backend("cpp").mlp_step_plan(s).step(x, y, 1e-3, 1)
            np.testing.assert_array_equal(s.params, spec.params)
            for a, b in zip(s.state, spec.state):
                np.testing.assert_array_equal(a, b)


def test_workspace_allocated_once(rng):
    spec = make_spec([50, 20, 10], ["relu", "none"], [0, 0], "cross_entropy", "sgd", np.float32, rng)
    plan = load_backend("cpp").mlp_step_plan(spec)
    xs, ys = batches(spec, rng, 32, 5)
    for t, (x, y) in enumerate(zip(xs, ys)):
        plan.step(x, y, 0.1, t + 1)
    assert plan.workspace_allocations == 1
    xs, ys = batches(spec, rng, 8, 2)  # smaller batch: reuses the buffer
    for x, y in zip(xs, ys):
        plan.step(x, y, 0.1, 9)
    assert plan.workspace_allocations == 1


def test_errors_name_arguments(rng):
    spec = make_spec([6, 4, 3], ["relu", "none"], [0, 0], "cross_entropy", "adam", np.float32, rng)
    plan = load_backend("cpp").mlp_step_plan(spec)
    x = np.zeros((4, 6), np.float32)
    with pytest.raises(TypeError, match="y"):
        plan.step(x, np.zeros(4, np.int32), 0.1, 1)
    with pytest.raises(ValueError, match="x"):
        plan.step(np.zeros((4, 5), np.float32), np.zeros(4, np.int64), 0.1, 1)
    with pytest.raises(TypeError, match="x"):
        plan.step(x.astype(np.float64), np.zeros(4, np.int64), 0.1, 1)
    with pytest.raises(ValueError, match="y: a class index"):
        plan.step(x, np.array([0, 1, 3, 0], np.int64), 0.1, 1)
    with pytest.raises(ValueError, match="state"):
        load_backend("cpp").mlp_step_plan(MlpSpec(spec.dims, spec.activations, spec.act_params, spec.w_off,
                                                  spec.b_off, spec.params, spec.grads, spec.state[:1],
                                                  spec.loss, spec.optimizer))


def test_nan_propagates(backend, rng):
    spec = make_spec([4, 8, 3], ["relu", "none"], [0, 0], "cross_entropy", "sgd", np.float64, rng)
    x = rng.standard_normal((5, 4))
    x[2, 1] = np.nan
    plan = load_backend(backend).mlp_step_plan(spec)
    loss = plan.step(x, np.zeros(5, np.int64), 0.1, 1)
    assert np.isnan(loss)
    assert np.isnan(spec.params).any()


@pytest.mark.parametrize("n", [1, 2, 4, 5])
@pytest.mark.parametrize("act", ["relu", "gelu", "sigmoid"])
def test_small_batches_vs_torch(backend, dtype, n, act, rng):
    """n <= 4 takes the matrix-vector path in the native step (no packing)."""
    dims = [40, 33, 17, 6]
    spec = make_spec(dims, [act, act, "none"], [0.0] * 3, "cross_entropy", "adam", dtype, rng)
    xs, ys = batches(spec, rng, n, 8)
    ref_loss, ref_p, ref_g = torch_steps(copy_spec(spec), xs, ys, 1e-2)
    losses = run_plan(backend, spec, xs, ys, 1e-2)
    tol = params_tol(dtype)
    np.testing.assert_allclose(losses, ref_loss, **tol)
    np.testing.assert_allclose(spec.params, ref_p, **tol)
    np.testing.assert_allclose(spec.grads, ref_g, **tol)


def test_optimizer_flushes_denormal_state(rng):
    """Adam state that decayed into the denormal range is flushed to zero (FTZ/DAZ in
    the update pass, see docs/fused-step.md); normal values and NaN are unaffected."""
    import platform
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("FTZ/DAZ are set on x86-64 only")
    spec = make_spec([6, 5, 3], ["relu", "none"], [0.0] * 2, "cross_entropy", "adam", np.float32, rng,
                     bias=False)
    spec.state[0][:] = np.float32(1e-40)  # denormal exp_avg
    x = rng.standard_normal((4, 6)).astype(np.float32)
    x[:, 2] = 0.0  # column 2 of W0 gets an exactly zero gradient
    plan = load_backend("cpp").mlp_step_plan(spec)
    plan.step(x, rng.integers(0, 3, 4), 1e-3, 10)
    W0 = slice(spec.w_off[0], spec.w_off[0] + 30)
    m0 = spec.state[0][W0].reshape(5, 6)
    g0 = spec.grads[W0].reshape(5, 6)
    assert np.all(g0[:, 2] == 0) and np.all(m0[:, 2] == 0)
    nz = g0 != 0
    np.testing.assert_allclose(m0[nz], np.float32(0.1) * g0[nz], rtol=1e-6)


# ---- epochs: many minibatches in one call ------------------------------------

def epoch_data(spec, rng, rows):
    dt = spec.params.dtype
    x = rng.standard_normal((rows, spec.dims[0])).astype(dt)
    if spec.loss == "cross_entropy":
        y = rng.integers(0, spec.dims[-1], rows).astype(np.int64)
    else:
        y = rng.standard_normal((rows, spec.dims[-1])).astype(dt)
    return x, y


def epoch_schedule(nb, kind):
    """Per-batch lr, weight decay and eps that all differ (as scikit-learn's do)."""
    b = np.arange(nb, dtype=np.float64)
    lr = (1e-2 if kind == "sgd" else 1e-3) * (1 + 0.1 * b)
    return lr, 1e-3 / (1 + b), 1e-8 / np.sqrt(1 - 0.999 ** (b + 1))


def epoch_by_hand(backend, spec, x, y, order, bs, lr, wd, eps, t0):
    """The reference: one ``step`` per batch on the gathered rows, with
    ``set_optimizer`` per batch; returns (losses, sum of squared weights before each step)."""
    plan = load_backend(backend).mlp_step_plan(spec)
    base = spec.config
    losses, sq = [], []
    for b in range(len(lr)):
        rows = order[b * bs:(b + 1) * bs]
        sq.append(sum(float(np.sum(spec.params[w:w + spec.dims[l] * spec.dims[l + 1]].astype(np.float64) ** 2))
                      for l, w in enumerate(spec.w_off)))
        plan.set_optimizer(OptimConfig(**{**base.__dict__, "weight_decay": wd[b], "eps": eps[b]}))
        losses.append(plan.step(x[rows], y[rows], lr[b], t0 + b + 1))
    return np.array(losses), np.array(sq)


EPOCH_CASES = [  # (dims, activations, loss, optimizer, config)
    ((784, 100, 10), ("relu", "none"), "cross_entropy", "adam", dict(decay_bias=False)),
    ((50, 30, 20, 10), ("tanh", "gelu", "none"), "cross_entropy", "sgd", dict(momentum=0.9, nesterov=True)),
    ((40, 24, 5), ("sigmoid", "leaky_relu"), "mse", "rmsprop", dict(momentum=0.5)),
]


@pytest.mark.parametrize("case", range(len(EPOCH_CASES)))
@pytest.mark.parametrize("bs", [3, 64])
def test_epoch_equals_steps(backend, dtype, case, bs, rng):
    """plan.epoch over a shuffled order (last batch short) leaves the same
    parameters, gradients and state as gathering each batch and calling step
    with that batch's hyper-parameters, and reports the same losses and
    squared weight norms (bitwise for the native plan)."""
    dims, acts, loss, opt, cfg = EPOCH_CASES[case]
    spec = make_spec(list(dims), list(acts), [0.1] * len(acts), loss, opt, dtype, rng, **cfg)
    rows = 5 * bs + 2
    x, y = epoch_data(spec, rng, rows)
    order = rng.permutation(rows).astype(np.int64)
    nb = -(-rows // bs)
    lr, wd, eps = epoch_schedule(nb, opt)
    ref = copy_spec(spec)
    ref_losses, ref_sq = epoch_by_hand(backend, ref, x, y, order, bs, lr, wd, eps, 7)
    losses, sq = np.empty(nb), np.empty(nb)
    plan = load_backend(backend).mlp_step_plan(spec)
    plan.epoch(x, y, order, bs, lr, wd, eps, 7, losses, sq)
    if backend == "cpp":
        np.testing.assert_array_equal(losses, ref_losses)
        for a, b in zip((spec.params, spec.grads) + tuple(spec.state), (ref.params, ref.grads) + tuple(ref.state)):
            np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(losses, ref_losses, **params_tol(dtype))
        np.testing.assert_allclose(spec.params, ref.params, **params_tol(dtype))
    np.testing.assert_allclose(sq, ref_sq, rtol=1e-12)
    assert plan.config == spec.config  # the per-batch values did not stick


@pytest.mark.parametrize("bs", [3, 200])
def test_epoch_thread_count_independent(bs, rng):
    """The native epoch (one OpenMP team for all batches) gives bitwise the
    same results on 1 and 2 threads, and the same as the epoch of the NumPy
    reference to rounding."""
    spec = make_spec([784, 100, 10], ["relu", "none"], [0, 0], "cross_entropy", "adam", np.float32, rng,
                     decay_bias=False)
    rows = 4 * bs + 1
    x, y = epoch_data(spec, rng, rows)
    order = rng.permutation(rows).astype(np.int64)
    nb = -(-rows // bs)
    lr, wd, eps = epoch_schedule(nb, "adam")
    results = []
    for nt in (1, 2):
        with num_threads(nt):
            s = copy_spec(spec)
            losses, sq = np.empty(nb), np.empty(nb)
            load_backend("cpp").mlp_step_plan(s).epoch(x, y, order, bs, lr, wd, eps, 0, losses, sq)
            results.append((losses, sq, s.params, s.grads) + tuple(s.state))
    for a, b in zip(results[0], results[1]):
        np.testing.assert_array_equal(a, b)
    ref = copy_spec(spec)
    losses = np.empty(nb)
    load_backend("numpy").mlp_step_plan(ref).epoch(x, y, order, bs, lr, wd, eps, 0, losses)
    np.testing.assert_allclose(results[0][0], losses, rtol=1e-4, atol=1e-5)


def test_epoch_errors_name_arguments(backend, rng):
    """Every backend's epoch checks its arguments the same way, before any
    step: the parameters are unchanged after each error."""
    spec = make_spec([6, 4, 3], ["relu", "none"], [0, 0], "cross_entropy", "adam", np.float32, rng)
    before = spec.params.copy()
    plan = load_backend(backend).mlp_step_plan(spec)
    x = np.zeros((10, 6), np.float32)
    y = np.zeros(10, np.int64)
    order = np.arange(10, dtype=np.int64)
    nb = 3  # batches of 4, 4, 2
    ok = dict(lr=np.full(nb, 0.1), weight_decay=np.zeros(nb), eps=np.full(nb, 1e-8), losses=np.empty(nb))

    def call(**kw):
        a = {"x": x, "y": y, "order": order, "batch_size": 4, "t0": 0, **ok, **kw}
        plan.epoch(a["x"], a["y"], a["order"], a["batch_size"], a["lr"], a["weight_decay"], a["eps"], a["t0"],
                   a["losses"], a.get("sq_norms"))

    cases = [
        (TypeError, "x", dict(x=x.astype(np.float64))),
        (ValueError, "x", dict(x=np.zeros((10, 5), np.float32))),
        (TypeError, "y", dict(y=y.astype(np.int32))),
        (ValueError, "y", dict(y=np.zeros(9, np.int64))),
        (ValueError, "y: class index 3", dict(y=np.where(np.arange(10) == 7, 3, 0).astype(np.int64))),
        (TypeError, "order", dict(order=order.astype(np.int32))),
        (ValueError, "order: row 10", dict(order=np.where(order == 5, 10, order))),
        (ValueError, "order: row -1", dict(order=np.where(order == 5, -1, order))),
        (ValueError, "batch_size", dict(batch_size=0)),
        (TypeError, "lr", dict(lr=np.full(nb, 0.1, np.float32))),
        (ValueError, "lr", dict(lr=np.full(nb + 1, 0.1))),
        (ValueError, "weight_decay", dict(weight_decay=np.zeros(nb - 1))),
        (TypeError, "eps", dict(eps=[1e-8] * nb)),
        (ValueError, "losses", dict(losses=np.empty(nb - 1))),
        (ValueError, "sq_norms", dict(sq_norms=np.empty(nb + 2))),
    ]
    ro = np.empty(nb)
    ro.flags.writeable = False
    cases.append((ValueError, "losses", dict(losses=ro)))
    for exc, match, kw in cases:
        with pytest.raises(exc, match=match):
            call(**kw)
        np.testing.assert_array_equal(spec.params, before)
    call()  # and the valid call runs
    assert not np.array_equal(spec.params, before)


def test_epoch_nan_propagates(backend, rng):
    spec = make_spec([4, 8, 3], ["relu", "none"], [0, 0], "cross_entropy", "sgd", np.float64, rng)
    x = rng.standard_normal((9, 4))
    x[2, 1] = np.nan
    losses = np.empty(3)
    load_backend(backend).mlp_step_plan(spec).epoch(x, np.zeros(9, np.int64), np.arange(9, dtype=np.int64), 4,
                                                    np.full(3, 0.1), np.zeros(3), np.full(3, 1e-8), 0, losses)
    assert np.isnan(losses).any() and np.isnan(spec.params).any()


def test_epoch_empty_order_does_nothing(backend, rng):
    spec = make_spec([4, 8, 3], ["relu", "none"], [0, 0], "cross_entropy", "adam", np.float32, rng)
    before = spec.params.copy()
    e = np.empty(0)
    load_backend(backend).mlp_step_plan(spec).epoch(np.zeros((5, 4), np.float32), np.zeros(5, np.int64),
                                                    np.empty(0, np.int64), 4, e, e, e, 0, np.empty(0))
    np.testing.assert_array_equal(spec.params, before)
