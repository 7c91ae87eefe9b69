"""Gradient utilities: clip_grad_norm_, clip_grad_value_, gradcheck."""

from __future__ import annotations

import copy

import numpy as np

from .nn.module import Module
from .nn.parameter import Parameter

__all__ = ["clip_grad_norm_", "clip_grad_value_", "gradcheck"]


def _params(parameters) -> list[Parameter]:
    if isinstance(parameters, Parameter):
        return [parameters]
    if isinstance(parameters, Module):
        return list(parameters.parameters())
    return list(parameters)


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale gradients in place so their global norm is at most ``max_norm``
    (torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6),
    clamped to 1). Returns the total norm before clipping."""
    ps = _params(parameters)
    if not ps:
        return 0.0
    norm_type = float(norm_type)
    if norm_type == np.inf:
        norms = [np.max(np.abs(p.grad)) if p.grad.size else 0.0 for p in ps]
        total = float(max(norms))
    else:
        norms = [np.linalg.norm(p.grad.reshape(-1), ord=norm_type) for p in ps]
        total = float(np.linalg.norm(np.asarray(norms, dtype=np.float64), ord=norm_type))
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients is non-finite, so it "
                           "cannot be clipped")
    coef = min(float(max_norm) / (total + 1e-6), 1.0)
    for p in ps:
        p.grad *= p.grad.dtype.type(coef)
    return total


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    c = float(clip_value)
    for p in _params(parameters):
        np.clip(p.grad, -c, c, out=p.grad)


def gradcheck(module: Module, x, *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              seed: int = 0, raise_exception: bool = True) -> bool:
    """Check ``module.backward`` against central differences, in float64.

    A float64 copy of ``module`` (training mode) is run on ``x``; the scalar
    ``sum(module(x) * r)`` (``r`` random, fixed by ``seed``) is differentiated
    numerically with respect to every input element and every parameter
    element, and compared with the analytic gradients. Raises AssertionError
    naming the first mismatch (or returns False if not ``raise_exception``).
    The module must be deterministic (no Dropout in training mode).
    """
    m = copy.deepcopy(module).double().train()
    x = np.array(x, dtype=np.float64, copy=True)
    y = m(x)
    r = np.random.default_rng(seed).standard_normal(y.shape)
    m.zero_grad()
    gx = m.backward(r.copy())
    analytic = {"input": np.asarray(gx)}
    for name, p in m.named_parameters():
        analytic[name] = p.grad.copy()

    def f() -> float:
        return float(np.sum(m(x) * r))

    targets = {"input": x, **{name: p.data for name, p in m.named_parameters()}}
    for name, arr in targets.items():
        flat = arr.reshape(-1)
        num = np.empty(flat.size)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            fp = f()
            flat[i] = old - eps
            fm = f()
            flat[i] = old
            num[i] = (fp - fm) / (2 * eps)
        ana = analytic[name].reshape(-1)
        bad = np.abs(num - ana) > atol + rtol * np.abs(num)
        if bad.any():
            i = int(np.argmax(bad))
            if raise_exception:
                raise AssertionError(f"gradcheck: d/d {name}[{i}]: analytic {ana[i]!r}, numerical "
                                     f"{num[i]!r} ({int(bad.sum())} of {bad.size} elements differ)")
            return False
    return True
