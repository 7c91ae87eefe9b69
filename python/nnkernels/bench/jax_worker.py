"""Measure JAX peers at fewer threads than the process has, in a subprocess.

XLA sizes its thread pool once per process, from the CPUs the process may
run on. This worker first restricts its own CPU affinity to ``threads``
CPUs (and, for one thread, turns off XLA's multi-threaded Eigen), then
imports JAX, rebuilds the requested suites' tasks exactly as the parent did
and times the JAX ones. Used by ``run_bench`` for the JAX rows at thread
counts below the full count (full runs only).

Protocol: a JSON spec on stdin, a JSON list of records on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def measure_in_subprocess(threads: int, cases: list, cfg, peaks: dict, timeout: float = 900.0) -> list:
    """Records for the JAX tasks ``cases`` [(suite, case), ...] at ``threads``."""
    from dataclasses import asdict

    spec = {"threads": threads, "cases": cases, "backends": list(cfg.backends), "quick": cfg.quick,
            "budget": asdict(cfg.budget), "peaks": peaks}
    env = dict(os.environ)
    if threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    proc = subprocess.run([sys.executable, "-m", "nnkernels.bench.jax_worker"], input=json.dumps(spec),
                          capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"JAX worker failed ({proc.returncode}): {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    spec = json.loads(sys.stdin.read())
    threads = int(spec["threads"])
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cpus)  # before JAX is imported: XLA sizes its pool from this

    from .core import Config, run_task
    from .suites import SUITES
    from .timing import Budget

    budget = Budget(**spec["budget"])
    cfg = Config(threads=[threads], backends=spec["backends"], quick=spec["quick"], budget=budget)
    wanted = {(s, c) for s, c in spec["cases"]}
    records = []
    for suite in dict.fromkeys(s for s, _ in spec["cases"]):
        for task in SUITES[suite].tasks(cfg):
            if task.impl == "jax" and (task.suite, task.case) in wanted:
                rec = run_task(task, budget, spec["peaks"])
                rec["note"] = "; ".join(n for n in (rec.get("note"), f"subprocess pinned to {threads} CPU(s)") if n)
                records.append(rec)
    print(json.dumps(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
