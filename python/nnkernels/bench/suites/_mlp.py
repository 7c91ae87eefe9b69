"""The benchmark MLP, [784, 256, 128, 10] with ReLU, cross-entropy and Adam
(lr 1e-3), built the same way for us and for each peer.

One training step = forward + cross-entropy + backward + Adam update. Flops
per sample: 2 per weight forward, 4 per weight backward (grad of input and
of weights) except the first layer, which needs no input gradient, so
2 * W + 4 * W - 2 * W0, W the weight count, W0 the first layer's.
"""

from __future__ import annotations

import numpy as np

from ..core import NotAvailable
from ._util import ours_attr

SIZES = (784, 256, 128, 10)
LR = 1e-3


def weights(sizes=SIZES) -> int:
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def step_flops(batch: int, sizes=SIZES) -> float:
    w, w0 = weights(sizes), sizes[0] * sizes[1]
    return float(batch) * (6 * w - 2 * w0)


def ours_step(x: np.ndarray, y: np.ndarray, sizes=SIZES, layers: bool = False):
    """(step function, how): the fused ``model.train_step`` if the model has it
    (and not ``layers``), else forward, loss, backward and optimizer.step()
    layer by layer."""
    MLP = ours_attr("nn", "MLP")
    CrossEntropyLoss = ours_attr("nn", "CrossEntropyLoss")
    Adam = ours_attr("optim", "Adam")
    model = MLP(list(sizes), activation="relu")
    loss_fn = CrossEntropyLoss()
    opt = Adam(model.parameters(), lr=LR)
    if hasattr(model, "train_step") and not layers:
        return (lambda: model.train_step(x, y, loss_fn, opt)), "fused train_step"

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward(), need_input_grad=False)
        opt.step()
        return loss
    return step, "layer by layer"


def torch_model(sizes=SIZES):
    import torch

    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def torch_step(x: np.ndarray, y: np.ndarray, sizes=SIZES):
    """PyTorch eager: zero_grad, forward, F.cross_entropy, backward, Adam.step
    (torch.optim.Adam with its defaults for CPU tensors)."""
    import torch

    torch.manual_seed(0)
    model = torch_model(sizes)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss
    return step


def jax_init(sizes=SIZES, seed: int = 0):
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        w = rng.standard_normal((a, b), dtype=np.float32) * np.float32(np.sqrt(2.0 / a))
        params.append((jnp.asarray(w), jnp.zeros((b,), jnp.float32)))
    return params


def jax_train_step():
    """A jitted (params, m, v, t, x, y) -> (params, m, v, t, loss): the same
    MLP, mean cross-entropy and Adam (bias-corrected, eps 1e-8) in JAX."""
    import jax
    import jax.numpy as jnp

    def forward(params, x):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        return h

    def loss_fn(params, x, y):
        lsm = jax.nn.log_softmax(forward(params, x), axis=1)
        return -jnp.mean(jnp.take_along_axis(lsm, y[:, None], axis=1))

    def step(params, m, v, t, x, y, b1=0.9, b2=0.999, eps=1e-8):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        t = t + 1
        m = jax.tree_util.tree_map(lambda mi, g: b1 * mi + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda vi, g: b2 * vi + (1 - b2) * g * g, v, grads)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        params = jax.tree_util.tree_map(
            lambda p, mi, vi: p - LR * (mi / c1) / (jnp.sqrt(vi / c2) + eps), params, m, v)
        return params, m, v, t, loss

    return jax.jit(step, donate_argnums=(0, 1, 2))


def jax_step(x: np.ndarray, y: np.ndarray, sizes=SIZES):
    import jax
    import jax.numpy as jnp

    params = jax_init(sizes)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = [params, zeros, jax.tree_util.tree_map(jnp.zeros_like, params), jnp.zeros((), jnp.float32)]
    f = jax_train_step()
    xj, yj = jnp.asarray(x), jnp.asarray(y.astype(np.int32))

    def step():
        state[0], state[1], state[2], state[3], loss = f(state[0], state[1], state[2], state[3], xj, yj)
        return loss
    return step


def require(cond: bool, what: str) -> None:
    if not cond:
        raise NotAvailable(what)
