"""Layers with parameters or state: Linear, BatchNorm1d, Dropout, Flatten, Identity."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .. import ops
from ..backends import resolve
from ..random import get_rng
from . import init
from .module import Module
from .parameter import Parameter


class Linear(Module):
    """y = x @ weight.T + bias. weight (out_features, in_features), bias (out_features,).

    Initialised exactly as torch.nn.Linear: weight kaiming_uniform(a=sqrt(5)),
    i.e. U(-1/sqrt(in), 1/sqrt(in)), bias U(-1/sqrt(in), 1/sqrt(in)); ``rng=``
    (Generator or int seed) or the global generator (nnkernels.manual_seed).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 dtype=np.float32, rng=None) -> None:
        super().__init__(dtype)
        for v, n in ((in_features, "in_features"), (out_features, "out_features")):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{n}: expected a non-negative int, got {v!r}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=self.dtype))
        self.bias = Parameter(np.empty(self.out_features, dtype=self.dtype)) if bias else None
        self._saved_x = None
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None) -> None:
        rng = get_rng(rng)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), rng=rng)
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound, rng=rng)

    def forward(self, x):
        b = None if self.bias is None else self.bias.data
        y = ops.linear(x, self.weight.data, b)
        self._saved_x = x if self.training else None
        return y

    def backward(self, grad_out, need_input_grad: bool = True):
        x = self._need_saved(self._saved_x)
        w = self.weight.data
        x2 = x.reshape(-1, self.in_features)
        g2 = np.ascontiguousarray(grad_out.reshape(-1, self.out_features), dtype=self.dtype)
        if g2.shape[0] != x2.shape[0]:
            raise ValueError(f"grad_out: expected shape {x.shape[:-1] + (self.out_features,)}, "
                             f"got {grad_out.shape}")
        grad_x = np.empty(x2.shape, dtype=self.dtype) if need_input_grad else None
        # grad_x = g @ W; weight.grad += g.T @ x; bias.grad += g.sum(0)  (in place)
        resolve().linear_backward(grad_x, self.weight.grad,
                                  None if self.bias is None else self.bias.grad, g2, x2, w, True)
        return None if grad_x is None else grad_x.reshape(x.shape)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Identity(Module):
    def forward(self, x):
        return x

    def backward(self, grad_out, need_input_grad: bool = True):
        return grad_out if need_input_grad else None


class Flatten(Module):
    """Flattens dims start_dim..end_dim (default: all but the batch dim)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1, *, dtype=np.float32) -> None:
        super().__init__(dtype)
        self.start_dim = start_dim
        self.end_dim = end_dim
        self._saved_shape = None

    def forward(self, x):
        nd = x.ndim
        s = self.start_dim % nd if nd else 0
        e = self.end_dim % nd if nd else 0
        self._saved_shape = x.shape
        if nd == 0 or s >= e:
            return x
        return x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1:])

    def backward(self, grad_out, need_input_grad: bool = True):
        shape = self._need_saved(self._saved_shape)
        return grad_out.reshape(shape) if need_input_grad else None

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """In training, zeroes each element with probability p and scales the rest by 1/(1-p).
    Identity in eval mode. Masks come from ``rng=`` or the global generator."""

    def __init__(self, p: float = 0.5, *, dtype=np.float32, rng=None) -> None:
        super().__init__(dtype)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p: dropout probability has to be between 0 and 1, but got {p}")
        self.p = float(p)
        self._rng = rng if isinstance(rng, np.random.Generator) else (None if rng is None else get_rng(rng))
        self._saved_mask = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._saved_mask = None
            return x
        if self.p == 1.0:
            mask = np.zeros_like(x)
        else:
            rng = self._rng if self._rng is not None else get_rng()
            keep = rng.random(x.shape, dtype=x.dtype) >= self.dtype.type(self.p)
            mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        self._saved_mask = mask
        return x * mask

    def backward(self, grad_out, need_input_grad: bool = True):
        if not need_input_grad:
            return None
        if self._saved_mask is None:
            return grad_out
        return grad_out * self._saved_mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class BatchNorm1d(Module):
    """Batch normalisation over (N, C) or (N, C, L) inputs, as torch.nn.BatchNorm1d.

    Training: normalise with the batch mean and biased variance; update
    running_mean/running_var (unbiased variance) with ``momentum`` (None:
    cumulative average) and count num_batches_tracked. Eval: use the running
    statistics (when track_running_stats).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, dtype=np.float32) -> None:
        super().__init__(dtype)
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=self.dtype))
            self.bias = Parameter(np.zeros(num_features, dtype=self.dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=self.dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=self.dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._saved_xhat = None
        self._saved_invstd = None

    def _axes(self, x):
        if x.ndim == 2:
            return (0,), (1, -1)
        if x.ndim == 3:
            return (0, 2), (1, -1, 1)
        raise ValueError(f"BatchNorm1d: expected a 2-D or 3-D input, got shape {x.shape}")

    def forward(self, x):
        axes, bshape = self._axes(x)
        if x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d: expected {self.num_features} features (dim 1), got shape {x.shape}")
        t = self.dtype.type
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            count = x.size // self.num_features
            if self.training and count <= 1:
                raise ValueError(f"Expected more than 1 value per channel when training, got input "
                                 f"size {x.shape}")
            mean = x.mean(axis=axes, dtype=x.dtype)
            xc = x - mean.reshape(bshape)
            var = np.mean(xc * xc, axis=axes, dtype=x.dtype)
            if self.training and self.track_running_stats:
                self.num_batches_tracked = self.num_batches_tracked + 1
                if self.momentum is None:
                    f = 1.0 / float(self.num_batches_tracked)
                else:
                    f = float(self.momentum)
                unbiased = var * t(count / (count - 1))
                self.running_mean *= t(1.0 - f)
                self.running_mean += t(f) * mean
                self.running_var *= t(1.0 - f)
                self.running_var += t(f) * unbiased
        else:
            mean, var = self.running_mean, self.running_var
            xc = x - mean.reshape(bshape)
        invstd = t(1.0) / np.sqrt(var + t(self.eps))
        xhat = xc * invstd.reshape(bshape)
        y = xhat * self.weight.data.reshape(bshape) + self.bias.data.reshape(bshape) if self.affine else xhat
        if self.training:
            self._saved_xhat, self._saved_invstd = xhat, invstd
            self._saved_batch = use_batch
        else:
            self._saved_xhat = self._saved_invstd = None
        return y

    def backward(self, grad_out, need_input_grad: bool = True):
        xhat = self._need_saved(self._saved_xhat)
        invstd = self._saved_invstd
        axes, bshape = self._axes(xhat)
        if self.affine:
            self.weight.grad += np.sum(grad_out * xhat, axis=axes, dtype=xhat.dtype)
            self.bias.grad += np.sum(grad_out, axis=axes, dtype=xhat.dtype)
        if not need_input_grad:
            return None
        g = grad_out * self.weight.data.reshape(bshape) if self.affine else grad_out
        # d/dx of batch-statistics normalisation:
        # dx = invstd * (g - mean(g) - xhat * mean(g * xhat))
        mg = g.mean(axis=axes, dtype=g.dtype).reshape(bshape)
        mgx = np.mean(g * xhat, axis=axes, dtype=g.dtype).reshape(bshape)
        return (g - mg - xhat * mgx) * invstd.reshape(bshape)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")
