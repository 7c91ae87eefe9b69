"""Training checkpoints: one file, written atomically, loaded without pickle.

A checkpoint holds a nested state (dicts, lists, tuples, str/int/float/bool/
None, NumPy arrays and scalars) — for ``fit`` that is the model's, the
optimizer's and the scheduler's state, the epoch, the history and every
random generator's state (see :mod:`nnkernels.train`).

File format: a ZIP archive in NumPy's ``.npz`` layout. ``__state__.npy``
is the state as UTF-8 JSON in which every array is replaced by
``{"__array__": "a<i>"}`` and stored as member ``a<i>.npy`` (exact dtype,
shape and bytes). Dicts with non-string keys, tuples and NumPy scalars are
tagged so they load back with the same types. Nothing is unpickled, so
loading an untrusted checkpoint cannot run code. ZIP's per-member CRC-32
detects a damaged file.

Atomic write: the bytes go to a temporary file in the target's directory,
which is flushed and fsynced, renamed over the target with ``os.replace``,
and the directory is fsynced. A process killed at any moment (even with
SIGKILL) leaves either the previous checkpoint or the new one, never a torn
file; at worst a stale ``.<name>.*.tmp`` file remains beside it.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Any

import numpy as np

from ._atomic import atomic_file

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError"]

FORMAT = "nnkernels-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that is missing parts, damaged, or of another format."""


# ---- nested state <-> (JSON tree, arrays) --------------------------------------

def _encode(obj: Any, arrays: dict, where: str) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError(f"checkpoint: {where}: object arrays cannot be saved")
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, np.generic):  # NumPy scalar: keep its dtype
        return {"__scalar__": _encode(np.asarray(obj), arrays, where)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, arrays, f"{where}.{k}") for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"checkpoint: {where}: dict keys must be str or int, got {type(k).__name__}")
            items.append([k, _encode(v, arrays, f"{where}[{k!r}]")])
        return {"__items__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"checkpoint: {where}: cannot save a value of type {type(obj).__name__}")


def _decode(obj: Any, arrays: dict) -> Any:
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        return arrays[obj["__array__"]]
    if "__scalar__" in obj:
        return _decode(obj["__scalar__"], arrays)[()]
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {k: _decode(v, arrays) for k, v in obj["__items__"]}
    return {k: _decode(v, arrays) for k, v in obj.items()}


# ---- save ----------------------------------------------------------------------

def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` (a dict) to ``path`` atomically (see the module docstring)."""
    if not isinstance(state, dict):
        raise TypeError(f"state: expected a dict, got {type(state).__name__}")
    path = os.fspath(path)
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(state, arrays, "state")
    meta = json.dumps({"format": FORMAT, "version": VERSION, "state": tree},
                      allow_nan=True, separators=(",", ":"))
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"checkpoint: directory {directory!r} does not exist")
    with atomic_file(path) as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            _write_npy(zf, "__state__", np.frombuffer(meta.encode("utf-8"), dtype=np.uint8))
            for key, arr in arrays.items():
                _write_npy(zf, key, arr)


def _write_npy(zf: zipfile.ZipFile, name: str, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    zf.writestr(name + ".npy", buf.getvalue())


# ---- load ----------------------------------------------------------------------

def load_checkpoint(path) -> dict:
    """The state saved by :func:`save_checkpoint` (arrays are fresh, writeable).

    Raises FileNotFoundError if ``path`` does not exist and
    :class:`CheckpointError` (a ValueError) if it is damaged or not a checkpoint.
    """
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path, "r") as zf:
            names = set(zf.namelist())
            if "__state__.npy" not in names:
                raise CheckpointError(f"checkpoint {path!r}: not an nnkernels checkpoint (no __state__)")
            raw = _read_npy(zf, "__state__")
            meta = json.loads(raw.tobytes().decode("utf-8"))
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"checkpoint {path!r}: format {meta.get('format')!r}, expected {FORMAT!r}")
            if meta.get("version") != VERSION:
                raise CheckpointError(f"checkpoint {path!r}: version {meta.get('version')!r} is not "
                                      f"supported (expected {VERSION})")
            arrays = {n[:-4]: _read_npy(zf, n[:-4]) for n in names
                      if n.endswith(".npy") and n != "__state__.npy"}
            return _decode(meta["state"], arrays)
    except FileNotFoundError:
        raise
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, OSError, EOFError,
            UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path!r} is damaged or incomplete: {exc}") from exc


def _read_npy(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    with zf.open(name + ".npy") as f:  # reading to the end checks the member's CRC-32
        data = f.read()
    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
