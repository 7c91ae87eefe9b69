"""Tasks and the runner.

A suite is a function ``tasks(cfg) -> list[Task]``. A Task is one figure:
one case (e.g. a GEMM size) by one implementation (one of our backends, or a
peer) at one thread count. ``Task.setup()`` prepares the inputs and returns
the zero-argument function that is timed; it raises :class:`NotAvailable`
when the API it needs is missing from this build (reported, not an error).

The runner times every task with :func:`timing.measure` and turns the time
into the task's rate (GFLOP/s, GB/s, samples/s) and its % of the machine's
measured peak (FMA peak for compute-bound work, copy bandwidth for
memory-bound work), at the same thread count.
"""

from __future__ import annotations

import contextlib
import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from . import peers as _peers
from .timing import Budget, Stats, measure


class NotAvailable(Exception):
    """The API a task needs is not in this build of nnkernels."""


OURS_PREFIX = "nnk:"


def ours(backend: str) -> str:
    """Implementation name of one of our backends: ``nnk:cpp``."""
    return OURS_PREFIX + backend


def is_ours(impl: str) -> bool:
    return impl.startswith(OURS_PREFIX)


def peer_of(impl: str) -> Optional[str]:
    """The peer package an implementation needs (``torch-fused`` -> ``torch``)."""
    if is_ours(impl):
        return None
    return impl.split("-", 1)[0]


@dataclass
class Config:
    """What to run: from the command line."""

    threads: list = field(default_factory=lambda: [1])
    backends: list = field(default_factory=lambda: ["cpp"])
    quick: bool = False
    budget: Budget = field(default_factory=Budget)
    stop_at: Optional[float] = None  # time.perf_counter() after which tasks are skipped


@dataclass
class Task:
    suite: str
    case: str
    impl: str
    threads: int
    setup: Callable[[], object]  # -> the timed function, or (function, note); note may be a
                                 # callable, called after the timed calls
    flops: float = 0.0          # floating-point operations per call
    nbytes: float = 0.0         # bytes moved per call (compulsory traffic)
    samples: float = 0.0        # training samples processed per call
    roof: Optional[str] = None  # "fma" or "copy": what % of peak refers to
    params: dict = field(default_factory=dict)  # plot axes, e.g. {"size": 512}
    sync: Optional[Callable[[object], object]] = None
    budget: Optional[Budget] = None  # overrides the run's budget (e.g. epochs)
    backend: Optional[str] = None    # ours: run setup and calls under use_backend(backend)
    note: str = ""


def _record(task: Task, status: str, note: str = "", stats: Optional[Stats] = None,
            peaks: Optional[dict] = None) -> dict:
    note = "; ".join(n for n in (task.note, note) if n)
    rec = {"suite": task.suite, "case": task.case, "impl": task.impl, "threads": task.threads,
           "params": dict(task.params), "status": status, "note": note,
           "flops": task.flops, "bytes": task.nbytes, "samples": task.samples, "roof": task.roof}
    if stats is None:
        return rec
    t = stats.median
    rec["time"] = stats.to_dict()
    if task.flops:
        rec["gflops"] = task.flops / t * 1e-9
    if task.nbytes:
        rec["gbs"] = task.nbytes / t * 1e-9
    if task.samples:
        rec["samples_per_s"] = task.samples / t
    peak = (peaks or {}).get(task.roof, {}).get(str(task.threads))
    if peak and task.roof == "fma" and task.flops:
        rec["pct_peak"] = 100.0 * rec["gflops"] / peak
    elif peak and task.roof == "copy" and task.nbytes:
        rec["pct_peak"] = 100.0 * rec["gbs"] / peak
    return rec


def _missing_api(exc: AttributeError) -> bool:
    """An attribute missing from a backend or a module: a kernel or API this
    build lacks (reported "not available"), not a bug (reported "error")."""
    import types

    from ..backends import Backend

    obj = getattr(exc, "obj", None)
    return isinstance(obj, (Backend, types.ModuleType))


