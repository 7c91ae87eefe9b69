"""optim family, C++ backend: thin calls into nnkernels._C (the binding checks
every in-place array: exact dtype, C-contiguous, writeable, never converted)."""

from __future__ import annotations

from ..._native import _C

__all__ = ["sgd_step", "adam_step", "adam_step_multi", "rmsprop_step", "adagrad_step"]


def sgd_step(param, momentum_buf, grad, lr, momentum, dampening, weight_decay, nesterov, maximize,
             first_step):
    _C.sgd_step(param, momentum_buf, grad, lr, momentum, dampening, weight_decay, nesterov, maximize,
                first_step)


def adam_step(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step, lr, beta1, beta2, eps,
              weight_decay, amsgrad, maximize, decoupled):
    _C.adam_step(param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step, lr, beta1, beta2, eps,
                 weight_decay, amsgrad, maximize, decoupled)


def adam_step_multi(params, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, grads, steps, lr, beta1, beta2, eps,
                    weight_decay, amsgrad, maximize, decoupled):
    _C.adam_step_multi(params, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, grads, steps, lr, beta1, beta2,
                       eps, weight_decay, amsgrad, maximize, decoupled)


def rmsprop_step(param, square_avg, momentum_buf, grad_avg, grad, lr, alpha, eps, weight_decay,
                 momentum, centered, maximize):
    _C.rmsprop_step(param, square_avg, momentum_buf, grad_avg, grad, lr, alpha, eps, weight_decay,
                    momentum, centered, maximize)


def adagrad_step(param, state_sum, grad, step, lr, lr_decay, weight_decay, eps, maximize):
    _C.adagrad_step(param, state_sum, grad, step, lr, lr_decay, weight_decay, eps, maximize)
