"""Loss family, Numba backend: the same algorithms as the C++ kernels
(csrc/kernels/loss), written as loops LLVM vectorises (``_vmath``: no libm
calls). Softmax cross-entropy: blocked row passes, the data's type for the
per-element math, float64 for sums and losses. Pointwise losses: float64.
Per-row / per-block partial sums are added in order (results do not depend
on threads)."""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..._threads import sync_numba_threads
from ._jit import PARALLEL_MIN_WORK, call_readonly_inputs, jit, specialise, vjit, vjit_parallel
from ._vmath import (SUM_LANES, exp_d, log1p_d, log_d, per_dtype, prefer_wide_vectors, row_sum_lanes, sigmoid_d,
                     softplus_d)
# The names the cross-entropy kernels use, bound here to the float64 functions;
# per_dtype compiles each kernel once per dtype with them rebound.
from ._vmath import exp_d as v_exp
from ._vmath import row_max_d as v_row_max

__all__ = ["softmax_cross_entropy", "nll_loss", "pointwise_loss"]

cast = np.float64

#: PyTorch's BCE gradient denominator floor: the float32 constant 1e-12f, in float64
BCE_EPS = float(np.float32(1e-12))

LOSS_CODES = {"mse": 0, "l1": 1, "huber": 2, "bce": 3, "bce_logits": 4, "kl_div": 5, "kl_div_log": 6}
BLOCK = 4096  # elements per partial sum of the pointwise losses


# ---- fused softmax cross-entropy -----------------------------------------------------------
#
# Rows are processed in blocks of about CE_BLOCK elements (one row if it is
# longer). Each pass is one vectorisable loop (_vmath: no libm calls,
# integer-key max, 8 interleaved partial sums):
#   rows of more than CE_SMALL_C classes (_ce_block), per row:
#     1. m = max x   2. g := exp(x - m) (g: the gradient row, or scratch)
#     3. s = sum g (then log s over the block)   4. the loss, the gradient in place
#   shorter rows (_ce_block_small): the same on a transposed block, each pass
#     running over the rows of the block
# Huge logits (1e4) are fine: only x - m reaches exp. NaN propagates.
# Arithmetic on the data is in its type (float32 lanes for float32), sums and
# the loss in float64.

CE_BLOCK = 2048
#: the same for rows of at most CE_SMALL_C classes (fewer, longer passes over the transposed block)
CE_SMALL_BLOCK = 16384



