"""fused family, NumPy reference: the whole MLP step written out plainly
(the oracle for the C++ and Numba fused steps). See interface/fused.py."""

from __future__ import annotations

import math

import numpy as np

from ..interface.fused import MlpSpec, OptimConfig, epoch_by_steps
from ._act import apply_activation, erf

__all__ = ["mlp_step_plan"]


def act_forward(z, name, param):
    dt = z.dtype.type
    if name == "none":
        return z.copy()
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        with np.errstate(over="ignore"):
            return dt(1) / (dt(1) + np.exp(-z))
    return apply_activation(z, name, param)


def act_backward(g, z, h, name, param):
    """dloss/dz given g = dloss/dh (PyTorch's backward formulas)."""
    dt = z.dtype.type
    if name == "none":
        return g
    if name == "relu":
        return np.where(h <= 0, dt(0), g)
    if name == "leaky_relu":
        return np.where(z > 0, g, g * dt(param))
    if name == "tanh":
        return g * (dt(1) - h * h)
    if name == "sigmoid":
        return g * (dt(1) - h) * h
    if name == "gelu":
        cdf = dt(0.5) * (dt(1) + erf(z * dt(1 / math.sqrt(2))))
        pdf = np.exp(dt(-0.5) * z * z) * dt(1 / math.sqrt(2 * math.pi))
        return g * (cdf + z * pdf)
    if name == "gelu_tanh":
        k_beta, k_kappa = dt(math.sqrt(2 / math.pi)), dt(0.044715)
        t = np.tanh(k_beta * (z + k_kappa * z * z * z))
        left_d = dt(0.5) * (dt(1) + t)
        right_d = dt(0.5) * z * (dt(1) - t * t) * k_beta * (dt(1) + dt(3) * k_kappa * z * z)
        return g * (left_d + right_d)
    if name == "silu":
        with np.errstate(over="ignore"):
            s = dt(1) / (dt(1) + np.exp(-z))
        return g * (s * (dt(1) + z * (dt(1) - s)))
    raise ValueError(f"activation: unknown activation {name!r}")


def loss_and_grad(out, y, loss):
    """(mean loss, dloss/dout)."""
    n, c = out.shape
    dt = out.dtype.type
    if loss == "cross_entropy":
        if np.any((y < 0) | (y >= c)):
            raise ValueError("y: a class index is out of range [0, C)")
        mx = out.max(axis=1, keepdims=True)
        e = np.exp(out - mx)
        s = e.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        row_loss = (np.log(s[:, 0]) + mx[:, 0]) - out[rows, y]
        g = e / s / dt(n)
        g[rows, y] -= dt(1) / dt(n)
        return float(row_loss.astype(np.float64).sum() / n), g
    d = out - y
    g = dt(2) / dt(n * c) * d
    return float((d.astype(np.float64) ** 2).sum() / (n * c)), g


