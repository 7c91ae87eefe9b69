"""optim family, Numba: one fused pass per update (param, grad and state read
once, written once), the same arithmetic order as the NumPy reference.

Scalars are converted to the arrays' dtype once, outside the loop; flags are
loop-invariant branches (LLVM unswitches them)."""

from __future__ import annotations

import math

from numba import prange

from ._jit import jit_pair, pick

__all__ = ["sgd_step", "adam_step", "adam_step_multi", "rmsprop_step", "adagrad_step"]

#: elements below which an update stays serial (a parallel launch costs more)
_WORK_PER_ELEMENT = 8


def _flat(a):
    return None if a is None else a.reshape(-1)


def _lerp_weight(w):
    return abs(w) < 0.5


@jit_pair
def _sgd(p, buf, g, lr, mom, damp, wd, nesterov, maximize, first, has_mom):
    n = p.shape[0]
    for i in prange(n):
        gi = -g[i] if maximize else g[i]
        if wd != 0:
            gi = gi + wd * p[i]
        if has_mom:
            if first:
                b = gi
            else:
                b = buf[i] * mom + damp * gi  # damp holds (1 - dampening)
            buf[i] = b
            if nesterov:
                gi = gi + mom * b
            else:
                gi = b
        p[i] = p[i] + lr * gi  # lr holds -lr


def sgd_step(param, momentum_buf, grad, lr, momentum, dampening, weight_decay, nesterov, maximize,
             first_step):
    p = _flat(param)
    t = p.dtype.type
    has_mom = momentum != 0
    buf = _flat(momentum_buf) if has_mom else p[:0]
    pick(_sgd, p.size * _WORK_PER_ELEMENT)(
        p, buf, _flat(grad), t(-lr), t(momentum), t(1.0 - dampening), t(weight_decay),
        bool(nesterov), bool(maximize), bool(first_step), has_mom)


@jit_pair
def _adam(p, m, v, vmax, g, neg_step_size, b1w, b1_small, b2, one_m_b2, inv_bc2_sqrt, eps, wd,
          decay_mul, amsgrad, maximize, decoupled):
    n = p.shape[0]
    for i in prange(n):
        gi = -g[i] if maximize else g[i]
        pi = p[i]
        if wd != 0:
            if decoupled:
                pi = pi * decay_mul
            else:
                gi = gi + wd * pi
        mi = m[i]
        if b1_small:
            mi = mi + b1w * (gi - mi)
        else:
            mi = gi - (gi - mi) * b1w  # b1w holds beta1 (= 1 - weight)
        m[i] = mi
        vi = v[i] * b2 + one_m_b2 * gi * gi
        v[i] = vi
        if amsgrad:
            mx = vmax[i]
            if mx != mx or mx > vi:  # torch.maximum: NaN propagates
                vi = mx
            vmax[i] = vi
        denom = math.sqrt(vi) * inv_bc2_sqrt + eps  # x 1/sqrt(bc2): one division less (optim.cpp)
        p[i] = pi + neg_step_size * mi / denom


def adam_step(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step, lr, beta1, beta2, eps,
              weight_decay, amsgrad, maximize, decoupled):
    p = _flat(param)
    t = p.dtype.type
    w1 = 1.0 - beta1
    small = _lerp_weight(w1)
    vmax = _flat(max_exp_avg_sq) if amsgrad else p[:0]
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    pick(_adam, p.size * _WORK_PER_ELEMENT)(
        p, _flat(exp_avg), _flat(exp_avg_sq), vmax, _flat(grad), t(-(lr / bc1)),
        t(w1 if small else 1.0 - w1), small, t(beta2), t(1.0 - beta2), t(1.0 / math.sqrt(bc2)), t(eps),
        t(weight_decay), t(1.0 - lr * weight_decay), bool(amsgrad), bool(maximize), bool(decoupled))


@jit_pair
def _rmsprop(p, sq, buf, gavg, g, neg_lr, alpha, one_m_alpha, aw, a_small, eps, wd, mom, centered,
             maximize, has_mom):
    n = p.shape[0]
    for i in prange(n):
        gi = -g[i] if maximize else g[i]
        pi = p[i]
        if wd != 0:
            gi = gi + wd * pi
        s = sq[i] * alpha + one_m_alpha * gi * gi
        sq[i] = s
        if centered:
            ga = gavg[i]
            if a_small:
                ga = ga + aw * (gi - ga)
            else:
                ga = gi - (gi - ga) * aw
            gavg[i] = ga
            avg = math.sqrt(s - ga * ga) + eps
        else:
            avg = math.sqrt(s) + eps
        if has_mom:
            b = buf[i] * mom + gi / avg
            buf[i] = b
            p[i] = pi + neg_lr * b
        else:
            p[i] = pi + neg_lr * gi / avg


def adam_step_multi(params, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, grads, steps, lr, beta1, beta2, eps,
                    weight_decay, amsgrad, maximize, decoupled):
    # one adam_step per entry (the C++ backend validates all, then runs them without the GIL)
    for i, p in enumerate(params):
        adam_step(p, exp_avgs[i], exp_avg_sqs[i], max_exp_avg_sqs[i] if amsgrad else None, grads[i],
                  steps[i], lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled)


def rmsprop_step(param, square_avg, momentum_buf, grad_avg, grad, lr, alpha, eps, weight_decay,
                 momentum, centered, maximize):
    p = _flat(param)
    t = p.dtype.type
    w = 1.0 - alpha
    small = _lerp_weight(w)
    has_mom = momentum > 0
    buf = _flat(momentum_buf) if has_mom else p[:0]
    gavg = _flat(grad_avg) if centered else p[:0]
    pick(_rmsprop, p.size * _WORK_PER_ELEMENT)(
        p, _flat(square_avg), buf, gavg, _flat(grad), t(-lr), t(alpha), t(1.0 - alpha),
        t(w if small else alpha), small, t(eps), t(weight_decay), t(momentum), bool(centered),
        bool(maximize), has_mom)


@jit_pair
def _adagrad(p, ssum, g, neg_clr, eps, wd, maximize):
    n = p.shape[0]
    for i in prange(n):
        gi = -g[i] if maximize else g[i]
        pi = p[i]
        if wd != 0:
            gi = gi + wd * pi
        s = ssum[i] + gi * gi
        ssum[i] = s
        p[i] = pi + neg_clr * gi / (math.sqrt(s) + eps)


def adagrad_step(param, state_sum, grad, step, lr, lr_decay, weight_decay, eps, maximize):
    p = _flat(param)
    t = p.dtype.type
    clr = lr / (1.0 + (step - 1) * lr_decay)
    pick(_adagrad, p.size * _WORK_PER_ELEMENT)(
        p, _flat(state_sum), _flat(grad), t(-clr), t(eps), t(weight_decay), bool(maximize))
