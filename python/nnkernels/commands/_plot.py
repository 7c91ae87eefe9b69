"""PNG of a training run (matplotlib, Agg backend): loss and accuracy per epoch,
and for 2-D datasets the decision boundary over the test points."""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np


def plot_training(path: str, *, title: str, train_loss, val_loss, val_accuracy,
                  test_accuracy: Optional[float] = None,
                  boundary: Optional[dict] = None) -> None:
    """Write the figure to ``path``.

    ``train_loss``, ``val_loss``, ``val_accuracy`` are per-epoch sequences
    (validation ones may be empty or hold None/NaN when there was no
    validation set). ``boundary``, for 2-D data: ``{"predict": f, "X": X,
    "y": y, "classes": [...]}`` where ``f(points) -> class indices``.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    def clean(seq):
        return np.array([np.nan if v is None else float(v) for v in seq], dtype=float)

    tl, vl, va = clean(train_loss), clean(val_loss), clean(val_accuracy)
    epochs = np.arange(1, len(tl) + 1)
    style = "o-" if len(tl) <= 40 else "-"  # markers only while they do not crowd
    ncols = 3 if boundary is not None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.2), layout="constrained")
    fig.suptitle(title)

    ax = axes[0]
    ax.plot(epochs, tl, style, ms=3, label="train")
    if len(vl) and np.isfinite(vl).any():
        ax.plot(epochs[: len(vl)], vl, style, ms=3, label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title("loss")
    if np.all(tl[np.isfinite(tl)] > 0) and np.nanmax(tl) / max(np.nanmin(tl), 1e-12) > 20:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()

    ax = axes[1]
    if len(va) and np.isfinite(va).any():
        ax.plot(epochs[: len(va)], 100 * va, style, ms=3, color="C1", label="validation")
    if test_accuracy is not None:
        ax.axhline(100 * test_accuracy, color="C2", ls="--",
                   label=f"test (final model): {100 * test_accuracy:.2f}%")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    for a in axes[:2]:
        a.set_xlim(0.5, max(len(tl), 1) + 0.5)
        a.xaxis.get_major_locator().set_params(integer=True)

    if boundary is not None:
        _decision_boundary(axes[2], **boundary)

    fig.savefig(path, dpi=110)
    plt.close(fig)


def _decision_boundary(ax, predict: Callable, X: np.ndarray, y: np.ndarray, classes) -> None:
    from matplotlib.colors import ListedColormap

    pad = 0.05
    lo, hi = X.min(axis=0) - pad, X.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    zz = np.asarray(predict(grid)).reshape(gx.shape)
    k = len(classes)
    colors = [f"C{i}" for i in range(k)]
    ax.contourf(gx, gy, zz, levels=np.arange(k + 1) - 0.5, cmap=ListedColormap(colors), alpha=0.25)
    for i in range(k):
        sel = y == i
        ax.scatter(X[sel, 0], X[sel, 1], s=10, color=colors[i], edgecolors="k", linewidths=0.3,
                   label=str(classes[i]))
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_title("decision boundary (test points)")
    ax.legend(loc="upper right", fontsize="small", framealpha=0.8)
