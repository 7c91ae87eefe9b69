"""GEMM family, NumPy reference (readable; the oracle for the other backends)."""

from __future__ import annotations

import math

import numpy as np

from ._act import apply_activation, erf

__all__ = ["gemm", "colsum", "linear_forward", "linear_backward"]



def gemm(out, a, b, alpha, beta, bias=None, activation=None, activation_param=0.0):
    # out(m, n) := act(alpha * a @ b + beta * out + bias)
    # alpha == 0: a @ b is not computed, so NaN/inf in a or b do not reach out
    # (BLAS and torch.addmm semantics; beta == 0 likewise ignores out).
    r = np.matmul(a, b) if alpha != 0.0 else np.zeros(out.shape, out.dtype)
    if alpha != 1.0:
        r *= alpha
    if beta != 0.0:
        r += beta * out
    if bias is not None:
        r += bias
    if activation is not None:
        r = apply_activation(r, activation, activation_param)
    out[...] = r


def colsum(out, x, accumulate):
    # out(n) (+)= sum over rows of x(m, n)
    s = x.sum(axis=0, dtype=x.dtype)
    if accumulate:
        out += s
    else:
        out[...] = s


def linear_forward(out, x, weight, bias, activation=None, activation_param=0.0):
    # out(N, O) = act(x(N, I) @ weight(O, I).T + bias(O))
    gemm(out, x, weight.T, 1.0, 0.0, bias, activation, activation_param)


def activation_derivative(z, name, param=0.0):
    """act'(z) elementwise (PyTorch's backward formulas; relu'(0) = 0)."""
    dt = z.dtype.type
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "leaky_relu":
        return np.where(z > 0, dt(1), dt(param))
    if name == "gelu":
        cdf = dt(0.5) * (dt(1) + erf(z * dt(1 / math.sqrt(2))))
        pdf = np.exp(dt(-0.5) * z * z) * dt(1 / math.sqrt(2 * math.pi))
        return cdf + z * pdf
    if name == "gelu_tanh":
        k0, k1 = dt(math.sqrt(2 / math.pi)), dt(0.044715)
        t = np.tanh(k0 * (z + k1 * z**3))
        return dt(0.5) * (dt(1) + t) + dt(0.5) * z * (dt(1) - t * t) * k0 * (dt(1) + dt(3) * k1 * z * z)
    if name == "silu":
        with np.errstate(over="ignore"):
            s = dt(1) / (dt(1) + np.exp(-z))
        return s * (dt(1) + z * (dt(1) - s))
    raise ValueError(f"activation: unknown activation {name!r}")


def linear_backward(grad_x, grad_weight, grad_bias, grad_out, x, weight, accumulate,
                    activation=None, pre_activation=None, activation_param=0.0):
    # g(N, O) = grad_out * act'(z) (or grad_out); grad_x(N, I) = g @ weight(O, I);
    # grad_weight(O, I) [+]= g.T @ x; grad_bias(O) [+]= sum_N g
    beta = 1.0 if accumulate else 0.0
    if activation is not None:
        grad_out = grad_out * activation_derivative(pre_activation, activation, activation_param)
    if grad_x is not None:
        gemm(grad_x, grad_out, weight, 1.0, 0.0)
    if grad_weight is not None:
        gemm(grad_weight, grad_out.T, x, 1.0, beta)
    if grad_bias is not None:
        colsum(grad_bias, grad_out, accumulate)
