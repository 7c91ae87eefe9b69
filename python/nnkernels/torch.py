"""PyTorch drop-ins that run nnkernels' kernels.

Importing this module imports PyTorch; ``import nnkernels`` alone never does.
(Inside this file ``import torch`` is an absolute import: it is PyTorch.)

What is here:

* functional ops with autograd, PyTorch's signatures: :func:`linear`,
  :func:`relu`, :func:`gelu`, :func:`silu`, :func:`leaky_relu`,
  :func:`cross_entropy`, :func:`mse_loss`;
* modules that are subclasses of their ``torch.nn`` namesakes (same
  constructor, parameters, ``state_dict`` keys and initialisation) whose
  ``forward`` calls those ops: :class:`Linear`, :class:`ReLU`, :class:`GELU`,
  :class:`SiLU`, :class:`LeakyReLU`, :class:`CrossEntropyLoss`, :class:`MSELoss`;
* :func:`patch` / :func:`unpatch`: swap the modules of an existing model in
  place (weights, hooks and identity kept), and back;
* optimizers :class:`SGD`, :class:`Adam`, :class:`AdamW`: subclasses of
  ``torch.optim``'s whose ``step`` runs nnkernels' fused update kernels
  directly on the parameters' memory;
* :func:`to_torch` / :func:`from_torch`: convert ``nnkernels.nn`` models.

Our kernels run only when they can give PyTorch's answer: CPU, strided,
float32/float64 tensors of one dtype, outside ``torch.compile`` tracing and
functorch transforms, and no double backward. Anything else (CUDA, half
precision, ``create_graph=True`` second derivatives, in-place variants, class
probability targets...) goes to PyTorch's own op. Tensors cross to the
kernels as NumPy views of the same memory (no copies); results come back with
``torch.from_numpy`` (no copies either).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as _tnn
import torch.nn.functional as F
from torch.nn.modules import module as _tnn_module  # global hook registries
from torch.optim import optimizer as _torch_optimizer  # global step hook registries

from . import ops as _ops
from .backends import resolve as _resolve

__all__ = [
    "linear", "relu", "gelu", "silu", "leaky_relu", "cross_entropy", "mse_loss",
    "Linear", "ReLU", "GELU", "SiLU", "LeakyReLU", "CrossEntropyLoss", "MSELoss",
    "patch", "unpatch", "is_patched", "SGD", "Adam", "AdamW", "to_torch", "from_torch",
]

_FLOAT = (torch.float32, torch.float64)
_functorch = getattr(torch._C, "_functorch", None)


# --------------------------------------------------------------------------
# When do our kernels run?
# --------------------------------------------------------------------------

_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)
_is_wrapped = getattr(_functorch, "is_functorch_wrapped_tensor", lambda t: False)
_PLAIN_TYPES = (torch.Tensor, _tnn.Parameter)


def _tracing() -> bool:
    """True under torch.compile / FX tracing / TorchScript, where a NumPy round trip is wrong."""
    return _is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()


def _plain(t) -> bool:
    """A plain CPU float32/float64 strided tensor whose memory NumPy can view."""
    # exact types only: FakeTensor, DTensor and other tensor subclasses go to PyTorch
    return (type(t) in _PLAIN_TYPES and t.is_cpu and t.dtype in _FLOAT
            and t.layout is torch.strided and not t.is_neg() and t.numel() != 0
            and not _is_wrapped(t))


def _eligible(*tensors) -> bool:
    """Every tensor (None ignored) is _plain and all share one dtype."""
    if _tracing():
        return False
    dtype = None
    for t in tensors:
        if t is None:
            continue
        if not _plain(t):
            return False
        if dtype is None:
            dtype = t.dtype
        elif t.dtype != dtype:
            return False
    return dtype is not None


def _np(t: torch.Tensor) -> np.ndarray:
    """NumPy view of a tensor's memory (no copy)."""
    return t.detach().numpy()


def _t(a: np.ndarray) -> torch.Tensor:
    """Tensor over a NumPy array's memory (no copy)."""
    return torch.from_numpy(a)


def _has_kernels(*names: str) -> bool:
    """The current nnkernels backend implements these kernels."""
    kernels = _resolve().kernels
    return all(n in kernels for n in names)


def _torch_grads(fn: Callable, inputs: Sequence, needs: Sequence[bool], grad_outputs):
    """Gradients of ``fn(*inputs)`` computed by PyTorch's autograd.

    Used from ``backward`` when a graph of the backward is wanted
    (``create_graph=True``): the saved inputs keep their history, so the
    returned gradients are differentiable again.
    """
    wrt = [x for x, n in zip(inputs, needs) if n]
    with torch.enable_grad():
        out = fn(*inputs)
        if not isinstance(out, tuple):
            out, grad_outputs = (out,), (grad_outputs,)
        got = torch.autograd.grad(out, wrt, grad_outputs, create_graph=True, allow_unused=True)
    it = iter(got)
    return tuple(next(it) if n else None for n in needs)


# --------------------------------------------------------------------------
# linear (optionally with a fused relu / leaky_relu epilogue)
# --------------------------------------------------------------------------

def _torch_linear(x, weight, bias, activation=None, slope=0.01):
    y = F.linear(x, weight, bias)
    if activation == "relu":
        y = F.relu(y)
    elif activation == "leaky_relu":
        y = F.leaky_relu(y, slope)
    return y