def _ce_block(g, row_loss, x, c, tidx, tprob, is_prob, weight, has_w, ignore_index, eps, scale, wsum,
              mrow, srow, lrow, r0, r1):
    # rows r0 <= i < r1 of the flat (n*c,) arrays g, x (and tprob); slices
    # (not offset indices) keep every loop index provably non-negative
    prefer_wide_vectors()
    u = eps / c
    acc = np.empty(SUM_LANES)
    for i in range(r0, r1):  # 1. - 3.
        xi = x[i * c:(i + 1) * c]
        gi = g[i * c:(i + 1) * c]
        m = v_row_max(xi)
        for j in range(c):
            gi[j] = v_exp(xi[j] - m)
        mrow[i] = m
        srow[i] = row_sum_lanes(gi, acc)
    sb = srow[r0:r1]
    lb = lrow[r0:r1]
    for k in range(sb.shape[0]):
        lb[k] = log_d(sb[k])
    for i in range(r0, r1):  # 4.
        xi = x[i * c:(i + 1) * c]
        gi = g[i * c:(i + 1) * c]
        m = mrow[i]
        s = srow[i]
        log_s = lrow[i]
        if not is_prob:
            y = tidx[i]
            if y == ignore_index:
                row_loss[i] = 0.0
                for j in range(c):
                    gi[j] = 0.0
                continue
            wy = np.float64(weight[y]) if has_w else 1.0
            loss = (1.0 - eps) * wy * ((m - np.float64(xi[y])) + log_s)
            if eps != 0.0:  # sum_j w_j (lse - x_j) = W (m + log s) - sum_j w_j x_j
                wx = 0.0
                for j in range(c):
                    wx += np.float64(xi[j]) * (np.float64(weight[j]) if has_w else 1.0)
                loss += u * (wsum * (m + log_s) - wx)
            row_loss[i] = loss
            # grad = scale [((1-eps) w_y + eps/c W) e/s - eps/c w_j - (1-eps) w_y 1[j = y]]
            coef = cast(scale * ((1.0 - eps) * wy + u * wsum) / s)
            off = cast(scale * u)
            if eps == 0.0 or not has_w:
                for j in range(c):
                    gi[j] = gi[j] * coef - off
            else:
                for j in range(c):
                    gi[j] = gi[j] * coef - off * weight[j]
            gi[y] = np.float64(gi[y]) - scale * (1.0 - eps) * wy
        else:
            # t' = (1-eps) t + eps/c: loss = lse sum_j w_j t'_j - sum_j w_j t'_j x_j,
            # grad = scale [(sum w t') e/s - w t']
            ti = tprob[i * c:(i + 1) * c]
            lse = m + log_s
            swt = 0.0
            swtx = 0.0
            for j in range(c):
                wt = (np.float64(ti[j]) * (1.0 - eps) + u) * (np.float64(weight[j]) if has_w else 1.0)
                swt += wt
                swtx += wt * np.float64(xi[j])
            row_loss[i] = lse * swt - swtx
            coef = scale * swt / s
            for j in range(c):
                wt = (np.float64(ti[j]) * (1.0 - eps) + u) * (np.float64(weight[j]) if has_w else 1.0)
                gi[j] = np.float64(gi[j]) * coef - scale * wt


#: rows of at most this many classes (index targets) take _ce_block_small
CE_SMALL_C = 32


def _ce_block_small(g, row_loss, x, c, tidx, weight, has_w, ignore_index, eps, scale, wsum, r0, r1):
    # Short rows, index targets: the block is transposed into xt(c, R) so that
    # every pass runs over the R rows of the block (a row of 10 classes is too
    # short for a vector loop): m, s, log s, coef are R-vectors, updated once per class j.
    prefer_wide_vectors()
    nr = r1 - r0
    u = eps / c
    xb = x[r0 * c:r1 * c]
    gb = g[r0 * c:r1 * c]
    scratch = np.empty((c + 2) * nr, dtype=x.dtype)  # two allocations, not five
    xt = scratch[:c * nr]
    m = scratch[c * nr:(c + 1) * nr]
    coef = scratch[(c + 1) * nr:]
    sums = np.zeros(2 * nr)
    s = sums[:nr]
    ls = sums[nr:]
    for j in range(c):  # transpose
        xj = xt[j * nr:(j + 1) * nr]
        for r in range(nr):
            xj[r] = xb[r * c + j]
    m[:] = -np.inf
    for j in range(c):  # row maxima, NaN propagating (a NaN in m stays)
        xj = xt[j * nr:(j + 1) * nr]
        for r in range(nr):
            v = xj[r]
            mr = m[r]
            m[r] = v if (v > mr) | (v != v) else mr
    for j in range(c):  # e = exp(x - m) in place, s += e
        xj = xt[j * nr:(j + 1) * nr]
        for r in range(nr):
            e = v_exp(xj[r] - m[r])
            xj[r] = e
            s[r] += np.float64(e)
    for r in range(nr):
        ls[r] = log_d(s[r])
    for r in range(nr):  # loss and gradient coefficient of each row
        i = r0 + r
        y = tidx[i]
        if y == ignore_index:
            row_loss[i] = 0.0
            coef[r] = 0.0
            continue
        wy = np.float64(weight[y]) if has_w else 1.0
        mr = np.float64(m[r])
        loss = (1.0 - eps) * wy * ((mr - np.float64(xb[r * c + y])) + ls[r])
        if eps != 0.0:
            wx = 0.0
            for j in range(c):
                wx += np.float64(xb[r * c + j]) * (np.float64(weight[j]) if has_w else 1.0)
            loss += u * (wsum * (mr + ls[r]) - wx)
        row_loss[i] = loss
        coef[r] = scale * ((1.0 - eps) * wy + u * wsum) / s[r]
    off = cast(scale * u)
    for j in range(c):
        xj = xt[j * nr:(j + 1) * nr]
        wj = weight[j] if has_w else cast(1.0)
        for r in range(nr):
            xj[r] = xj[r] * coef[r] - off * wj
    for j in range(c):  # transpose back
        xj = xt[j * nr:(j + 1) * nr]
        for r in range(nr):
            gb[r * c + j] = xj[r]
    for r in range(nr):  # the target's term; ignored rows: a zero gradient
        y = tidx[r0 + r]
        if y == ignore_index:
            for j in range(c):
                gb[r * c + j] = 0.0
        else:
            wy = np.float64(weight[y]) if has_w else 1.0
            gb[r * c + y] = np.float64(gb[r * c + y]) - scale * (1.0 - eps) * wy


