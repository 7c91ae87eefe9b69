"""Loss family, NumPy backend: the readable reference (PyTorch semantics).

Computed in float64 and rounded once into the outputs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["softmax_cross_entropy", "nll_loss", "pointwise_loss"]

#: PyTorch's BCE gradient denominator floor: the float32 constant 1e-12f, in float64
BCE_EPS = float(np.float32(1e-12))


def _log_softmax(z):
    m = np.max(z, axis=1, keepdims=True)
    zc = z - m
    return zc - np.log(np.sum(np.exp(zc), axis=1, keepdims=True))


def softmax_cross_entropy(grad, losses, logits, target, weight, ignore_index, label_smoothing, mean):
    n, c = logits.shape
    eps = float(label_smoothing)
    with np.errstate(all="ignore"):
        lp = _log_softmax(logits.astype(np.float64))  # (N, C) log-probabilities
        p = np.exp(lp)
        w = np.ones(c) if weight is None else weight.astype(np.float64)
        if target.ndim == 2:  # class probabilities
            t = target.astype(np.float64) * (1.0 - eps) + eps / c
            wt = w * t
            row = -np.sum(wt * lp, axis=1)
            scale = 1.0 / n if mean else 1.0
            g = np.sum(wt, axis=1, keepdims=True) * p - wt
        else:  # class indices
            valid = target != ignore_index
            y = np.where(valid, target, 0)
            rows = np.arange(n)
            wy = np.where(valid, w[y], 0.0)
            nll = -wy * lp[rows, y]
            smooth = np.where(valid, -np.sum(w * lp, axis=1), 0.0) if eps else np.zeros(n)
            row = (1.0 - eps) * nll + (eps / c) * smooth
            row = np.where(valid, row, 0.0)
            scale = 1.0 / np.sum(wy) if mean else 1.0
            # d row_n / d z = ((1-eps) w_y + eps/C sum(w)) p - (1-eps) w_y e_y - eps/C w
            coef = (1.0 - eps) * wy + (eps / c) * np.sum(w) * valid
            g = coef[:, None] * p
            g[rows, y] -= (1.0 - eps) * wy
            if eps:
                g -= (eps / c) * w[None, :] * valid[:, None]
            g[~valid] = 0.0
        if grad is not None:
            # ignored rows stay exactly 0 (also when every row is ignored and scale = 1/0)
            grad[...] = np.where(valid[:, None], scale * g, 0.0) if target.ndim == 1 else scale * g
        if losses is not None:
            losses[...] = row
        return float(scale * np.sum(row))


def nll_loss(grad, losses, log_probs, target, weight, ignore_index, mean):
    n, c = log_probs.shape
    with np.errstate(all="ignore"):
        w = np.ones(c) if weight is None else weight.astype(np.float64)
        valid = target != ignore_index
        y = np.where(valid, target, 0)
        rows = np.arange(n)
        wy = np.where(valid, w[y], 0.0)
        row = np.where(valid, -wy * log_probs[rows, y].astype(np.float64), 0.0)
        scale = 1.0 / np.sum(wy) if mean else 1.0
        if grad is not None:
            grad[...] = 0
            grad[rows[valid], y[valid]] = -scale * wy[valid]
        if losses is not None:
            losses[...] = row
        return float(scale * np.sum(row))


def _pointwise(x, t, pw, name, param):
    """(losses, dloss/dx) elementwise, float64."""
    if name == "mse":
        d = x - t
        return d * d, 2.0 * d
    if name == "l1":
        d = x - t
        return np.abs(d), np.sign(d)
    if name == "huber":
        d = x - t
        a = np.abs(d)
        quad = a < param
        loss = np.where(quad, 0.5 * d * d, param * (a - 0.5 * param))
        return loss, np.clip(d, -param, param)
    if name == "bce":
        logx = np.maximum(np.log(x), -100.0)
        log1mx = np.maximum(np.log1p(-x), -100.0)
        loss = -(t * logx + (1.0 - t) * log1mx)
        return loss, (x - t) / np.maximum((1.0 - x) * x, BCE_EPS)
    if name == "bce_logits":
        lw = 1.0 + (pw - 1.0) * t
        sp = np.maximum(-x, 0.0) + np.log1p(np.exp(-np.abs(x)))  # softplus(-x), stable
        sig = 1.0 / (1.0 + np.exp(-x))
        return (1.0 - t) * x + lw * sp, lw * sig - pw * t
    if name == "kl_div":
        tlogt = np.where(t == 0, 0.0, t * np.log(t))
        tlogt = np.where(np.isnan(t), np.nan, tlogt)
        return tlogt - t * x, -t
    if name == "kl_div_log":
        et = np.exp(t)
        return et * (t - x), -et
    raise ValueError(f"loss: unknown pointwise loss {name!r}")


def pointwise_loss(grad, losses, input, target, pos_weight, name, param, scale):
    with np.errstate(all="ignore"):
        x = input.astype(np.float64)
        t = target.astype(np.float64)
        pw = 1.0 if pos_weight is None else pos_weight.astype(np.float64)
        loss, d = _pointwise(x, t, pw, name, float(param))
        if grad is not None:
            grad[...] = scale * d
        if losses is not None:
            losses[...] = loss
        return float(scale * np.sum(loss))