class _LinearFn(torch.autograd.Function):
    """Linear [+ relu / leaky_relu epilogue] calling the backend's kernels directly.

    The callers (:func:`linear`, :func:`_linear_act`) have checked dtypes,
    devices and shapes, so the ops layer's validation is skipped here.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, activation, slope):
        kernels = _resolve()
        xa, wa = _np(x), _np(weight)
        ba = None if bias is None else np.ascontiguousarray(_np(bias))
        x2 = xa.reshape(-1, xa.shape[-1])
        out = np.empty((x2.shape[0], wa.shape[0]), dtype=xa.dtype)
        kernels.linear_forward(out, x2, wa, ba, activation, slope)
        y = _t(out.reshape(xa.shape[:-1] + (wa.shape[0],)))
        ctx.activation, ctx.slope, ctx.kernels = activation, slope, kernels
        ctx.save_for_backward(x, weight, bias, y if activation is not None else None)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, bias, y = ctx.saved_tensors
        nx, nw, nb = ctx.needs_input_grad[:3]
        nb = nb and bias is not None
        if torch.is_grad_enabled() or not _eligible(grad_y, x):
            # create_graph=True (double backward) or an odd grad: PyTorch's formulas
            gx, gw, gb = _torch_grads(lambda a, w, b: _torch_linear(a, w, b, ctx.activation, ctx.slope),
                                      (x, weight, bias), (nx, nw, nb), grad_y)
            return gx, gw, gb, None, None
        wa = _np(weight)
        o, i = wa.shape
        x2 = _np(x).reshape(-1, i)
        g2 = np.ascontiguousarray(_np(grad_y).reshape(-1, o))
        # with a fused relu/leaky_relu (slope >= 0), act'(z) is read off the sign of the
        # output y, inside the kernel (applied while grad_out is packed)
        z2 = None if y is None else np.ascontiguousarray(_np(y).reshape(-1, o))
        gx = np.empty(x2.shape, dtype=wa.dtype) if nx else None
        gw = np.empty((o, i), dtype=wa.dtype) if nw else None
        gb = np.empty((o,), dtype=wa.dtype) if nb else None
        ctx.kernels.linear_backward(gx, gw, gb, g2, x2, wa, False, ctx.activation, z2, ctx.slope)
        return (_t(gx.reshape(x.shape)) if nx else None, _t(gw) if nw else None,
                _t(gb) if nb else None, None, None)


def _linear_ok(input, weight, bias) -> bool:
    """Our kernels can compute F.linear(input, weight, bias) (else PyTorch does, or raises)."""
    return (input.dim() >= 1 and weight.dim() == 2 and input.shape[-1] == weight.shape[1]
            and (bias is None or (bias.dim() == 1 and bias.shape[0] == weight.shape[0]))
            and _eligible(input, weight, bias) and _has_kernels("linear_forward", "linear_backward"))


def linear(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``torch.nn.functional.linear`` on nnkernels' GEMM: ``input @ weight.T + bias``."""
    if _linear_ok(input, weight, bias):
        return _LinearFn.apply(input, weight, bias, None, 0.0)
    return F.linear(input, weight, bias)


def _linear_act(input, weight, bias, activation: str, slope: float = 0.0):
    """linear followed by relu / leaky_relu(slope > 0) in the GEMM's epilogue."""
    if _linear_ok(input, weight, bias):
        return _LinearFn.apply(input, weight, bias, activation, slope)
    return _torch_linear(input, weight, bias, activation, slope)


# --------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------

class _ActFn(torch.autograd.Function):
    """An elementwise activation: forward/backward kernels from nnkernels.ops."""

    @staticmethod
    def forward(ctx, x, name, kwargs):
        ctx.name, ctx.kwargs = name, kwargs
        ctx.save_for_backward(x)
        return _t(getattr(_ops, name)(_np(x), **kwargs))

    @staticmethod
    def backward(ctx, grad_y):
        (x,) = ctx.saved_tensors
        if torch.is_grad_enabled() or not _eligible(grad_y, x):
            (gx,) = _torch_grads(_TORCH_ACT[ctx.name](ctx.kwargs), (x,), (True,), grad_y)
            return gx, None, None
        gx = getattr(_ops, ctx.name + "_backward")(_np(grad_y), _np(x), **ctx.kwargs)
        return _t(gx), None, None


_TORCH_ACT = {
    "relu": lambda kw: F.relu,
    "gelu": lambda kw: (lambda x: F.gelu(x, approximate=kw.get("approximate", "none"))),
    "silu": lambda kw: F.silu,
    "leaky_relu": lambda kw: (lambda x: F.leaky_relu(x, kw.get("negative_slope", 0.01))),
}


def _act(x, name: str, **kwargs):
    if _eligible(x) and _has_kernels("activation_forward", "activation_backward"):
        return _ActFn.apply(x, name, kwargs)
    return None


def relu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``torch.nn.functional.relu`` (in-place calls go to PyTorch)."""
    y = None if inplace else _act(input, "relu")
    return F.relu(input, inplace=inplace) if y is None else y


def gelu(input: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """``torch.nn.functional.gelu`` (``approximate`` 'none' or 'tanh')."""
    y = _act(input, "gelu", approximate=approximate) if approximate in ("none", "tanh") else None
    return F.gelu(input, approximate=approximate) if y is None else y


def silu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``torch.nn.functional.silu`` (in-place calls go to PyTorch)."""
    y = None if inplace else _act(input, "silu")
    return F.silu(input, inplace=inplace) if y is None else y


