"""PNG plots (matplotlib, Agg backend): one panel per thread count.

- gemm.png: square GEMM GFLOP/s vs size, the measured FMA peak as a line;
- train_step.png: training-step samples/s vs batch size, per backend and peer;
- softmax_xent.png: softmax cross-entropy time vs number of classes.
"""

from __future__ import annotations

import os


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def matplotlib_ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def _series(records, suite, xkey, ykey, filt=None):
    """{threads: {impl: [(x, y), ...]}} of ok records."""
    out: dict = {}
    for r in records:
        if r["suite"] != suite or r["status"] != "ok" or xkey not in r["params"]:
            continue
        if filt is not None and not filt(r):
            continue
        y = r["time"]["median"] if ykey == "time" else r.get(ykey)
        if y is None:
            continue
        out.setdefault(r["threads"], {}).setdefault(r["impl"], []).append((r["params"][xkey], y))
    for by_impl in out.values():
        for pts in by_impl.values():
            pts.sort()
    return out


_COLORS = {"nnk:cpp": "tab:blue", "nnk:numba": "tab:cyan", "nnk:numpy": "tab:purple",
           "numpy": "tab:olive", "torch": "tab:red", "jax": "tab:green", "sklearn": "tab:orange"}


def _style(impl: str) -> dict:
    ours = impl.startswith("nnk:")
    style = {"marker": "o" if ours else "s", "linestyle": "-" if ours else "--",
             "linewidth": 2.2 if impl == "nnk:cpp" else 1.3}
    base = impl.split("-")[0] if ours else impl
    if base in _COLORS:
        style["color"] = _COLORS[base]
    if ours and impl != base:  # a variant of a backend, e.g. nnk:cpp-layers
        style.update(marker="^", linestyle="-.", linewidth=1.3)
    return style


def _panels(plt, series, title, xlabel, ylabel, logy=False, hline=None):
    threads = sorted(series)
    fig, axes = plt.subplots(1, len(threads), figsize=(6.2 * len(threads), 4.6), squeeze=False)
    for ax, t in zip(axes[0], threads):
        for impl, pts in sorted(series[t].items()):
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=impl, **_style(impl))
        if hline is not None and hline(t):
            ax.axhline(hline(t), color="black", linestyle=":", linewidth=1.5,
                       label=f"measured FMA peak ({hline(t):.0f} GFLOP/s)")
        ax.set_xscale("log", base=2)
        xs_all = sorted({x for pts in series[t].values() for x, _ in pts})
        ax.set_xticks(xs_all)
        ax.set_xticklabels([str(x) for x in xs_all])
        ax.xaxis.set_minor_locator(matplotlib_ticker().NullLocator())
        if logy:
            ax.set_yscale("log")
        ax.set_title(f"{title}, {t} thread{'s' if t > 1 else ''}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_plots(res: dict, out_dir: str) -> list:
    """Write the plots whose suites ran; returns their file names."""
    plt = _plt()
    records, peaks = res["records"], res["peaks"]
    written = []

    gemm = _series(records, "gemm", "size", "gflops")
    if gemm:
        ymax = {t: max(y for pts in s.values() for _, y in pts) for t, s in gemm.items()}
        fig = _panels(plt, gemm, "fp32 GEMM (square)", "n (m = n = k)", "GFLOP/s",
                      hline=lambda t: peaks["fma"].get(str(t)))
        for ax, t in zip(fig.axes, sorted(gemm)):
            ax.set_ylim(0, 1.1 * max(ymax[t], peaks["fma"].get(str(t), 0)))
        fig.savefig(os.path.join(out_dir, "gemm.png"), dpi=110)
        plt.close(fig)
        written.append("gemm.png")

    ts = _series(records, "train-step", "batch", "samples_per_s")
    if ts:
        fig = _panels(plt, ts, "MLP 784-256-128-10 train step (Adam)", "batch size", "samples/s", logy=True)
        fig.savefig(os.path.join(out_dir, "train_step.png"), dpi=110)
        plt.close(fig)
        written.append("train_step.png")

    sx = _series(records, "softmax-xent", "classes", "time")
    if sx:
        sx = {t: {i: [(x, y * 1e6) for x, y in pts] for i, pts in s.items()} for t, s in sx.items()}
        fig = _panels(plt, sx, "softmax cross-entropy, loss + grad (N=256)", "classes", "time per call (us)",
                      logy=True)
        for ax in fig.axes:
            ticks = ax.get_xticks()
            ax.set_xscale("log", base=10)
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(int(x)) for x in ticks])
        fig.savefig(os.path.join(out_dir, "softmax_xent.png"), dpi=110)
        plt.close(fig)
        written.append("softmax_xent.png")
    return written
