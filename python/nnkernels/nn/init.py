"""Parameter initialisers, as torch.nn.init (same formulas, NumPy's RNG).

Each fills a Parameter (or array) in place and returns it. Random ones take
``rng=`` (a numpy Generator or an int seed); by default nnkernels' global
generator, seeded by :func:`nnkernels.manual_seed`.
"""

from __future__ import annotations

import math

import numpy as np

from ..random import get_rng
from .parameter import Parameter

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_",
           "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_"]


def _arr(t) -> np.ndarray:
    return t.data if isinstance(t, Parameter) else t


def _fill(t, values: np.ndarray):
    a = _arr(t)
    a[...] = values.astype(a.dtype, copy=False)
    return t


def _fans(a: np.ndarray) -> tuple[int, int]:
    if a.ndim < 2:
        raise ValueError(f"fan in and fan out can not be computed for an array with fewer than 2 "
                         f"dimensions (shape {a.shape})")
    receptive = int(np.prod(a.shape[2:])) if a.ndim > 2 else 1
    return a.shape[1] * receptive, a.shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """torch.nn.init.calculate_gain."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"nonlinearity: unsupported {nonlinearity!r}")


def _fan(a: np.ndarray, mode: str) -> int:
    fan_in, fan_out = _fans(a)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise ValueError(f"mode: expected 'fan_in' or 'fan_out', got {mode!r}")


def uniform_(t, a: float = 0.0, b: float = 1.0, *, rng=None):
    arr = _arr(t)
    return _fill(t, get_rng(rng).uniform(a, b, size=arr.shape))


def normal_(t, mean: float = 0.0, std: float = 1.0, *, rng=None):
    arr = _arr(t)
    return _fill(t, get_rng(rng).normal(mean, std, size=arr.shape))


def constant_(t, val: float):
    _arr(t).fill(val)
    return t


def zeros_(t):
    return constant_(t, 0.0)


def ones_(t):
    return constant_(t, 1.0)


def kaiming_uniform_(t, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                     rng=None):
    """U(-bound, bound), bound = gain * sqrt(3 / fan)."""
    arr = _arr(t)
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(arr, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(t, -bound, bound, rng=rng)


def kaiming_normal_(t, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                    rng=None):
    """N(0, std^2), std = gain / sqrt(fan) (He init with nonlinearity='relu')."""
    arr = _arr(t)
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(arr, mode))
    return normal_(t, 0.0, std, rng=rng)


def xavier_uniform_(t, gain: float = 1.0, *, rng=None):
    """U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_arr(t))
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -a, a, rng=rng)


def xavier_normal_(t, gain: float = 1.0, *, rng=None):
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_arr(t))
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng=rng)