def leaky_relu(input: torch.Tensor, negative_slope: float = 0.01, inplace: bool = False) -> torch.Tensor:
    """``torch.nn.functional.leaky_relu`` (in-place calls go to PyTorch)."""
    ok = not inplace and isinstance(negative_slope, (int, float)) and not isinstance(negative_slope, bool)
    y = _act(input, "leaky_relu", negative_slope=float(negative_slope)) if ok else None
    return F.leaky_relu(input, negative_slope, inplace=inplace) if y is None else y


# --------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------

_REDUCTIONS = ("mean", "sum", "none")


def _scale_grad(grad: np.ndarray, grad_loss: torch.Tensor, reduction: str) -> np.ndarray:
    """Chain rule for a loss whose kernel returned d(loss)/d(input) for a unit upstream grad."""
    if reduction == "none":
        # grad holds d loss_i / d input_i per sample: scale sample i by grad_loss[i]
        g = _np(grad_loss).astype(grad.dtype, copy=False)
        return grad * g.reshape(g.shape + (1,) * (grad.ndim - g.ndim))
    s = float(grad_loss)
    return grad if s == 1.0 else grad * grad.dtype.type(s)


class _CrossEntropyFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, weight, reduction, label_smoothing, ignore_index):
        loss, grad = _ops.softmax_cross_entropy(
            _np(logits), _np(target), reduction=reduction, label_smoothing=label_smoothing,
            ignore_index=ignore_index, weight=None if weight is None else _np(weight))
        ctx.args = (reduction, label_smoothing, ignore_index)
        ctx.grad = grad
        ctx.save_for_backward(logits, target, weight)
        return _t(np.asarray(loss, dtype=grad.dtype))

    @staticmethod
    def backward(ctx, grad_loss):
        logits, target, weight = ctx.saved_tensors
        reduction, ls, ii = ctx.args
        if torch.is_grad_enabled() or not _eligible(grad_loss, logits):
            (g,) = _torch_grads(lambda z: F.cross_entropy(z, target, weight, ignore_index=ii,
                                                          reduction=reduction, label_smoothing=ls),
                                (logits,), (True,), grad_loss)
            return g, None, None, None, None, None
        return _t(_scale_grad(ctx.grad, grad_loss, reduction)), None, None, None, None, None


def cross_entropy(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                  size_average=None, ignore_index: int = -100, reduce=None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """``torch.nn.functional.cross_entropy`` with logits (N, C) and int64 class targets (N,).

    One fused softmax + log-loss + gradient kernel. Class-probability
    targets, K-dimensional inputs and the deprecated arguments go to PyTorch.
    """
    ours = (_has_kernels("softmax_cross_entropy") and size_average is None and reduce is None
            and reduction in _REDUCTIONS and isinstance(label_smoothing, (int, float))
            and 0.0 <= label_smoothing <= 1.0 and isinstance(ignore_index, int)
            and isinstance(input, torch.Tensor) and input.dim() == 2
            and isinstance(target, torch.Tensor) and target.dtype == torch.int64
            and target.dim() == 1 and target.device.type == "cpu" and type(target) is torch.Tensor
            and target.shape[0] == input.shape[0] and _eligible(input, weight)
            and not target.requires_grad)
    if ours and (weight is None or (weight.dim() == 1 and weight.shape[0] == input.shape[1]
                                    and not weight.requires_grad)):
        return _CrossEntropyFn.apply(input, target, weight, reduction, float(label_smoothing), ignore_index)
    return F.cross_entropy(input, target, weight, size_average, ignore_index, reduce, reduction,
                           label_smoothing)


class _MseFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, reduction):
        loss, grad = _ops.mse_loss(_np(input), _np(target), reduction=reduction)
        ctx.reduction, ctx.grad = reduction, grad
        ctx.save_for_backward(input, target)
        return _t(np.asarray(loss, dtype=grad.dtype))

    @staticmethod
    def backward(ctx, grad_loss):
        input, target = ctx.saved_tensors
        ni, nt = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled() or not _eligible(grad_loss, input):
            gi, gt = _torch_grads(lambda a, b: F.mse_loss(a, b, reduction=ctx.reduction),
                                  (input, target), (ni, nt), grad_loss)
            return gi, gt, None
        g = _scale_grad(ctx.grad, grad_loss, ctx.reduction)
        return (_t(g) if ni else None), (_t(-g) if nt else None), None


def mse_loss(input: torch.Tensor, target: torch.Tensor, size_average=None, reduce=None,
             reduction: str = "mean", weight=None) -> torch.Tensor:
    """``torch.nn.functional.mse_loss`` (same shapes; broadcasting goes to PyTorch)."""
    if (_has_kernels("pointwise_loss") and size_average is None and reduce is None and weight is None
            and reduction in _REDUCTIONS and isinstance(target, torch.Tensor)
            and isinstance(input, torch.Tensor) and input.shape == target.shape
            and _eligible(input, target)):
        return _MseFn.apply(input, target, reduction)
    if weight is not None:
        return F.mse_loss(input, target, size_average, reduce, reduction, weight=weight)
    return F.mse_loss(input, target, size_average, reduce, reduction)


# --------------------------------------------------------------------------
# a whole nn.Sequential of Linear + activations as one autograd node
# --------------------------------------------------------------------------

def _torch_act(x, act):
    """PyTorch's op for one of the layer activations below (for the fallback paths)."""
    if act is None:
        return x
    name, slope = act
    if name == "relu":
        return F.relu(x)
    if name == "leaky_relu":
        return F.leaky_relu(x, slope)
    if name == "silu":
        return F.silu(x)
    return F.gelu(x, approximate="tanh" if name == "gelu_tanh" else "none")


