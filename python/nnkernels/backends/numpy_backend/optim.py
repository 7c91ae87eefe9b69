"""optim family, NumPy reference: PyTorch's single-tensor update rules, op by op.

Readable, not fused (NumPy makes temporaries); the oracle for the other
backends. Scalars are rounded to the arrays' dtype before use, as PyTorch
does with Python scalars.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["sgd_step", "adam_step", "adam_step_multi", "rmsprop_step", "adagrad_step"]


def _grad(param, grad, weight_decay, maximize):
    t = param.dtype.type
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g + t(weight_decay) * param
    return g


def _lerp(start, end, weight):
    # torch.lerp: start + w * (end - start) for |w| < 0.5, else end - (end - start) * (1 - w)
    t = start.dtype.type
    if abs(weight) < 0.5:
        return start + t(weight) * (end - start)
    return end - (end - start) * t(1.0 - weight)


def sgd_step(param, momentum_buf, grad, lr, momentum, dampening, weight_decay, nesterov, maximize,
             first_step):
    t = param.dtype.type
    g = _grad(param, grad, weight_decay, maximize)
    if momentum != 0:
        if first_step:
            momentum_buf[...] = g
        else:
            momentum_buf *= t(momentum)
            momentum_buf += t(1.0 - dampening) * g
        g = g + t(momentum) * momentum_buf if nesterov else momentum_buf
    param += t(-lr) * g


def adam_step(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step, lr, beta1, beta2, eps,
              weight_decay, amsgrad, maximize, decoupled):
    t = param.dtype.type
    g = -grad if maximize else grad
    if weight_decay != 0:
        if decoupled:
            param *= t(1.0 - lr * weight_decay)
        else:
            g = g + t(weight_decay) * param
    exp_avg[...] = _lerp(exp_avg, g, 1.0 - beta1)
    exp_avg_sq *= t(beta2)
    exp_avg_sq += t(1.0 - beta2) * g * g
    bias_correction1 = 1.0 - beta1 ** step
    bias_correction2 = 1.0 - beta2 ** step
    step_size = lr / bias_correction1
    bc2_sqrt = math.sqrt(bias_correction2)
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        v = max_exp_avg_sq
    else:
        v = exp_avg_sq
    denom = np.sqrt(v) / t(bc2_sqrt) + t(eps)
    param += t(-step_size) * exp_avg / denom


def adam_step_multi(params, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, grads, steps, lr, beta1, beta2, eps,
                    weight_decay, amsgrad, maximize, decoupled):
    # one adam_step per entry (the C++ backend validates all, then runs them without the GIL)
    for i, p in enumerate(params):
        adam_step(p, exp_avgs[i], exp_avg_sqs[i], max_exp_avg_sqs[i] if amsgrad else None, grads[i],
                  steps[i], lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled)


def rmsprop_step(param, square_avg, momentum_buf, grad_avg, grad, lr, alpha, eps, weight_decay,
                 momentum, centered, maximize):
    t = param.dtype.type
    g = _grad(param, grad, weight_decay, maximize)
    square_avg *= t(alpha)
    square_avg += t(1.0 - alpha) * g * g
    if centered:
        grad_avg[...] = _lerp(grad_avg, g, 1.0 - alpha)
        avg = np.sqrt(square_avg - grad_avg * grad_avg)
    else:
        avg = np.sqrt(square_avg)
    avg = avg + t(eps)
    if momentum > 0:
        momentum_buf *= t(momentum)
        momentum_buf += g / avg
        param += t(-lr) * momentum_buf
    else:
        param += t(-lr) * g / avg


def adagrad_step(param, state_sum, grad, step, lr, lr_decay, weight_decay, eps, maximize):
    t = param.dtype.type
    g = _grad(param, grad, weight_decay, maximize)
    clr = lr / (1.0 + (step - 1) * lr_decay)
    state_sum += g * g
    param += t(-clr) * g / (np.sqrt(state_sum) + t(eps))