def run_task(task: Task, budget: Budget, peaks: Optional[dict] = None) -> dict:
    """Measure one task (threads already set by the caller) and return its record."""
    peer = peer_of(task.impl)
    if peer is not None and not _peers.available(peer):
        return _record(task, "missing", f"{peer} is not installed")
    if peer == "jax" and task.threads != _peers.all_threads():
        return _record(task, "n/a", f"JAX/XLA threads are fixed per process: measured at "
                                    f"{_peers.all_threads()} threads only")
    def go():
        made = task.setup()
        fn, note = made if isinstance(made, tuple) else (made, "")
        stats = measure(fn, task.budget or budget, sync=task.sync)
        if callable(note):  # a result known only after the timed calls (e.g. a test accuracy)
            note = note()
        return stats, note

    try:
        if task.backend is not None:
            import nnkernels

            with nnkernels.use_backend(task.backend):
                stats, note = go()
        else:
            stats, note = go()
    except NotAvailable as exc:
        return _record(task, "not available", str(exc))
    except AttributeError as exc:
        if not _missing_api(exc):
            raise_as = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return _record(task, "error", raise_as)
        where = f"backend {task.backend!r}: " if task.backend else ""
        return _record(task, "not available", f"{where}{exc}")
    except Exception as exc:  # noqa: BLE001 - one broken case must not end the run
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return _record(task, "error", last)
    return _record(task, "ok", note, stats=stats, peaks=peaks)


#: Pause when the implementation changes: thread pools of the previous
#: runtime (our OpenMP, PyTorch's OpenMP, OpenBLAS, XLA) stop spin-waiting
#: and go to sleep before the next one is timed.
SWITCH_PAUSE = 0.005


def run_tasks(tasks: Iterable[Task], budget: Budget, peaks: Optional[dict] = None,
              progress: bool = True, stop_at: Optional[float] = None) -> list:
    """Run tasks grouped by thread count (one thread scope per group), in
    their order otherwise: every implementation of a case is timed close
    together in time, so load changes on a shared machine hit all alike.
    Once ``time.perf_counter()`` passes ``stop_at`` the remaining tasks are
    recorded as skipped."""
    tasks = list(tasks)
    bar = None
    if progress:
        import sys

        from tqdm.auto import tqdm

        tty = sys.stderr.isatty()
        bar = tqdm(total=len(tasks), unit="figure", dynamic_ncols=True, leave=False,
                   mininterval=0.1 if tty else 10.0)
    order = sorted(range(len(tasks)), key=lambda i: tasks[i].threads)
    out: dict = {}
    scope = contextlib.ExitStack()
    try:
        current = None
        for i in order:
            task = tasks[i]
            if task.threads != current:
                scope.close()  # restore the previous thread counts
                scope.enter_context(_peers.threads(task.threads))
                current = task.threads
            if bar is not None:
                bar.set_description(f"{task.suite} t={task.threads} {task.case} {task.impl}"[:60])
            if stop_at is not None and time.perf_counter() > stop_at:
                out[i] = _record(task, "skipped", "time limit reached")
            else:
                time.sleep(SWITCH_PAUSE)
                t0 = time.perf_counter()
                out[i] = run_task(task, budget, peaks)
                out[i]["wall_s"] = time.perf_counter() - t0
            if bar is not None:
                bar.update(1)
    finally:
        scope.close()
        if bar is not None:
            bar.close()
    records = [out[i] for i in range(len(tasks)) if i in out]
    add_ratios(records)
    return records


def add_ratios(records: list) -> None:
    """Give every one of our records ``vs``: {peer impl: peer time / our time}
    for the same suite, case and threads (> 1 means we are faster)."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["suite"], r["case"], r["threads"]), []).append(r)
    for group in groups.values():
        peer_times = {r["impl"]: r["time"]["median"] for r in group
                      if not is_ours(r["impl"]) and r["status"] == "ok"}
        for r in group:
            if is_ours(r["impl"]) and r["status"] == "ok":
                t = r["time"]["median"]
                r["vs"] = {p: (pt / t if t > 0 else math.inf) for p, pt in peer_times.items()}
