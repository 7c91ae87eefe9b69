"""Writers: the JSON result (every raw figure + the machine) and the
Markdown report (tables per suite and thread count, ending with a short
"where we stand" table)."""

from __future__ import annotations

import json
import math
import os
from typing import Optional

from .core import is_ours
from .timing import format_time, geomean

SCHEMA = "nnkernels-bench/1"


def result(machine: dict, peaks: dict, config: dict, records: list, elapsed: float) -> dict:
    return {"schema": SCHEMA, "machine": machine, "peaks": peaks, "config": config,
            "records": records, "elapsed_s": elapsed}


def _clean(x):
    """JSON has no inf/nan: write them as null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_json(res: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(_clean(res), f, indent=1, sort_keys=False)
        f.write("\n")


def load_json(path: str) -> dict:
    with open(path) as f:
        res = json.load(f)
    if not isinstance(res, dict) or res.get("schema") != SCHEMA or not isinstance(res.get("records"), list):
        raise ValueError(f"{path}: not an nnkernels bench result (schema {SCHEMA})")
    return res


# ---- Markdown ----------------------------------------------------------------

def _rate(r: dict) -> str:
    if r.get("samples_per_s") is not None and r["suite"] in ("train-step", "epoch"):
        s = f"{r['samples_per_s']:,.0f} samples/s"
        if r.get("gflops") is not None:
            s += f" ({r['gflops']:.1f} GFLOP/s)"
        return s
    if r.get("gflops") is not None:
        return f"{r['gflops']:.1f} GFLOP/s"
    if r.get("gbs") is not None:
        return f"{r['gbs']:.1f} GB/s"
    return ""


def _ratio(x: Optional[float]) -> str:
    if x is None or not math.isfinite(x):
        return ""
    return f"{x:.2f}x"


def _peer_impls(records: list) -> list:
    seen = []
    for r in records:
        if not is_ours(r["impl"]) and r["impl"] not in seen:
            seen.append(r["impl"])
    return seen


def suite_table(records: list) -> list:
    """Markdown lines: one row per case and implementation."""
    peers = _peer_impls(records)
    head = ["case", "impl", "median", "IQR", "min-max", "rate", "% peak"] + [f"vs {p}" for p in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        if r["status"] != "ok":
            cells = [r["case"], r["impl"], r["status"], "", "", r.get("note", ""), ""] + [""] * len(peers)
        else:
            t = r["time"]
            pct = r.get("pct_peak")
            cells = [r["case"], r["impl"], format_time(t["median"]),
                     f"{format_time(t['q1'])}-{format_time(t['q3'])}",
                     f"{format_time(t['min'])}-{format_time(t['max'])}", _rate(r),
                     "" if pct is None else f"{pct:.0f}%"]
            vs = r.get("vs", {})
            cells += [_ratio(vs.get(p)) for p in peers]
            if r.get("note"):
                cells[1] += f" ({r['note']})"
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return lines


def standing(records: list, primary: str) -> list:
    """Rows (suite, threads, peer, geomean speedup, wins, cases) of our
    primary implementation against each peer, then of its variants
    (``<primary>-sklearn``: the scikit-learn drop-in; ``<primary>-layers``: the
    layer-by-layer step) labelled by impl."""
    rows = []
    keys = []
    for r in records:
        k = (r["suite"], r["threads"])
        if k not in keys:
            keys.append(k)
    for suite, threads in keys:
        peers = _peer_impls([r for r in records if r["suite"] == suite])
        variants = sorted({r["impl"] for r in records if r["suite"] == suite
                           and r["impl"].startswith(primary + "-")})
        for impl in [primary] + variants:
            mine = [r for r in records if r["suite"] == suite and r["threads"] == threads
                    and r["impl"] == impl and r["status"] == "ok"]
            label = suite if impl == primary else f"{suite} ({impl})"
            for p in peers:
                ratios = [r["vs"][p] for r in mine if p in r.get("vs", {})]
                if ratios:
                    rows.append((label, threads, p, geomean(ratios), sum(x > 1.0 for x in ratios),
                                 len(ratios)))
    return rows


def markdown(res: dict, plots: Optional[list] = None) -> str:
    m, peaks, cfg, records = res["machine"], res["peaks"], res["config"], res["records"]
    out = ["# nnkernels benchmark report", ""]
    out.append(f"Run {m['date_utc']} UTC, {res['elapsed_s']:.0f} s; "
               f"threads {cfg['threads']}, backends {cfg['backends']}, "
               f"{'quick' if cfg['quick'] else 'full'} run; suites: {', '.join(cfg['suites'])}.")
    out += ["", "Times are per call: median over calibrated repeats after warm-up, with the "
            "interquartile range and min-max. `vs X` = X's median time / ours (above 1: we are faster). "
            "% peak: of the FMA peak (GFLOP/s) for compute-bound cases, of the copy bandwidth (GB/s) for "
            "memory-bound ones, both measured below at the same thread count.", ""]
    out += ["## Machine", "", "| | |", "|---|---|"]
    v = m["versions"]
    rows = [("CPU", m["cpu_model"]), ("logical CPUs", m["logical_cpus"]),
            ("ISA in use", f"{m['isa']} (compiled: {', '.join(m['isa_compiled'])}; "
                           f"supported: {', '.join(m['isa_supported'])})"),
            ("peak loop", f"{m['peak_loop']['chains']} chains x {m['peak_loop']['lanes']} fp32 lanes, "
                          f"{'FMA' if m['peak_loop']['fma'] else 'mul+add'}"),
            ("system", m["system"])]
    if m.get("load_average"):
        busy = m["load_average"][0] > 0.5 * (m.get("logical_cpus") or 1)
        rows.append(("load average (1/5/15 min) at start, end",
                     f"{m['load_average']}, {m.get('load_average_end', '?')}"
                     + (" - other processes were running: threaded figures are noisy" if busy else "")))
    if m.get("env"):
        rows.append(("environment", ", ".join(f"{k}={v}" for k, v in m["env"].items())))
    rows += [(k, val if val is not None else "missing") for k, val in v.items()]
    out += [f"| {k} | {val} |" for k, val in rows]
    out += ["", "## Measured peak", "",
            "| threads | fp32 FMA peak GFLOP/s (best; median, min-max) | per thread | "
            "copy GB/s (best; median, min-max) | GEMM microkernel alone GFLOP/s (best, % of peak) |",
            "|---|---|---|---|---|"]
    for t in sorted(peaks["fma"], key=int):
        f, c = peaks["fma_stats"][t], peaks["copy_stats"][t]
        ukr = peaks.get("ukr", {}).get(t)  # reports written before the microkernel row lack it
        ukr_cell = f"{ukr:.1f} ({100 * ukr / peaks['fma'][t]:.0f}%)" if ukr else "-"
        out.append(f"| {t} | {peaks['fma'][t]:.1f} ({f['median']:.1f}, {f['min']:.1f}-{f['max']:.1f}) | "
                   f"{peaks['fma'][t] / int(t):.1f} | "
                   f"{peaks['copy'][t]:.1f} ({c['median']:.1f}, {c['min']:.1f}-{c['max']:.1f}) | {ukr_cell} |")
    out += ["", "The microkernel row is the GEMM's innermost loop alone (`_C.ukr_peak`: one packed "
            "KC x NR panel of B against MC/MR packed micro-panels of A, in cache, no packing, edge "
            "tiles or epilogue): no GEMM of this library can exceed it."]
    for suite in cfg["suites"]:
        srec = [r for r in records if r["suite"] == suite]
        if not srec:
            continue
        out += ["", f"## {suite}", ""]
        doc = cfg.get("suite_docs", {}).get(suite)
        if doc:
            out += [doc, ""]
        for t in sorted({r["threads"] for r in srec}):
            out += [f"### {suite}, {t} thread{'s' if t > 1 else ''}", ""]
            out += suite_table([r for r in srec if r["threads"] == t])
            out.append("")
    if plots:
        out += ["## Plots", ""]
        out += [f"![{os.path.splitext(p)[0]}]({p})" for p in plots]
        out.append("")
    out += ["## Where we stand", "",
            f"Geometric mean over a suite's cases of (peer time / {cfg['primary']} time); "
            "above 1 means we are faster. \"wins\": cases where we are faster.", "",
            "| suite | threads | vs | speedup (geomean) | wins |", "|---|---|---|---|---|"]
    for suite, t, p, g, wins, n in standing(records, cfg["primary"]):
        out.append(f"| {suite} | {t} | {p} | {g:.2f}x | {wins}/{n} |")
    skipped = sum(r["status"] == "skipped" for r in records)
    if skipped:
        out += ["", f"{skipped} figures skipped: the time limit was reached (--quick or --time-limit; "
                    "a loaded machine); run without them for every figure."]
    missing = sorted({r["impl"] for r in records if r["status"] == "missing"})
    na = sorted({f"{r['suite']}: {r['impl']}" for r in records if r["status"] == "not available"})
    errs = [f"{r['suite']} {r['case']} {r['impl']} t={r['threads']}: {r['note']}" for r in records
            if r["status"] == "error"]
    if missing:
        out += ["", f"Peers missing (not installed): {', '.join(missing)}."]
    if na:
        out += ["", f"Not available in this build: {'; '.join(na)}."]
    if errs:
        out += ["", "Errors:", ""] + [f"- {e}" for e in errs]
    return "\n".join(out) + "\n"


def write_markdown(res: dict, path: str, plots: Optional[list] = None) -> None:
    with open(path, "w") as f:
        f.write(markdown(res, plots))
