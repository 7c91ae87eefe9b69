"""Loss family, Numba backend: the same algorithms as the C++ kernels (one
fused pass per row for softmax cross-entropy), float64 arithmetic, per-row /
per-block partial sums added in order (results do not depend on threads)."""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._jit import jit, jit_pair, pick

__all__ = ["softmax_cross_entropy", "nll_loss", "pointwise_loss"]

#: PyTorch's BCE gradient denominator floor: the float32 constant 1e-12f, in float64
BCE_EPS = float(np.float32(1e-12))

LOSS_CODES = {"mse": 0, "l1": 1, "huber": 2, "bce": 3, "bce_logits": 4, "kl_div": 5, "kl_div_log": 6}
BLOCK = 4096  # elements per partial sum of the pointwise losses


@jit
def _row_max(x):
    m = -np.inf
    for j in range(x.shape[0]):
        v = np.float64(x[j])
        if v > m or v != v:
            m = v
            if v != v:
                break
    return m


def _ce(grad, has_grad, row_loss, logits, tidx, tprob, is_prob, weight, has_w, ignore_index, eps, scale, wsum):
    # per row: m = max, e = exp(x - m) into grad, s = sum e, then the gradient in place
    n, c = logits.shape
    u = eps / c
    for i in prange(n):
        x = logits[i]
        if not is_prob and tidx[i] == ignore_index:
            row_loss[i] = 0.0
            if has_grad:
                for j in range(c):
                    grad[i, j] = 0.0
            continue
        m = _row_max(x)
        s = 0.0
        for j in range(c):
            e = math.exp(np.float64(x[j]) - m)
            s += e
            if has_grad:
                grad[i, j] = e
        log_s = math.log(s)
        if not is_prob:
            y = tidx[i]
            wy = np.float64(weight[y]) if has_w else 1.0
            loss = (1.0 - eps) * wy * ((m - np.float64(x[y])) + log_s)
            if eps != 0.0:
                wx = 0.0
                for j in range(c):
                    wx += np.float64(x[j]) * (np.float64(weight[j]) if has_w else 1.0)
                loss += u * (wsum * (m + log_s) - wx)
            row_loss[i] = loss
            if has_grad:
                coef = scale * ((1.0 - eps) * wy + u * wsum) / s
                off = scale * u
                for j in range(c):
                    grad[i, j] = np.float64(grad[i, j]) * coef - off * (np.float64(weight[j]) if has_w else 1.0)
                grad[i, y] = np.float64(grad[i, y]) - scale * (1.0 - eps) * wy
        else:
            lse = m + log_s
            swt = 0.0
            swtx = 0.0
            for j in range(c):
                wt = (np.float64(tprob[i, j]) * (1.0 - eps) + u) * (np.float64(weight[j]) if has_w else 1.0)
                swt += wt
                swtx += wt * np.float64(x[j])
            row_loss[i] = lse * swt - swtx
            if has_grad:
                coef = scale * swt / s
                for j in range(c):
                    wt = (np.float64(tprob[i, j]) * (1.0 - eps) + u) * (np.float64(weight[j]) if has_w else 1.0)
                    grad[i, j] = np.float64(grad[i, j]) * coef - scale * wt


_CE = jit_pair(_ce)


@jit
def _index_denominator(tidx, weight, has_w, ignore_index):
    d = 0.0
    for i in range(tidx.shape[0]):
        y = tidx[i]
        if y != ignore_index:
            d += np.float64(weight[y]) if has_w else 1.0
    return d


@jit
def _ordered_sum(v):
    s = 0.0
    for i in range(v.shape[0]):
        s += v[i]
    return s


def softmax_cross_entropy(grad, losses, logits, target, weight, ignore_index, label_smoothing, mean):
    n, c = logits.shape
    is_prob = target.ndim == 2
    has_w = weight is not None
    w = weight if has_w else np.ones(1, dtype=logits.dtype)
    tidx = np.zeros(1, dtype=np.int64) if is_prob else target
    tprob = target if is_prob else np.zeros((1, 1), dtype=logits.dtype)
    scale = 1.0
    if mean:
        if is_prob:
            scale = 1.0 / n
        else:
            d = _index_denominator(tidx, w, has_w, ignore_index)
            scale = 1.0 / d if d != 0.0 else math.nan
    wsum = float(np.sum(w, dtype=np.float64)) if has_w else float(c)
    g = grad if grad is not None else np.empty((1, 1), dtype=logits.dtype)
    row_loss = np.empty(n, dtype=np.float64)
    pick(_CE, n * c * 6)(g, grad is not None, row_loss, logits, tidx, tprob, is_prob, w, has_w, ignore_index,
                         float(label_smoothing), scale, wsum)
    if losses is not None:
        losses[...] = row_loss
    return scale * _ordered_sum(row_loss)


