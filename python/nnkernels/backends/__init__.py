"""Backend registry: ``"cpp"`` (native extension), ``"numba"`` and ``"numpy"``.

Every backend implements the same kernel interface, written down once in
:mod:`nnkernels.backends.interface`. A backend is assembled from one module
per kernel family (``gemm.py``, ``activations.py``, ``losses.py``,
``optim.py``, ...): each family module lists its kernels in ``__all__``.
Backends are imported lazily (Numba is only loaded when first used).
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from types import ModuleType
from typing import Iterator

from .interface import KERNEL_NAMES

_MODULES = {
    "cpp": "nnkernels.backends.cpp_backend",
    "numba": "nnkernels.backends.numba_backend",
    "numpy": "nnkernels.backends.numpy_backend",
}
_FAMILIES = ("gemm", "activations", "losses", "optim", "fused")
DEFAULT_BACKEND = "cpp"


class Backend:
    """A set of kernels with one name. Kernels are attributes: ``b.gemm(...)``."""

    def __init__(self, name: str, package: str) -> None:
        self.name = name
        self.kernels: dict[str, object] = {}
        for family in _FAMILIES:
            try:
                mod: ModuleType = importlib.import_module(f"{package}.{family}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{family}":
                    raise
                continue
            for kname in getattr(mod, "__all__", ()):
                self.kernels[kname] = getattr(mod, kname)
        self.__dict__.update(self.kernels)

    def missing(self) -> list[str]:
        """Kernels of the interface this backend does not implement."""
        return [k for k in KERNEL_NAMES if k not in self.kernels]

    def __repr__(self) -> str:
        return f"<nnkernels backend {self.name!r}: {len(self.kernels)} kernels>"


_loaded: dict[str, Backend] = {}
_load_lock = threading.Lock()
class _ThreadState(threading.local):
    name = None  # a class default: reading it on a thread that never set it raises nothing (cheap)


_state = _ThreadState()  # per-thread override set by use_backend()
_global = {"name": DEFAULT_BACKEND}


def available_backends() -> list[str]:
    """Names of the backends: ``['cpp', 'numba', 'numpy']``."""
    return list(_MODULES)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name not in _MODULES:
        raise ValueError(f"backend: unknown backend {name!r}; valid backends are {available_backends()}")
    return name


def load_backend(name: str) -> Backend:
    """The Backend object for ``name`` (imported on first use)."""
    name = _check_name(name)
    b = _loaded.get(name)
    if b is None:
        with _load_lock:
            b = _loaded.get(name)
            if b is None:
                b = Backend(name, _MODULES[name])
                _loaded[name] = b
    return b


def get_backend() -> str:
    """Name of the backend in effect on this thread."""
    return _state.name or _global["name"]


def set_backend(name: str) -> None:
    """Choose the backend for every later kernel call (process-wide)."""
    _global["name"] = _check_name(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """``with use_backend("numba"): ...`` — a backend for this thread, restored on exit."""
    name = _check_name(name)
    prev = _state.name
    _state.name = name
    try:
        yield load_backend(name)
    finally:
        _state.name = prev


def resolve(backend: str | None = None) -> Backend:
    """The Backend for an op's ``backend=`` argument (None: the current one)."""
    return load_backend(get_backend() if backend is None else backend)