def _torch_stack(x, plan, *params):
    """What _StackFn computes, in PyTorch ops (double backward, odd gradients)."""
    h = x
    for i, (has_bias, act) in enumerate(plan):
        w, b = params[2 * i], params[2 * i + 1]
        h = _torch_act(F.linear(h, w, b if has_bias else None), act)
    return h


# activations the GEMM applies in its epilogue and whose derivative it can read
# off the layer's output: the backward needs no pre-activation copy
_ACT_FROM_OUTPUT = ("relu", "leaky_relu")


class _StackFn(torch.autograd.Function):
    """Linear [+ activation] layers, forward and backward each in one Python call.

    ``plan`` holds one ``(has_bias, act)`` per Linear, ``act`` None or
    ``(name, slope)``; ``params`` are ``weight, bias`` per layer (bias None if
    absent). The forward keeps each layer's output (relu / leaky_relu with a
    positive slope: their derivative is read off it) or pre-activation (gelu,
    silu) as NumPy arrays; the backward runs the backend's ``linear_backward``
    layer by layer. Same kernels and arguments as the per-module path, so the
    same numbers; the saving is one autograd node and one Python frame per
    step instead of one (or two) per layer.
    """

    @staticmethod
    def forward(ctx, x, plan, *params):
        kernels = _resolve()
        xa = _np(x)
        h = xa.reshape(-1, xa.shape[-1])
        saved = []  # per layer: (layer input, array act' is read from)
        for i, (has_bias, act) in enumerate(plan):
            wa = _np(params[2 * i])
            ba = np.ascontiguousarray(_np(params[2 * i + 1])) if has_bias else None
            out = np.empty((h.shape[0], wa.shape[0]), dtype=h.dtype)
            if act is None or act[0] in _ACT_FROM_OUTPUT:
                name, slope = act if act is not None else (None, 0.0)
                kernels.linear_forward(out, h, wa, ba, name, slope)
                saved.append((h, out))
            else:
                kernels.linear_forward(out, h, wa, ba, None, 0.0)
                z, out = out, np.empty_like(out)
                kernels.activation_forward(out, z, act[0], 0.0, 0.0)
                saved.append((h, z))
            h = out
        y = _t(h.reshape(xa.shape[:-1] + (h.shape[1],)))
        ctx.plan, ctx.kernels, ctx.saved = plan, kernels, saved
        # y too: when the last layer's act' is read off its output, an in-place change
        # of y must be caught (autograd's version check), not read silently
        ctx.save_for_backward(x, y, *params)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, _, *params = ctx.saved_tensors  # (unpacking y runs its version check)
        plan, needs = ctx.plan, ctx.needs_input_grad
        if torch.is_grad_enabled() or not _eligible(grad_y, x):
            grads = _torch_grads(lambda *a: _torch_stack(a[0], plan, *a[1:]), (x, *params),
                                 (needs[0], *needs[2:]), grad_y)
            return (grads[0], None, *grads[1:])
        g = np.ascontiguousarray(_np(grad_y).reshape(-1, grad_y.shape[-1]))
        grads = [None] * len(params)
        gx = None
        for i in range(len(plan) - 1, -1, -1):
            has_bias, act = plan[i]
            h_in, aux = ctx.saved[i]
            wa = _np(params[2 * i])
            need_x = i > 0 or needs[0]
            gx = np.empty(h_in.shape, dtype=wa.dtype) if need_x else None
            gw = np.empty(wa.shape, dtype=wa.dtype) if needs[2 + 2 * i] else None
            gb = np.empty((wa.shape[0],), dtype=wa.dtype) if has_bias and needs[3 + 2 * i] else None
            name, slope = act if act is not None else (None, 0.0)
            ctx.kernels.linear_backward(gx, gw, gb, g, h_in, wa, False, name,
                                        aux if act is not None else None, slope)
            grads[2 * i] = None if gw is None else _t(gw)
            grads[2 * i + 1] = None if gb is None else _t(gb)
            g = gx
        gx_t = _t(gx.reshape(x.shape)) if needs[0] else None
        return (gx_t, None, *grads)


# --------------------------------------------------------------------------
# modules: subclasses of torch.nn's, so constructor, init, parameters,
# state_dict keys, repr and isinstance checks are PyTorch's
# --------------------------------------------------------------------------

class Linear(_tnn.Linear):
    """``torch.nn.Linear`` whose forward runs nnkernels' GEMM (bias in the epilogue)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        act = self.__dict__.get("_nnk_fused")
        if act is None:
            return linear(input, self.weight, self.bias)
        return _linear_act(input, self.weight, self.bias, *act)


class ReLU(_tnn.ReLU):
    """``torch.nn.ReLU`` running nnkernels' kernel."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return relu(input, inplace=self.inplace)


class GELU(_tnn.GELU):
    """``torch.nn.GELU`` running nnkernels' kernel."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return gelu(input, approximate=self.approximate)


class SiLU(_tnn.SiLU):
    """``torch.nn.SiLU`` running nnkernels' kernel."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return silu(input, inplace=self.inplace)


class LeakyReLU(_tnn.LeakyReLU):
    """``torch.nn.LeakyReLU`` running nnkernels' kernel."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return leaky_relu(input, self.negative_slope, inplace=self.inplace)


class CrossEntropyLoss(_tnn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` running nnkernels' fused softmax + loss kernel."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)


class MSELoss(_tnn.MSELoss):
    """``torch.nn.MSELoss`` running nnkernels' kernel."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mse_loss(input, target, reduction=self.reduction)


