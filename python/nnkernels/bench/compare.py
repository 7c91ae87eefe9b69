"""``nnkernels bench --compare old.json new.json``: speed ratios between two
runs, per figure and as a geometric mean per suite and thread count."""

from __future__ import annotations

import math

from .report import load_json
from .timing import format_time, geomean


def _key(r: dict) -> tuple:
    return (r["suite"], r["case"], r["impl"], r["threads"])


def compare(old: dict, new: dict) -> dict:
    """{"rows": [(suite, case, impl, threads, old_s, new_s, speedup)], "summary": [...],
    "only_old": [...], "only_new": [...], "peaks": [(what, threads, old, new)]}.
    speedup = old median time / new median time (above 1: the new run is faster)."""
    o = {_key(r): r for r in old["records"] if r["status"] == "ok"}
    n = {_key(r): r for r in new["records"] if r["status"] == "ok"}
    rows = []
    for k in n:
        if k in o:
            to, tn = o[k]["time"]["median"], n[k]["time"]["median"]
            rows.append((*k, to, tn, to / tn if tn > 0 else math.inf))
    groups: dict = {}
    for row in rows:
        groups.setdefault((row[0], row[2], row[3]), []).append(row[6])
    summary = [(s, impl, t, geomean(v), len(v)) for (s, impl, t), v in groups.items()]
    peaks = []
    for what in ("fma", "copy"):
        for t, val in new.get("peaks", {}).get(what, {}).items():
            ov = old.get("peaks", {}).get(what, {}).get(t)
            if ov:
                peaks.append((what, t, ov, val))
    return {"rows": rows, "summary": summary, "peaks": peaks,
            "only_old": sorted(set(o) - set(n)), "only_new": sorted(set(n) - set(o))}


def format_compare(c: dict, old_name: str, new_name: str) -> str:
    lines = [f"speedup = {old_name} time / {new_name} time (above 1: {new_name} is faster)", ""]
    if c["peaks"]:
        lines.append("machine peak        threads       old       new  new/old")
        for what, t, ov, nv in c["peaks"]:
            unit = "GFLOP/s" if what == "fma" else "GB/s"
            lines.append(f"  {what + ' ' + unit:<18}{t:>7} {ov:>9.1f} {nv:>9.1f} {nv / ov:>7.2f}x")
        lines.append("")
    lines.append(f"{'suite':<13}{'case':<32}{'impl':<18}{'thr':>4}{'old':>11}{'new':>11}{'speedup':>9}")
    for s, case, impl, t, to, tn, sp in c["rows"]:
        lines.append(f"{s:<13}{case[:31]:<32}{impl[:17]:<18}{t:>4}{format_time(to):>11}{format_time(tn):>11}"
                     f"{sp:>8.2f}x")
    lines += ["", "geometric mean per suite:", f"{'suite':<13}{'impl':<18}{'thr':>4}{'speedup':>9}{'cases':>7}"]
    for s, impl, t, g, k in c["summary"]:
        lines.append(f"{s:<13}{impl[:17]:<18}{t:>4}{g:>8.2f}x{k:>7}")
    if c["only_old"] or c["only_new"]:
        lines.append("")
        lines.append(f"figures only in {old_name}: {len(c['only_old'])}; only in {new_name}: {len(c['only_new'])}")
    return "\n".join(lines)


def compare_files(old_path: str, new_path: str) -> str:
    return format_compare(compare(load_json(old_path), load_json(new_path)), old_path, new_path)
