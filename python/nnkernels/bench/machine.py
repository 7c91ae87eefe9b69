"""The machine, measured in the same run as the suites.

``describe()``: CPU model, ISA variant in use, threads, library versions.
``measure_peaks(threads)``: fp32 FMA peak (GFLOP/s), copy bandwidth (GB/s)
and the GEMM microkernel's own ceiling (GFLOP/s on cache-resident packed
panels, no packing or edges) at each thread count, from the native loops in
``csrc/kernels/bench`` (``_C.fma_peak`` / ``_C.copy_bandwidth`` /
``_C.ukr_peak``). Each is
repeated; the reference "peak" used for % of peak is the best repeat (a
peak is what the hardware can reach; the median and spread are kept too).
"""

from __future__ import annotations

import datetime
import os
import platform
import sys

from . import peers as _peers
from .timing import Stats


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: environment variables that change what is measured
ENV_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_PROC_BIND", "NNKERNELS_ISA",
            "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")


def load_average() -> list:
    """1, 5 and 15 minute load averages (a busy machine makes threaded figures noisy)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def describe() -> dict:
    import numpy
    import nnkernels
    from nnkernels import _C

    info = nnkernels.cpu_info()
    versions = {"nnkernels": nnkernels.__version__, "python": platform.python_version(),
                "numpy": numpy.__version__}
    for name in ("numba", "torch", "jax", "sklearn"):
        versions[name] = _peers.version(name)
    return {
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "logical_cpus": os.cpu_count(),
        "affinity_cpus": _peers.all_threads(),
        "isa": info["isa"],
        "isa_compiled": list(info["compiled"]),
        "isa_supported": list(info["supported"]),
        "peak_loop": dict(_C.bench_info()),
        "default_threads": info["threads"],
        "versions": versions,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "load_average": load_average(),
        "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
        "argv": list(sys.argv),
    }


def measure_peaks(thread_counts, seconds: float = 0.1, repeats: int = 5,
                  copy_bytes: int = 128 << 20) -> dict:
    """FMA GFLOP/s and copy GB/s per thread count.

    Returns ``{"fma": {"1": best, ...}, "copy": {...}, "ukr": {...}, "fma_stats": {"1": Stats dict}, ...}``
    (keys are thread counts as strings, as in the JSON). Stats here hold
    GFLOP/s or GB/s samples, not seconds.
    """
    from nnkernels import _C

    out = {"fma": {}, "copy": {}, "ukr": {}, "fma_stats": {}, "copy_stats": {}, "ukr_stats": {},
           "seconds": seconds, "repeats": repeats, "copy_bytes": copy_bytes}
    for t in sorted(set(thread_counts)):
        fma = [_C.fma_peak(seconds, t) for _ in range(repeats)]
        cpy = [_C.copy_bandwidth(copy_bytes, seconds, t) for _ in range(repeats)]
        ukr = [_C.ukr_peak(seconds, t) for _ in range(repeats)]
        out["fma"][str(t)] = max(fma)
        out["copy"][str(t)] = max(cpy)
        out["fma_stats"][str(t)] = Stats(fma).to_dict()
        out["copy_stats"][str(t)] = Stats(cpy).to_dict()
        out["ukr"][str(t)] = max(ukr)
        out["ukr_stats"][str(t)] = Stats(ukr).to_dict()
    return out