class _FusedReLU(_tnn.ReLU):
    """A ReLU whose work the preceding Linear does (see patch(fuse=True))."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return input


class _FusedLeakyReLU(_tnn.LeakyReLU):
    """A LeakyReLU whose work the preceding Linear does (see patch(fuse=True))."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return input


def _global_hooks() -> bool:
    return any(getattr(_tnn_module, name, None) for name in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
        "_global_backward_pre_hooks", "_global_forward_hooks_always_called"))


def _layer_act(m):
    """(name, slope) of an activation module _StackFn can run after a Linear, else False."""
    t = type(m)
    if t is ReLU and not m.inplace:
        return ("relu", 0.0)
    if t is LeakyReLU and not m.inplace and _number(m.negative_slope) and m.negative_slope > 0:
        return ("leaky_relu", float(m.negative_slope))
    if t is SiLU and not m.inplace:
        return ("silu", 0.0)
    if t is GELU and m.approximate in ("none", "tanh"):
        return ("gelu_tanh" if m.approximate == "tanh" else "gelu", 0.0)
    return False


class _StackSequential(_tnn.Sequential):
    """An ``nn.Sequential`` of patched Linear layers and activations (see patch(fuse=True)).

    Its forward runs the whole stack as one autograd node (:class:`_StackFn`)
    when nothing needs the modules one by one: no hooks (module or global),
    plain CPU float tensors of one dtype, no tracing. Otherwise, and whenever
    its contents stop being such a stack, it is the ordinary Sequential
    forward over the (patched) modules.
    """

    def _plan(self):
        """(plan, params) for _StackFn, or None when the modules must run one by one."""
        if _has_hooks(self) or _global_hooks():
            return None
        plan, params = [], []
        for m in self._modules.values():
            if m is None or _has_hooks(m):
                return None
            t = type(m)
            if t is Linear:
                fused = m.__dict__.get("_nnk_fused")
                if params and params[-2].shape[0] != m.weight.shape[1]:
                    return None  # mismatched sizes: let the modules raise PyTorch's error
                plan.append([m.bias is not None, fused])
                params += (m.weight, m.bias)
            elif t is _FusedReLU or t is _FusedLeakyReLU:
                continue  # applied by the Linear before it
            else:
                act = _layer_act(m)
                if not act or not plan or plan[-1][1] is not None:
                    return None
                plan[-1][1] = act
        if not plan:
            return None
        return tuple((b, a) for b, a in plan), params

    def forward(self, input):
        got = self._plan() if isinstance(input, torch.Tensor) else None
        if got is not None:
            plan, params = got
            w0 = params[0]
            if (input.dim() >= 1 and input.shape[-1] == w0.shape[1] and _eligible(input, *params)
                    and _has_kernels("linear_forward", "linear_backward", "activation_forward",
                                     "activation_backward")):
                return _StackFn.apply(input, plan, *params)
        return super().forward(input)


# exact torch.nn type -> our subclass (user subclasses of torch.nn modules are left alone)
_PATCH = {
    _tnn.Linear: Linear, _tnn.ReLU: ReLU, _tnn.GELU: GELU, _tnn.SiLU: SiLU,
    _tnn.LeakyReLU: LeakyReLU, _tnn.CrossEntropyLoss: CrossEntropyLoss, _tnn.MSELoss: MSELoss,
}
_UNPATCH = {ours: theirs for theirs, ours in _PATCH.items()}
_UNPATCH.update({_FusedReLU: _tnn.ReLU, _FusedLeakyReLU: _tnn.LeakyReLU,
                 _StackSequential: _tnn.Sequential})


def _has_hooks(m: _tnn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or getattr(m, "_backward_pre_hooks", None))


def _fuse(model: _tnn.Module) -> None:
    """In every nn.Sequential, let a Linear apply the ReLU / LeakyReLU that follows it.

    Only when neither module has hooks and each appears once in the model;
    the activation module stays in the Sequential (as a pass-through) so that
    indices, names and state_dict keys do not change. Every plain
    ``nn.Sequential`` also becomes a :class:`_StackSequential`, which runs a
    stack of Linear + activation layers as a single autograd node.
    """
    counts: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        counts[id(m)] = counts.get(id(m), 0) + 1
    for seq in model.modules():
        if not isinstance(seq, _tnn.Sequential):
            continue
        if type(seq) is _tnn.Sequential:
            seq.__class__ = _StackSequential  # whole stack as one autograd node when it can
        mods = list(seq)
        for a, b in zip(mods, mods[1:]):
            if type(a) is not Linear or _has_hooks(a) or _has_hooks(b):
                continue
            if counts[id(a)] != 1 or counts[id(b)] != 1 or "_nnk_fused" in a.__dict__:
                continue
            if type(b) is ReLU and not b.inplace:
                a._nnk_fused = ("relu", 0.0)
                b.__class__ = _FusedReLU
            elif type(b) is LeakyReLU and not b.inplace and b.negative_slope > 0:
                a._nnk_fused = ("leaky_relu", float(b.negative_slope))
                b.__class__ = _FusedLeakyReLU


