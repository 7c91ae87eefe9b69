"""``nnkernels bench``: measure the machine, then our kernels and training
against NumPy, PyTorch, JAX and scikit-learn in the same run.

The measurement code lives here and is shared by the command
(:mod:`nnkernels.bench.cli`) and the pytest-benchmark files in
``benchmarks/``: :func:`timing.measure` (calibrated repeats, median and
spread), :mod:`machine` (FMA peak, copy bandwidth, description), the suites
in :mod:`suites` (each a list of :class:`core.Task`), the writers in
:mod:`report` and :mod:`plots`, and :mod:`compare`.
"""

from __future__ import annotations

import os
import time
from typing import Optional

from .core import Config, NotAvailable, Task, run_tasks
from .timing import FULL, QUICK, Budget, Stats, measure

__all__ = ["Budget", "Config", "FULL", "NotAvailable", "QUICK", "Stats", "Task", "measure",
           "run_bench", "write_outputs"]


def run_bench(cfg: Config, suites: list, progress: bool = True, peak_seconds: Optional[float] = None) -> dict:
    """Measure the machine, run ``suites`` (names) under ``cfg``; return the result dict."""
    from . import machine, report
    from .suites import SUITES

    t0 = time.perf_counter()
    desc = machine.describe()
    peaks = machine.measure_peaks(cfg.threads, seconds=peak_seconds or (0.05 if cfg.quick else 0.2),
                                  repeats=3 if cfg.quick else 5)
    tasks = []
    for name in suites:
        tasks += SUITES[name].tasks(cfg)
    records = run_tasks(tasks, cfg.budget, peaks, progress=progress, stop_at=cfg.stop_at)
    if not cfg.quick and (cfg.stop_at is None or time.perf_counter() < cfg.stop_at):
        _jax_at_fewer_threads(records, cfg, peaks)
    desc["load_average_end"] = machine.load_average()
    config = {"threads": list(cfg.threads), "backends": list(cfg.backends), "quick": cfg.quick,
              "suites": list(suites), "primary": f"nnk:{cfg.backends[0]}",
              "budget": vars(cfg.budget).copy() if hasattr(cfg.budget, "__dict__") else {},
              "suite_docs": {name: (SUITES[name].__doc__ or "").strip() for name in suites}}
    return report.result(desc, peaks, config, records, time.perf_counter() - t0)


def _jax_at_fewer_threads(records: list, cfg: Config, peaks: dict) -> None:
    """Replace the "n/a" JAX rows (thread counts below the process's) by
    measurements from a subprocess pinned to that many CPUs."""
    from . import jax_worker
    from .core import add_ratios

    todo: dict = {}
    for i, r in enumerate(records):
        if r["impl"] == "jax" and r["status"] == "n/a":
            todo.setdefault(r["threads"], []).append(i)
    for threads, idx in sorted(todo.items()):
        cases = [[records[i]["suite"], records[i]["case"]] for i in idx]
        try:
            got = jax_worker.measure_in_subprocess(threads, cases, cfg, peaks)
        except Exception as exc:  # noqa: BLE001 - keep the n/a rows, say why
            for i in idx:
                records[i]["note"] += f" (subprocess failed: {exc})"
            continue
        by_key = {(g["suite"], g["case"]): g for g in got}
        for i in idx:
            g = by_key.get((records[i]["suite"], records[i]["case"]))
            if g is not None:
                records[i] = g
    add_ratios(records)


def write_outputs(res: dict, out_dir: str) -> dict:
    """report.md, results.json and the PNG plots into ``out_dir``; returns their paths."""
    from . import plots, report

    os.makedirs(out_dir, exist_ok=True)
    pngs = plots.write_plots(res, out_dir)
    paths = {"markdown": os.path.join(out_dir, "report.md"), "json": os.path.join(out_dir, "results.json"),
             "plots": [os.path.join(out_dir, p) for p in pngs]}
    report.write_json(res, paths["json"])
    report.write_markdown(res, paths["markdown"], pngs)
    return paths
