"""nnkernels.save / nnkernels.load: weights in safetensors format plus the
architecture as JSON metadata, written atomically.

File layout: a standard .safetensors file (readable by ``safetensors``, and by
PyTorch via ``safetensors.torch.load_file``) whose tensors are the model's
``state_dict()`` (keys as PyTorch's) and whose metadata holds
``{"format": "nnkernels", "version": "1", "architecture": <JSON>}``.

Atomic: the bytes go to a temporary file in the same directory, which is
fsynced and then renamed over the target (and the directory fsynced). A save
interrupted at any point leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Optional

import numpy as np

from . import nn
from ._atomic import atomic_write_bytes

FORMAT = "nnkernels"
VERSION = "1"

# ---- architecture <-> JSON -------------------------------------------------

_SIMPLE = {
    "Linear": lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                         "bias": m.bias is not None},
    "ReLU": lambda m: {}, "Sigmoid": lambda m: {}, "Tanh": lambda m: {}, "SiLU": lambda m: {},
    "Identity": lambda m: {},
    "LeakyReLU": lambda m: {"negative_slope": m.negative_slope},
    "ELU": lambda m: {"alpha": m.alpha},
    "GELU": lambda m: {"approximate": m.approximate},
    "Softplus": lambda m: {"beta": m.beta, "threshold": m.threshold},
    "Softmax": lambda m: {"dim": m.dim}, "LogSoftmax": lambda m: {"dim": m.dim},
    "Dropout": lambda m: {"p": m.p},
    "Flatten": lambda m: {"start_dim": m.start_dim, "end_dim": m.end_dim},
    "BatchNorm1d": lambda m: {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
                              "affine": m.affine, "track_running_stats": m.track_running_stats},
}


def describe(model: nn.Module) -> dict:
    """JSON-able description of a model built from nnkernels.nn modules."""
    name = type(model).__name__
    if type(model) is nn.MLP:
        cfg = dict(model.config)
        cfg.pop("init", None)  # weights are loaded anyway
        return {"class": "MLP", "config": cfg}
    if type(model) is nn.Sequential:
        return {"class": "Sequential", "layers": [describe(m) for m in model]}
    if name in _SIMPLE and getattr(nn, name, None) is type(model):
        return {"class": name, "config": _SIMPLE[name](model)}
    raise TypeError(f"save: cannot describe the architecture of {name} (only nnkernels.nn modules "
                    "and Sequential/MLP of them); save its weights with "
                    "nnkernels.save(model, path, architecture=False) and load them with "
                    "nnkernels.load(path, model=...)")


def build(arch: dict, dtype) -> nn.Module:
    """Rebuild a model from :func:`describe`'s description (weights not set)."""
    cls = arch.get("class")
    if cls == "Sequential":
        return nn.Sequential(*[build(a, dtype) for a in arch["layers"]], dtype=dtype)
    if cls == "MLP":
        return nn.MLP(**arch["config"], init="torch", dtype=dtype, rng=0)
    if cls in _SIMPLE:
        return getattr(nn, cls)(**arch["config"], dtype=dtype)
    raise ValueError(f"unknown module class {cls!r} in the architecture")


# ---- save --------------------------------------------------------------------

def save(model: nn.Module, path, *, architecture: bool = True, metadata: Optional[dict] = None) -> None:
    """Save ``model``'s weights (safetensors) and architecture (JSON metadata) to ``path``.

    ``architecture=False`` stores only the weights (for custom modules; load
    them with ``load(path, model=...)``). ``metadata``: extra str->str entries.
    """
    from safetensors.numpy import save as st_save

    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nnkernels.nn.Module, got {type(model).__name__}")
    arch = describe(model) if architecture else None
    meta = {"format": FORMAT, "version": VERSION, "dtype": str(model.dtype),
            "architecture": json.dumps(arch)}
    if metadata:
        for k, v in metadata.items():
            if k in meta:
                raise ValueError(f"metadata: key {k!r} is reserved")
            meta[str(k)] = str(v)
    tensors = {k: np.array(v, order="C") for k, v in model.state_dict().items()}  # keeps 0-d
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


# ---- load --------------------------------------------------------------------

def _read_header(raw: bytes, path) -> dict:
    if len(raw) < 8:
        raise ValueError(f"{path}: not an nnkernels model file (only {len(raw)} bytes; truncated?)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: corrupt or truncated file (header of {n} bytes, file has "
                         f"{len(raw)} bytes)")
    try:
        header = json.loads(raw[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: corrupt file (header is not valid JSON: {e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt file (header is not a JSON object)")
    return header


def load(path, model: Optional[nn.Module] = None, *, strict: bool = True) -> nn.Module:
    """Load a model saved by :func:`save`.

    Without ``model``: rebuild the saved architecture (in the saved dtype) and
    load the weights. With ``model``: load the weights into it (converted to
    its dtype; keys and shapes must match). Corrupt, truncated or mismatched
    files raise ValueError naming the problem.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    header = _read_header(raw, path)
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an nnkernels model file (no nnkernels metadata; a plain "
                         "safetensors file can be read with safetensors.numpy.load_file)")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: unsupported nnkernels file version {meta.get('version')!r} "
                         f"(this nnkernels reads version {VERSION})")
    try:
        tensors = st_load(raw)
    except SafetensorError as e:
        raise ValueError(f"{path}: corrupt or truncated file ({e})") from None
    if model is None:
        arch = json.loads(meta.get("architecture", "null"))
        if arch is None:
            raise ValueError(f"{path}: the file holds weights only (saved with architecture=False); "
                             "pass model= to load them into")
        try:
            model = build(arch, np.dtype(meta.get("dtype", "float32")))
        except (TypeError, KeyError, ValueError) as e:
            raise ValueError(f"{path}: cannot rebuild the saved architecture: {e}") from None
    try:
        model.load_state_dict(tensors, strict=strict)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: the weights do not match the model: {e}") from None
    return model
