"""GEMM family ops: matmul, linear, linear_backward."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..backends import resolve
from ..backends.interface.gemm import EPILOGUES
from ._checks import as_float_array, check_bool, check_finite_scalar, check_out, require_ndim, same_dtype

__all__ = ["matmul", "linear", "linear_backward"]


def _check_activation(activation, activation_param):
    if activation is not None and activation not in EPILOGUES:
        raise ValueError(f"activation: expected None or one of {EPILOGUES}, got {activation!r}")
    return check_finite_scalar(activation_param, "negative_slope")


def matmul(a, b, *, trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0,
           beta: float = 0.0, out: Optional[np.ndarray] = None, backend: Optional[str] = None) -> np.ndarray:
    """``alpha * op(a) @ op(b) + beta * out`` for 2-D float32/float64 arrays.

    ``op(x)`` is ``x.T`` when ``trans_x``; the transpose is read by the kernel
    (never copied). Any strides work. ``beta != 0`` needs ``out``, which is
    then read and overwritten in place; otherwise ``out`` (if given) receives
    the result. As in BLAS and ``torch.addmm``, ``alpha == 0`` does not read
    ``a @ b`` and ``beta == 0`` does not read ``out`` (NaN/inf there do not
    propagate). Returns the result array.
    """
    a = as_float_array(a, "a")
    b = as_float_array(b, "b")
    dt = same_dtype(a=a, b=b)
    require_ndim(a, "a", 2)
    require_ndim(b, "b", 2)
    alpha = check_finite_scalar(alpha, "alpha")
    beta = check_finite_scalar(beta, "beta")
    trans_a, trans_b = check_bool(trans_a, "trans_a"), check_bool(trans_b, "trans_b")
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    if opa.shape[1] != opb.shape[0]:
        raise ValueError(f"matmul: shapes {opa.shape} (a) and {opb.shape} (b) are not aligned "
                         f"({opa.shape[1]} != {opb.shape[0]})")
    shape = (opa.shape[0], opb.shape[1])
    if out is None:
        if beta != 0.0:
            raise ValueError("out: beta != 0 requires an out array to accumulate into")
        out = np.empty(shape, dtype=dt)
    else:
        check_out(out, "out", shape, dt, a, b)
    resolve(backend).gemm(out, opa, opb, alpha, beta)
    return out


def linear(x, weight, bias=None, *, activation: Optional[str] = None, negative_slope: float = 0.01,
           out: Optional[np.ndarray] = None, backend: Optional[str] = None) -> np.ndarray:
    """``x @ weight.T + bias`` (PyTorch's F.linear), optionally followed by an activation.

    ``x``: (..., in_features); ``weight``: (out_features, in_features);
    ``bias``: (out_features,) or None. The bias and the activation (one of
    relu, gelu, gelu_tanh, silu, leaky_relu) are applied in the GEMM's
    epilogue, not in another pass.
    """
    x = as_float_array(x, "x")
    weight = as_float_array(weight, "weight")
    bias = None if bias is None else as_float_array(bias, "bias")
    dt = same_dtype(x=x, weight=weight, bias=bias)
    require_ndim(weight, "weight", 2)
    if x.ndim == 0:
        raise ValueError("x: expected at least 1 dimension, got a scalar")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: x has shape {x.shape} but weight has shape {weight.shape} "
                         f"(x.shape[-1] must equal weight.shape[1])")
    if bias is not None:
        require_ndim(bias, "bias", 1)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias: expected shape ({weight.shape[0]},), got {bias.shape}")
        bias = np.ascontiguousarray(bias)
    slope = _check_activation(activation, negative_slope)
    lead = x.shape[:-1]
    rows = math.prod(lead)  # not reshape(-1, ...): ambiguous when a dimension is 0
    x2 = x.reshape(rows, x.shape[-1]) if x.ndim != 2 else x
    shape = lead + (weight.shape[0],)
    if out is None:
        out = np.empty(shape, dtype=dt)
    else:
        check_out(out, "out", shape, dt, x, weight, bias)
    out2 = out.reshape(rows, weight.shape[0]) if out.ndim != 2 else out
    if out2.size and not np.shares_memory(out2, out):  # pragma: no cover - reshape copied
        raise ValueError("out: must be reshapeable to 2-D without a copy")
    resolve(backend).linear_forward(out2, x2, weight, bias, activation, slope)
    return out


def linear_backward(x, weight, grad_out, *, need_input_grad: bool = True,
                    activation: Optional[str] = None, pre_activation=None, output=None,
                    negative_slope: float = 0.01, backend: Optional[str] = None):
    """Gradients of ``linear``: returns ``(grad_x or None, grad_weight, grad_bias)``.

    ``x``: (N, in), ``weight``: (out, in), ``grad_out``: (N, out) (leading
    dimensions of ``x``/``grad_out`` are flattened). ``grad_bias`` is the sum
    of ``grad_out`` over the batch.

    With ``activation`` (as in ``linear(..., activation=...)``), ``grad_out`` is
    the gradient of the activation's output and the layer's gradients use
    ``grad_out * act'(z)``, computed inside the kernels (the C++ backend applies
    the factor while it packs ``grad_out``; nothing of shape (N, out) is
    allocated). ``z`` is given as ``pre_activation`` (``x @ weight.T + bias``);
    for relu, and leaky_relu with ``negative_slope >= 0``, the layer's
    ``output`` may be given instead (its sign is the sign of ``z``).
    """
    x = as_float_array(x, "x")
    weight = as_float_array(weight, "weight")
    grad_out = as_float_array(grad_out, "grad_out")
    dt = same_dtype(x=x, weight=weight, grad_out=grad_out)
    need_input_grad = check_bool(need_input_grad, "need_input_grad")
    require_ndim(weight, "weight", 2)
    if x.ndim == 0 or grad_out.ndim == 0:
        raise ValueError("x, grad_out: expected at least 1 dimension")
    o, i = weight.shape
    if x.shape[-1] != i:
        raise ValueError(f"x: shape {x.shape} does not match weight {weight.shape} (last dim must be {i})")
    if grad_out.shape[:-1] != x.shape[:-1] or grad_out.shape[-1] != o:
        raise ValueError(f"grad_out: expected shape {x.shape[:-1] + (o,)}, got {grad_out.shape}")
    slope = _check_activation(activation, negative_slope)
    z2 = z = None
    if activation is None:
        if pre_activation is not None or output is not None:
            raise ValueError("pre_activation/output: only meaningful together with activation=")
    else:
        if (pre_activation is None) == (output is None):
            raise ValueError("activation: pass exactly one of pre_activation= (z = x @ weight.T + bias) "
                             "or output= (act(z); relu/leaky_relu only)")
        if output is not None:
            if activation not in ("relu", "leaky_relu") or (activation == "leaky_relu" and slope < 0):
                raise ValueError(f"output: act'(z) cannot be recovered from the output of {activation!r}; "
                                 f"pass pre_activation= instead")
            z, zname = as_float_array(output, "output"), "output"
        else:
            z, zname = as_float_array(pre_activation, "pre_activation"), "pre_activation"
        same_dtype(grad_out=grad_out, **{zname: z})
        if z.shape != grad_out.shape:
            raise ValueError(f"{zname}: expected shape {grad_out.shape}, got {z.shape}")
    rows = math.prod(x.shape[:-1])  # not reshape(-1, ...): ambiguous when a dimension is 0
    if z is not None:
        z2 = np.ascontiguousarray(z.reshape(rows, o))
    x2 = x.reshape(rows, i)
    g2 = np.ascontiguousarray(grad_out.reshape(rows, o))
    grad_x = np.empty(x2.shape, dtype=dt) if need_input_grad else None
    grad_w = np.empty((o, i), dtype=dt)
    grad_b = np.empty((o,), dtype=dt)
    kern = resolve(backend)
    if activation is None:
        kern.linear_backward(grad_x, grad_w, grad_b, g2, x2, weight, False)
    else:
        kern.linear_backward(grad_x, grad_w, grad_b, g2, x2, weight, False, activation=activation,
                             pre_activation=z2, activation_param=slope)
    if grad_x is not None:
        grad_x = grad_x.reshape(x.shape)
    return grad_x, grad_w, grad_b