def optimizer_update(kind, p, g, state, cfg: OptimConfig, lr, t, bias_slices=()):
    """In-place PyTorch single-tensor update of the flat buffers.

    With ``cfg.decay_bias`` False, the flat ranges in ``bias_slices`` get no
    weight decay (a per-element decay vector)."""
    dt = p.dtype.type
    if kind == "none":
        return
    if cfg.maximize:
        g = -g
    wd = cfg.weight_decay
    has_wd = wd != 0
    wdv, decay = dt(wd), dt(1 - lr * wd)  # g + wdv * p (coupled), p * decay (AdamW)
    if has_wd and not cfg.decay_bias and bias_slices:
        wdv, decay = np.full(p.shape, wdv), np.full(p.shape, decay)
        for sl in bias_slices:
            wdv[sl], decay[sl] = 0, 1
    if kind == "sgd":
        if has_wd:
            g = g + wdv * p
        if cfg.momentum:
            buf = state[0]
            if t <= 1:
                buf[...] = g
            else:
                buf *= dt(cfg.momentum)
                buf += dt(1 - cfg.dampening) * g
            g = g + dt(cfg.momentum) * buf if cfg.nesterov else buf
        p += dt(-lr) * g
    elif kind in ("adam", "adamw"):
        m, v = state[0], state[1]
        if has_wd:
            if kind == "adamw":
                p *= decay
            else:
                g = g + wdv * p
        m += dt(1 - cfg.beta1) * (g - m)
        v *= dt(cfg.beta2)
        v += dt(1 - cfg.beta2) * (g * g)
        bc1 = 1 - cfg.beta1 ** t
        bc2 = 1 - cfg.beta2 ** t
        denom = np.sqrt(v) / dt(math.sqrt(bc2)) + dt(cfg.eps)
        p += dt(-lr / bc1) * (m / denom)
    elif kind == "rmsprop":
        sq, buf, ga = state[0], state[1], state[2]
        if has_wd:
            g = g + wdv * p
        a = cfg.alpha
        sq *= dt(a)
        sq += dt(1 - a) * (g * g)
        if cfg.centered:
            ga += dt(1 - a) * (g - ga)
            avg = np.sqrt(sq - ga * ga) + dt(cfg.eps)
        else:
            avg = np.sqrt(sq) + dt(cfg.eps)
        if cfg.momentum > 0:
            buf *= dt(cfg.momentum)
            buf += g / avg
            p += dt(-lr) * buf
        else:
            p += dt(-lr) * (g / avg)
    else:
        raise ValueError(f"optimizer: unknown optimizer {kind!r}")


class NumpyMlpStep:
    """Reference plan: the same contract as the native MlpStep."""

    def __init__(self, spec: MlpSpec) -> None:
        self.spec = spec
        self.config = spec.config

    def set_optimizer(self, config: OptimConfig) -> None:
        self.config = config

    def _weights(self):
        s, P = self.spec, self.spec.params
        for l in range(s.n_layers):
            o, i = s.dims[l + 1], s.dims[l]
            W = P[s.w_off[l]:s.w_off[l] + o * i].reshape(o, i)
            b = P[s.b_off[l]:s.b_off[l] + o] if s.b_off[l] >= 0 else None
            yield l, W, b

    def _forward(self, x):
        s = self.spec
        hs, zs = [], []
        h = x
        for l, W, b in self._weights():
            z = h @ W.T
            if b is not None:
                z = z + b
            h = act_forward(z, s.activations[l], s.act_params[l])
            zs.append(z)
            hs.append(h)
        return zs, hs

    def forward(self, out, x):
        out[...] = self._forward(x)[1][-1]

    def epoch(self, x, y, order, batch_size, lr, weight_decay, eps, t0, losses, sq_norms=None):
        epoch_by_steps(self, x, y, order, batch_size, lr, weight_decay, eps, t0, losses, sq_norms)

    def step(self, x, y, lr, t):
        s = self.spec
        zs, hs = self._forward(x)
        loss, g = loss_and_grad(hs[-1], y, s.loss)
        G = s.grads
        for l, W, b in reversed(list(self._weights())):
            o, i = s.dims[l + 1], s.dims[l]
            dz = act_backward(g, zs[l], hs[l], s.activations[l], s.act_params[l])
            hin = hs[l - 1] if l > 0 else x
            G[s.w_off[l]:s.w_off[l] + o * i] = (dz.T @ hin).ravel()
            if b is not None:
                G[s.b_off[l]:s.b_off[l] + o] = dz.sum(axis=0, dtype=dz.dtype)
            if l > 0:
                g = dz @ W
        biases = [slice(b, b + d) for b, d in zip(s.b_off, s.dims[1:]) if b >= 0]
        optimizer_update(s.optimizer, s.params, G, s.state, self.config, lr, t, biases)
        return loss


def mlp_step_plan(spec):
    return NumpyMlpStep(spec)