@jit
def _nll(grad, has_grad, row_loss, lp, tidx, weight, has_w, ignore_index, scale):
    n, c = lp.shape
    for i in range(n):
        if has_grad:
            for j in range(c):
                grad[i, j] = 0.0
        y = tidx[i]
        if y == ignore_index:
            row_loss[i] = 0.0
            continue
        wy = np.float64(weight[y]) if has_w else 1.0
        row_loss[i] = -wy * np.float64(lp[i, y])
        if has_grad:
            grad[i, y] = -scale * wy


def nll_loss(grad, losses, log_probs, target, weight, ignore_index, mean):
    n, c = log_probs.shape
    has_w = weight is not None
    w = weight if has_w else np.ones(1, dtype=log_probs.dtype)
    scale = 1.0
    if mean:
        d = _index_denominator(target, w, has_w, ignore_index)
        scale = 1.0 / d if d != 0.0 else math.nan
    g = grad if grad is not None else np.empty((1, 1), dtype=log_probs.dtype)
    row_loss = np.empty(n, dtype=np.float64)
    _nll(g, grad is not None, row_loss, log_probs, target, w, has_w, ignore_index, scale)
    if losses is not None:
        losses[...] = row_loss
    return scale * _ordered_sum(row_loss)


@jit
def _point(code, x, t, pw, param):
    """(loss, d loss / d x) of one element."""
    if code == 0:
        d = x - t
        return d * d, 2.0 * d
    if code == 1:
        d = x - t
        s = 1.0 if d > 0.0 else (-1.0 if d < 0.0 else d * 0.0)
        return abs(d), s
    if code == 2:
        d = x - t
        a = abs(d)
        g = -param if d < -param else (param if d > param else d)
        return (0.5 * d * d if a < param else param * (a - 0.5 * param)), g
    if code == 3:
        lx = math.log(x) if x > 0.0 else (-math.inf if x == 0.0 else math.nan)
        l1x = math.log1p(-x) if x < 1.0 else (-math.inf if x == 1.0 else math.nan)
        lx = -100.0 if lx < -100.0 else lx
        l1x = -100.0 if l1x < -100.0 else l1x
        den = (1.0 - x) * x
        den = BCE_EPS if den < BCE_EPS else den
        return -(t * lx + (1.0 - t) * l1x), (x - t) / den
    if code == 4:
        lw = 1.0 + (pw - 1.0) * t
        sp = max(-x, 0.0) + math.log1p(math.exp(-abs(x))) if x == x else x
        sig = 1.0 / (1.0 + math.exp(-x)) if x > -745.0 else 0.0
        return (1.0 - t) * x + lw * sp, lw * sig - pw * t
    if code == 5:
        if t == 0.0:
            tlogt = 0.0
        elif t > 0.0:
            tlogt = t * math.log(t)
        else:
            tlogt = math.nan
        return tlogt - t * x, -t
    et = math.exp(t)
    return et * (t - x), -et


def _pointwise(grad, has_grad, losses, has_losses, x, t, pw, has_pw, code, param, scale, sums):
    # flat C-contiguous (n,) arrays; sums[b] := sum of the losses of block b
    n = x.shape[0]
    k = pw.shape[0]
    for b in prange(sums.shape[0]):
        s = 0.0
        for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            p = np.float64(pw[i % k]) if has_pw else 1.0
            loss, d = _point(code, np.float64(x[i]), np.float64(t[i]), p, param)
            if has_grad:
                grad[i] = scale * d
            if has_losses:
                losses[i] = loss
            s += loss
        sums[b] = s


_POINTWISE = jit_pair(_pointwise)


def pointwise_loss(grad, losses, input, target, pos_weight, name, param, scale):
    n = input.size
    dt = input.dtype
    dummy = np.empty(1, dtype=dt)
    sums = np.zeros((n + BLOCK - 1) // BLOCK, dtype=np.float64)
    pick(_POINTWISE, n * 4)(
        dummy if grad is None else grad.reshape(-1), grad is not None,
        dummy if losses is None else losses.reshape(-1), losses is not None,
        input.reshape(-1), target.reshape(-1), dummy if pos_weight is None else pos_weight,
        pos_weight is not None, LOSS_CODES[name], float(param), float(scale), sums)
    return scale * _ordered_sum(sums)