def _ce_rows(g, row_loss, x, c, tidx, tprob, is_prob, weight, has_w, ignore_index, eps, scale, wsum,
             mrow, srow, lrow, r0, r1):
    if c <= CE_SMALL_C and not is_prob:
        _ce_block_small(g, row_loss, x, c, tidx, weight, has_w, ignore_index, eps, scale, wsum, r0, r1)
    else:
        _ce_block(g, row_loss, x, c, tidx, tprob, is_prob, weight, has_w, ignore_index, eps, scale, wsum,
                  mrow, srow, lrow, r0, r1)


def _ce_scale(tidx, weight, has_w, ignore_index, is_prob, mean, n):
    """1 / (sum of the weights of the non-ignored targets) for "mean" (NaN if
    that is 0; 1/N for probability targets), else 1."""
    if not mean:
        return 1.0
    if is_prob:
        return 1.0 / n
    d = 0.0
    for i in range(tidx.shape[0]):
        y = tidx[i]
        if y != ignore_index:
            d += np.float64(weight[y]) if has_w else 1.0
    return 1.0 / d if d != 0.0 else np.nan


def _ce_blocks(g, row_loss, x, c, tidx, tprob, is_prob, weight, has_w, ignore_index, eps, mean, wsum,
               rows_per_block):
    # returns scale * sum of the row losses (row order); blocks of rows over
    # prange (a plain loop in the serial compilation)
    n = row_loss.shape[0]
    g = g.reshape(g.size)  # (N, C) C-contiguous: flat views
    x = x.reshape(x.size)
    tprob = tprob.reshape(tprob.size)
    scale = _ce_scale(tidx, weight, has_w, ignore_index, is_prob, mean, n)
    rows = np.empty(3 * n)
    mrow = rows[:n]
    srow = rows[n:2 * n]
    lrow = rows[2 * n:]
    for b in prange((n + rows_per_block - 1) // rows_per_block):
        r0 = b * rows_per_block
        _ce_rows(g, row_loss, x, c, tidx, tprob, is_prob, weight, has_w, ignore_index, eps, scale, wsum,
                 mrow, srow, lrow, r0, min(n, r0 + rows_per_block))
    total = 0.0
    for i in range(n):
        total += row_loss[i]
    return scale * total


_CE_SCALE = vjit(_ce_scale)
_CE_BLOCK = per_dtype(_ce_block, vjit)
_CE_BLOCK_SMALL = per_dtype(_ce_block_small, vjit)
_CE_ROWS = per_dtype(_ce_rows, vjit, _ce_block=_CE_BLOCK, _ce_block_small=_CE_BLOCK_SMALL)
_CE_SERIAL = per_dtype(_ce_blocks, vjit, _ce_rows=_CE_ROWS, _ce_scale={d: _CE_SCALE for d in _CE_ROWS})
_CE_PARALLEL = per_dtype(_ce_blocks, vjit_parallel, "_parallel", _ce_rows=_CE_ROWS,
                         _ce_scale={d: _CE_SCALE for d in _CE_ROWS})


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


_NO_INDEX = np.zeros(1, dtype=np.int64)
_NO_PROB = {np.dtype(np.float32): np.zeros(1, np.float32), np.dtype(np.float64): np.zeros(1, np.float64)}
_NO_PROB2 = {np.dtype(np.float32): np.zeros((1, 1), np.float32), np.dtype(np.float64): np.zeros((1, 1), np.float64)}
_NO_WEIGHT = {np.dtype(np.float32): np.ones(1, np.float32), np.dtype(np.float64): np.ones(1, np.float64)}


def softmax_cross_entropy(grad, losses, logits, target, weight, ignore_index, label_smoothing, mean):
    n, c = logits.shape
    dt = logits.dtype
    is_prob = target.ndim == 2
    has_w = weight is not None
    w = weight if has_w else _NO_WEIGHT[dt]
    tidx = _NO_INDEX if is_prob else target
    tprob = target if is_prob else _NO_PROB2[dt]
    wsum = float(np.sum(w, dtype=np.float64)) if has_w else float(c)
    g = grad if grad is not None else np.empty((n, c), dtype=dt)  # exp(x - m) goes here
    row_loss = np.empty(n, dtype=np.float64) if losses is None or losses.dtype != np.float64 else losses
    rows_per_block = max(1, (CE_SMALL_BLOCK if c <= CE_SMALL_C and not is_prob else CE_BLOCK) // max(c, 1))
    if n * c * 6 < PARALLEL_MIN_WORK:
        kernel = _CE_SERIAL[dt]
    else:
        sync_numba_threads()
        kernel = _CE_PARALLEL[dt]
    total = call_readonly_inputs(kernel, (2, 4, 5, 7), g, row_loss, logits, c, tidx, tprob, is_prob, w, has_w,
                                 ignore_index, float(label_smoothing), bool(mean), wsum, rows_per_block)
    if losses is not None and losses is not row_loss:
        losses[...] = row_loss
    return total


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


def _pointwise_block(grad, buf, x, t, pw, has_pw, i0, code, param, scale):
    # buf(m) := per-element losses (float64), grad(m) := scale * d loss / d x, for
    # the elements i0 <= i < i0 + m. One loop per loss (the code is tested
    # outside the loops), float64 arithmetic, _vmath functions: vectorised.
    prefer_wide_vectors()
    m = x.shape[0]
    if code == 0:  # mse
        for i in range(m):
            d = np.float64(x[i]) - np.float64(t[i])
            buf[i] = d * d
            grad[i] = scale * (2.0 * d)
    elif code == 1:  # l1; sign(0) = 0, NaN stays NaN
        for i in range(m):
            d = np.float64(x[i]) - np.float64(t[i])
            buf[i] = abs(d)
            sg = -1.0 if d < 0.0 else d * 0.0
            grad[i] = scale * (1.0 if d > 0.0 else sg)
    elif code == 2:  # huber
        for i in range(m):
            d = np.float64(x[i]) - np.float64(t[i])
            a = abs(d)
            hi = param if d > param else d
            g = -param if d < -param else hi
            buf[i] = 0.5 * d * d if a < param else param * (a - 0.5 * param)
            grad[i] = scale * g
    elif code == 3:  # bce on probabilities, logs clamped at -100 (PyTorch)
        for i in range(m):
            xv = np.float64(x[i])
            tv = np.float64(t[i])
            lx = log_d(xv)  # log(0) = -inf, log(x < 0) = NaN
            l1x = log1p_d(-xv)
            lx = -100.0 if lx < -100.0 else lx
            l1x = -100.0 if l1x < -100.0 else l1x
            den = (1.0 - xv) * xv
            den = BCE_EPS if den < BCE_EPS else den
            buf[i] = -(tv * lx + (1.0 - tv) * l1x)
            grad[i] = scale * ((xv - tv) / den)
    elif code == 4:  # bce with logits: (1-t) x + lw softplus(-x), lw = 1 + (pw-1) t
        if has_pw:  # pos_weight (K,) repeats along the flat array: runs of j = 0..K-1
            k = pw.shape[0]
            j0 = i0 % k
            r0 = 0
            while r0 < m:
                ln = min(k - j0, m - r0)
                xs = x[r0:r0 + ln]
                ts = t[r0:r0 + ln]
                ps = pw[j0:j0 + ln]
                bs = buf[r0:r0 + ln]
                gs = grad[r0:r0 + ln]
                for i in range(ln):
                    xv = np.float64(xs[i])
                    tv = np.float64(ts[i])
                    p = np.float64(ps[i])
                    lw = 1.0 + (p - 1.0) * tv
                    bs[i] = (1.0 - tv) * xv + lw * softplus_d(-xv)
                    gs[i] = scale * (lw * sigmoid_d(xv) - p * tv)
                r0 += ln
                j0 = 0
        else:
            for i in range(m):
                xv = np.float64(x[i])
                tv = np.float64(t[i])
                buf[i] = (1.0 - tv) * xv + softplus_d(-xv)
                grad[i] = scale * (sigmoid_d(xv) - tv)
    elif code == 5:  # kl_div: t log t - t x (0 where t = 0, NaN where t < 0)
        for i in range(m):
            xv = np.float64(x[i])
            tv = np.float64(t[i])
            tlogt = 0.0 if tv == 0.0 else tv * log_d(tv)
            buf[i] = tlogt - tv * xv
            grad[i] = scale * -tv
    else:  # kl_div, log target: exp(t) (t - x)
        for i in range(m):
            tv = np.float64(t[i])
            et = exp_d(tv)
            buf[i] = et * (tv - np.float64(x[i]))
            grad[i] = scale * -et


def _pointwise(grad, losses, has_losses, x, t, pw, has_pw, code, param, scale, sums):
    # flat C-contiguous (n,) arrays; sums[b] := sum of the losses of block b
    n = x.shape[0]
    for b in prange(sums.shape[0]):
        lo = b * BLOCK
        hi = min(n, lo + BLOCK)
        buf = np.empty(hi - lo)
        _pointwise_block(grad[lo:hi], buf, x[lo:hi], t[lo:hi], pw, has_pw, lo, code, param, scale)
        if has_losses:
            out = losses[lo:hi]
            for i in range(hi - lo):
                out[i] = buf[i]
        sums[b] = row_sum_lanes(buf, np.empty(SUM_LANES))


_POINTWISE_BLOCK = vjit(_pointwise_block)
_BLOCK_NAME = {"_pointwise_block": _POINTWISE_BLOCK}
_POINTWISE = {dt: (vjit(specialise(_pointwise, f"_serial_{dt.name}", _BLOCK_NAME)),
                   vjit_parallel(specialise(_pointwise, f"_parallel_{dt.name}", _BLOCK_NAME)))
              for dt in (np.dtype(np.float32), np.dtype(np.float64))}


def pointwise_loss(grad, losses, input, target, pos_weight, name, param, scale):
    n = input.size
    dt = input.dtype
    dummy = _NO_PROB[dt]
    g = grad if grad is not None else np.empty(input.shape, dtype=dt)  # written, unused
    sums = np.empty((n + BLOCK - 1) // BLOCK, dtype=np.float64)
    if n * 4 < PARALLEL_MIN_WORK:
        kernel = _POINTWISE[dt][0]
    else:
        sync_numba_threads()
        kernel = _POINTWISE[dt][1]
    call_readonly_inputs(kernel, (3, 4, 5), g.reshape(-1), dummy if losses is None else losses.reshape(-1),
                         losses is not None, input.reshape(-1), target.reshape(-1),
                         dummy if pos_weight is None else pos_weight, pos_weight is not None, LOSS_CODES[name],
                         float(param), float(scale), sums)
    return scale * _ordered_sum(sums)