def patch(model: _tnn.Module, fuse: bool = True) -> _tnn.Module:
    """Make ``model`` (and every submodule) run nnkernels' kernels, in place.

    Each ``torch.nn.Linear``, ``ReLU``, ``GELU``, ``SiLU``, ``LeakyReLU``,
    ``CrossEntropyLoss`` and ``MSELoss`` (exact type, not user subclasses)
    becomes the nnkernels subclass of the same name: same object, same
    parameters (same memory), buffers, hooks and state_dict keys; only
    ``forward`` changes. With ``fuse=True``, inside ``nn.Sequential`` a
    ``Linear`` followed by a ``ReLU`` (or ``LeakyReLU``) applies it in its
    GEMM's epilogue and the activation module passes its input through
    (skipped for modules with hooks or used twice), and a whole
    ``nn.Sequential`` of Linear layers and ReLU / LeakyReLU / GELU / SiLU
    activations runs as one autograd node: one forward and one backward call
    for the stack instead of one per layer (same kernels, same results; any
    hook, other module or unsupported tensor and it runs module by module).
    Call such a fused ``Linear`` on its own and it applies the activation:
    use ``fuse=False`` if you call the layers of a Sequential one by one.
    Returns ``model``; :func:`unpatch` undoes it.
    """
    if not isinstance(model, _tnn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    for m in model.modules():
        ours = _PATCH.get(type(m))
        if ours is not None:
            m.__class__ = ours
    if fuse:
        _fuse(model)
    return model


def unpatch(model: _tnn.Module) -> _tnn.Module:
    """Undo :func:`patch`: every nnkernels module of ``model`` becomes its torch.nn class again."""
    if not isinstance(model, _tnn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    for m in model.modules():
        theirs = _UNPATCH.get(type(m))
        if theirs is not None:
            m.__class__ = theirs
            m.__dict__.pop("_nnk_fused", None)
    return model


def is_patched(model: _tnn.Module) -> bool:
    """True if any submodule of ``model`` is an nnkernels drop-in."""
    return any(type(m) in _UNPATCH for m in model.modules())


# --------------------------------------------------------------------------
# optimizers: torch.optim's classes (constructor, param groups, state_dict
# format, schedulers all unchanged) whose step runs nnkernels' fused kernels
# over the parameters' own memory
# --------------------------------------------------------------------------

def _scalar_step_tensor() -> torch.Tensor:
    """The 'step' state entry as torch.optim keeps it (a float32 CPU scalar tensor)."""
    return torch.tensor(0.0, dtype=torch.float32)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _step_hooks_or_profiler(opt) -> bool:
    """Step hooks (the optimizer's or global) are registered, or the autograd profiler runs."""
    return bool(opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks
                or getattr(_torch_optimizer, "_global_optimizer_pre_hooks", None)
                or getattr(_torch_optimizer, "_global_optimizer_post_hooks", None)
                or _profiler_enabled())


def _profiler_enabled() -> bool:
    return bool(getattr(torch.autograd.profiler, "_is_profiler_enabled", False))


class _KernelOptimizer:
    """Mixin: ``step`` runs ``_kernel_step(group)`` when every group qualifies, else PyTorch's step.

    A group qualifies when its hyperparameters are Python numbers, none of
    ``differentiable`` / ``capturable`` / ``fused`` is set, and every
    parameter with a gradient is a contiguous, plain CPU float32/float64
    tensor with a dense contiguous gradient of the same dtype (and so is its
    optimizer state, if it already has some). Parameters and state are
    checked again whenever they are new tensors or their memory moved; the
    gradients (new tensors every step) on every step.

    torch.optim wraps ``step`` in a profiler range and its step hooks; here
    that wrapper runs only when a hook is registered or the profiler is on
    (it costs about 15 us a step otherwise).
    """

    _NUMBERS: tuple = ()
    _KERNELS: tuple = ()

    def _param_ok(self, p, state) -> bool:
        """p and its state tensors (checked once per tensors and memory, see _group_ok)."""
        if not _plain(p) or not p.is_contiguous():
            return False
        for v in (state or {}).values():
            if isinstance(v, torch.Tensor) and v.dim() > 0 and not (
                    _plain(v) and v.dtype == p.dtype and v.shape == p.shape and v.is_contiguous()):
                return False
        return True

    def _group_ok(self, group) -> bool:
        if group.get("differentiable") or group.get("capturable") or group.get("fused"):
            return False
        if not all(_number(group[k]) for k in self._NUMBERS if k in group):
            return False
        checked = self.__dict__.setdefault("_nnk_checked", {})
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if (type(g) is not torch.Tensor or g.dtype != p.dtype or g.layout is not torch.strided
                    or not g.is_cpu or g.shape != p.shape or not g.is_contiguous() or g.is_neg()
                    or _is_wrapped(g) or g.data_ptr() == p.data_ptr()):
                return False
            state = self.state.get(p)
            key = (p.data_ptr(), tuple(id(v) for v in state.values()) if state else ())
            hit = checked.get(id(p))
            if hit is None or hit[0] is not p or hit[1] != key:
                if not self._param_ok(p, state):
                    return False
                # the entry holds p (so its id is not reused) and the state tensors' ids
                checked[id(p)] = (p, key, tuple(state.values()) if state else ())
        return True

    def _torch_step(self, closure):
        """torch.optim's own step for this class, without its (already applied) hook wrapper."""
        fn = super().step.__func__
        fn = getattr(fn, "__wrapped__", fn) if getattr(fn, "hooked", False) else fn
        return fn(self, closure)

    def _run_step(self, closure=None):
        if (_tracing() or not all(self._group_ok(g) for g in self.param_groups)
                or not _has_kernels(*self._KERNELS)):
            return self._torch_step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._kernel_step(group)
        return loss

    _hooked_step = torch.optim.Optimizer.profile_hook_step(_run_step)

    def step(self, closure=None):
        """One optimizer step (``closure`` as in torch.optim); see the class doc."""
        if _step_hooks_or_profiler(self):
            return self._hooked_step(closure)
        return self._run_step(closure)

    step.hooked = True  # torch.optim.Optimizer.__init__: do not wrap it again

    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch.optim's ``zero_grad``; ``set_to_none=True`` (the default) without the
        profiler range around it (about 15 us a step) unless the profiler is on."""
        if not set_to_none or _profiler_enabled():
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad = None


class Adam(_KernelOptimizer, torch.optim.Adam):
    """``torch.optim.Adam`` whose step is one fused nnkernels kernel per parameter.

    Same constructor, param groups, ``state_dict`` (``step``, ``exp_avg``,
    ``exp_avg_sq``[, ``max_exp_avg_sq``]) as torch.optim.Adam, so the two can
    load each other's state. Falls back to PyTorch's step for anything the
    kernels do not cover (CUDA, tensor hyperparameters, ``capturable``,
    ``differentiable``, ``fused``...).
    """

    _NUMBERS = ("lr", "eps", "weight_decay")
    _KERNELS = ("adam_step_multi",)
    _decoupled = False

    def _group_ok(self, group) -> bool:
        betas = group.get("betas", ())
        return all(_number(b) for b in betas) and super()._group_ok(group)

    def _kernel_step(self, group) -> None:
        beta1, beta2 = group["betas"]
        decoupled = self._decoupled or bool(group.get("decoupled_weight_decay", False))
        amsgrad, maximize = bool(group["amsgrad"]), bool(group.get("maximize", False))
        hyper = (float(group["lr"]), float(beta1), float(beta2), float(group["eps"]),
                 float(group["weight_decay"]), amsgrad, maximize, decoupled)
        by_dtype: dict = {}  # dtype -> lists of (param, exp_avg, exp_avg_sq, max_exp_avg_sq, grad, step)
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            state = self.state[p]
            if len(state) == 0:
                state["step"] = _scalar_step_tensor()
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if amsgrad:
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            mx = state.get("max_exp_avg_sq") if amsgrad else None
            if mx is None and amsgrad:
                raise ValueError("Adam: amsgrad=True but the state has no max_exp_avg_sq")
            pv, mv, vv, xv, sv = self._views(p, state, mx)
            sv += 1  # state["step"], in place (a view of the tensor's memory)
            lists = by_dtype.setdefault(p.dtype, ([], [], [], [], [], []))
            for lst, v in zip(lists, (pv, mv, vv, xv, _np(g), int(sv))):
                lst.append(v)
        # shapes, dtypes and contiguity were checked by _group_ok: one call per dtype
        multi = _resolve().adam_step_multi
        for ps, ms, vs, xs, gs, steps in by_dtype.values():
            multi(ps, ms, vs, xs if amsgrad else None, gs, steps, *hyper)

    def _views(self, p, state, mx):
        """NumPy views of p and its state tensors, cached while those tensors stay the same."""
        cache = self.__dict__.setdefault("_nnk_views", {})
        key = (p.data_ptr(), id(state["exp_avg"]), id(state["exp_avg_sq"]), id(mx), id(state["step"]))
        hit = cache.get(id(p))
        if hit is not None and hit[0] == key and hit[1] is p:
            return hit[2]
        step = state["step"]
        if step.dtype != torch.float32 or step.dim() != 0 or not step.is_cpu:
            # torch.optim's own state may hold another scalar: keep it a float32 CPU tensor
            step = state["step"] = torch.tensor(float(step), dtype=torch.float32)
            key = key[:4] + (id(step),)
        views = (_np(p), _np(state["exp_avg"]), _np(state["exp_avg_sq"]),
                 None if mx is None else _np(mx), step.numpy())
        # the cache holds the tensors themselves (hit[3]), so ids are not reused while cached
        cache[id(p)] = (key, p, views, (state["exp_avg"], state["exp_avg_sq"], mx, step))
        return views


class AdamW(Adam, torch.optim.AdamW):
    """``torch.optim.AdamW`` (decoupled weight decay) on nnkernels' fused Adam kernel."""

    _decoupled = True


class SGD(_KernelOptimizer, torch.optim.SGD):
    """``torch.optim.SGD`` (momentum, dampening, Nesterov, weight decay) on nnkernels' fused kernel.

    ``state_dict`` (``momentum_buffer``) is torch.optim.SGD's.
    """

    _NUMBERS = ("lr", "momentum", "dampening", "weight_decay")
    _KERNELS = ("sgd_step",)

    def _kernel_step(self, group) -> None:
        momentum = group["momentum"]
        for p in group["params"]:
            if p.grad is None:
                continue
            buf, first = None, False
            if momentum != 0:
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:  # the kernel sets buf = g on the first step, as PyTorch does
                    buf = torch.empty_like(p, memory_format=torch.preserve_format)
                    state["momentum_buffer"] = buf
                    first = True
            _ops.sgd_step(_np(p), _np(p.grad), None if buf is None else _np(buf), lr=group["lr"],
                          momentum=momentum, dampening=group["dampening"],
                          weight_decay=group["weight_decay"], nesterov=bool(group["nesterov"]),
                          maximize=bool(group.get("maximize", False)), first_step=first)


# --------------------------------------------------------------------------
# nnkernels.nn <-> torch.nn
# --------------------------------------------------------------------------

def _copy_params(dst: _tnn.Module, src_state: dict) -> None:
    with torch.no_grad():
        for name, t in dst.state_dict(keep_vars=True).items():
            v = src_state[name]
            if isinstance(t, torch.Tensor) and t.dim() == 0:
                t.fill_(float(np.asarray(v)))
            else:
                t.copy_(torch.from_numpy(np.ascontiguousarray(v)))


def to_torch(model) -> _tnn.Module:
    """A ``torch.nn`` copy of an ``nnkernels.nn`` model (Sequential/MLP and its layers).

    Same structure, same state_dict keys, identical weights (copied), the
    model's dtype; train/eval mode carried over. Linear, Identity, Flatten,
    Dropout, BatchNorm1d, the activations and Softmax/LogSoftmax map to their
    torch.nn namesakes; nested Sequentials are converted recursively.
    """
    from . import nn as nkn

    def conv(m):
        if isinstance(m, nkn.Sequential):
            return _tnn.Sequential(*[conv(c) for c in m])
        if isinstance(m, nkn.Linear):
            return _tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        if isinstance(m, nkn.BatchNorm1d):
            return _tnn.BatchNorm1d(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                                    track_running_stats=m.track_running_stats)
        simple = {nkn.ReLU: _tnn.ReLU, nkn.Sigmoid: _tnn.Sigmoid, nkn.Tanh: _tnn.Tanh,
                  nkn.SiLU: _tnn.SiLU, nkn.Identity: _tnn.Identity}
        if type(m) in simple:
            return simple[type(m)]()
        if isinstance(m, nkn.LeakyReLU):
            return _tnn.LeakyReLU(m.negative_slope)
        if isinstance(m, nkn.ELU):
            return _tnn.ELU(m.alpha)
        if isinstance(m, nkn.GELU):
            return _tnn.GELU(approximate=m.approximate)
        if isinstance(m, nkn.Softplus):
            return _tnn.Softplus(m.beta, m.threshold)
        if isinstance(m, nkn.Softmax):
            return _tnn.Softmax(dim=m.dim)
        if isinstance(m, nkn.LogSoftmax):
            return _tnn.LogSoftmax(dim=m.dim)
        if isinstance(m, nkn.Dropout):
            return _tnn.Dropout(m.p)
        if isinstance(m, nkn.Flatten):
            return _tnn.Flatten(m.start_dim, m.end_dim)
        raise TypeError(f"to_torch: no torch.nn equivalent for {type(m).__name__}")

    if not isinstance(model, nkn.Module):
        raise TypeError(f"model: expected an nnkernels.nn.Module, got {type(model).__name__}")
    out = conv(model)
    out.to(dtype=torch.float64 if np.dtype(model.dtype) == np.float64 else torch.float32)
    _copy_params(out, model.state_dict())
    out.train(model.training)
    return out


def from_torch(module: _tnn.Module):
    """An ``nnkernels.nn`` copy of a ``torch.nn.Sequential`` (or single layer) with identical weights.

    Inverse of :func:`to_torch`; patched (nnkernels.torch) modules convert
    like their torch.nn classes. The dtype is the module's (float32/float64).
    """
    from . import nn as nkn

    params = list(module.parameters()) + list(module.buffers())
    floats = [t.dtype for t in params if t.is_floating_point()]
    tdt = floats[0] if floats else torch.float32
    if tdt not in _FLOAT:
        raise TypeError(f"from_torch: expected float32/float64 parameters, got {tdt}")
    dt = np.float64 if tdt == torch.float64 else np.float32

    def conv(m):
        t = _UNPATCH.get(type(m), type(m))
        if t is _tnn.Sequential:
            mods = [conv(c) for c in m]
            return nkn.Sequential(*mods, dtype=dt)
        if t is _tnn.Linear:
            return nkn.Linear(m.in_features, m.out_features, bias=m.bias is not None, dtype=dt)
        if t is _tnn.BatchNorm1d:
            return nkn.BatchNorm1d(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                                   track_running_stats=m.track_running_stats, dtype=dt)
        simple = {_tnn.ReLU: nkn.ReLU, _tnn.Sigmoid: nkn.Sigmoid, _tnn.Tanh: nkn.Tanh,
                  _tnn.SiLU: nkn.SiLU, _tnn.Identity: nkn.Identity}
        if t in simple:
            return simple[t](dtype=dt)
        if t is _tnn.LeakyReLU:
            return nkn.LeakyReLU(m.negative_slope, dtype=dt)
        if t is _tnn.ELU:
            return nkn.ELU(m.alpha, dtype=dt)
        if t is _tnn.GELU:
            return nkn.GELU(approximate=m.approximate, dtype=dt)
        if t is _tnn.Softplus:
            return nkn.Softplus(m.beta, m.threshold, dtype=dt)
        if t is _tnn.Softmax:
            return nkn.Softmax(dim=-1 if m.dim is None else m.dim, dtype=dt)
        if t is _tnn.LogSoftmax:
            return nkn.LogSoftmax(dim=-1 if m.dim is None else m.dim, dtype=dt)
        if t is _tnn.Dropout:
            return nkn.Dropout(m.p, dtype=dt)
        if t is _tnn.Flatten:
            return nkn.Flatten(m.start_dim, m.end_dim, dtype=dt)
        raise TypeError(f"from_torch: no nnkernels.nn equivalent for {type(m).__name__}")

    if not isinstance(module, _tnn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    out = conv(module)
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    out.load_state_dict(state)
    if not module.training:
        out.eval()
    return out
