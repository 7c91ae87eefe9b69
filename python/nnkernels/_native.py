"""Loads the compiled extension ``nnkernels._C`` with a helpful error."""

try:
    from . import _C  # noqa: F401
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "nnkernels: the native extension nnkernels._C could not be imported "
        f"({exc}). Reinstall with `pip install .`, or for development run "
        "`tools/dev-build.sh` and put `python/` on PYTHONPATH."
    ) from exc
