"""Drop-in benchmarks: nnkernels.sklearn vs scikit-learn, nnkernels.torch.patch vs plain PyTorch.

    PYTHONPATH=python python benchmarks/bench_dropin.py [--which sklearn|torch|both] [--threads N]

sklearn: MLPClassifier fit on Fashion-MNIST (60k x 784, float32 in [0, 1];
8x8 digits if /usr/share/datasets/fashion-mnist is missing) with the same
parameters and random_state, both libraries; reports fit time, speed-up and
test accuracy. torch: one epoch of a Fashion-MNIST MLP training loop at batch
64 (Adam, cross-entropy), plain torch.nn + torch.optim.Adam vs the same model
after nnkernels.torch.patch with nnkernels.torch.Adam; median of several
epochs, run alternately so that load on a shared machine hits both alike.
An epoch is the whole training set by default (938 steps). nnkernels'
optimizer kernels flush denormal state, PyTorch's do not unless
``--torch-flush-denormal`` (torch.set_flush_denormal(True)) is given: run
both to see how much of the difference that is.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import time
import warnings

import numpy as np

FMNIST = "/usr/share/datasets/fashion-mnist"


def _idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_data():
    """(X_train, y_train, X_test, y_test, name): float32 features in [0, 1], int64 labels."""
    if os.path.isdir(FMNIST):
        xtr = _idx(f"{FMNIST}/train-images-idx3-ubyte.gz").reshape(60000, -1)
        ytr = _idx(f"{FMNIST}/train-labels-idx1-ubyte.gz")
        xte = _idx(f"{FMNIST}/t10k-images-idx3-ubyte.gz").reshape(10000, -1)
        yte = _idx(f"{FMNIST}/t10k-labels-idx1-ubyte.gz")
        name = "fashion-mnist"
    else:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        x, y = load_digits(return_X_y=True)
        xtr, xte, ytr, yte = train_test_split(x * (255 / 16), y, random_state=0)
        name = "digits"
    f = lambda a: (a / np.float32(255)).astype(np.float32)
    return f(xtr), ytr.astype(np.int64), f(xte), yte.astype(np.int64), name


def set_threads(n: int) -> None:
    """The same thread count for every library in the race: nnkernels, PyTorch, OpenBLAS/MKL."""
    import nnkernels
    nnkernels.set_num_threads(n)
    try:
        import threadpoolctl
        threadpoolctl.threadpool_limits(n)
    except ImportError:  # pragma: no cover
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def bench_sklearn(args, data):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP

    from nnkernels.sklearn import MLPClassifier as NkMLP

    xtr, ytr, xte, yte, name = data
    xtr, xte = xtr.astype(args.x_dtype), xte.astype(args.x_dtype)
    params = dict(hidden_layer_sizes=tuple(args.hidden), max_iter=args.epochs, random_state=args.seed,
                  solver=args.solver)
    print(f"== sklearn MLPClassifier on {name} {xtr.shape} {args.x_dtype}, {params}, "
          f"{args.threads} thread(s)")
    rows = {}
    for rep in range(args.repeats):
        for label, cls in (("scikit-learn", SkMLP), ("nnkernels", NkMLP)):
            m = cls(**params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                t = time.perf_counter()
                m.fit(xtr, ytr)
                dt = time.perf_counter() - t
            acc = m.score(xte, yte)
            rows.setdefault(label, []).append((dt, acc, m.n_iter_))
            print(f"  {label:13s} rep {rep}: fit {dt:7.2f} s ({m.n_iter_} epochs)  test acc {100 * acc:.2f}%",
                  flush=True)
    sk = statistics.median(r[0] for r in rows["scikit-learn"])
    nk = statistics.median(r[0] for r in rows["nnkernels"])
    da = 100 * (statistics.median(r[1] for r in rows["nnkernels"])
                - statistics.median(r[1] for r in rows["scikit-learn"]))
    print(f"  median fit: scikit-learn {sk:.2f} s, nnkernels {nk:.2f} s -> {sk / nk:.2f}x faster; "
          f"accuracy difference {da:+.2f} points")
    return sk / nk


def bench_torch(args, data):
    import torch

    import nnkernels
    import nnkernels.torch as nkt

    xtr, ytr, xte, yte, name = data
    if args.torch_flush_denormal:
        torch.set_flush_denormal(True)
    n = args.torch_samples or xtr.shape[0]
    X, Y = torch.from_numpy(xtr[:n]), torch.from_numpy(ytr[:n])
    sizes = [X.shape[1], *args.torch_hidden, 10]
    bs = args.batch

    def make():
        torch.manual_seed(0)
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers)

    # (model, optimizer, loss) per configuration; all start from the same weights
    configs = {}
    m = make()
    configs["torch"] = (m, torch.optim.Adam(m.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss())
    m = nkt.patch(make())
    configs["patched + nnkernels Adam"] = (m, nkt.Adam(m.parameters(), lr=1e-3),
                                           nkt.patch(torch.nn.CrossEntropyLoss()))
    m = nkt.patch(make())
    configs["patched + torch Adam"] = (m, torch.optim.Adam(m.parameters(), lr=1e-3),
                                       nkt.patch(torch.nn.CrossEntropyLoss()))
    m = make()
    configs["torch + nnkernels Adam"] = (m, nkt.Adam(m.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss())

    def epoch(model, opt, lf):
        g = torch.Generator().manual_seed(1)
        perm = torch.randperm(n, generator=g)
        t = time.perf_counter()
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            xb, yb = X[idx], Y[idx]
            opt.zero_grad(set_to_none=True)
            loss = lf(model(xb), yb)
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    print(f"== torch training loop on {name}: MLP {sizes}, batch {bs}, Adam, {n} samples/epoch, "
          f"threads: torch {torch.get_num_threads()}, nnkernels {nnkernels.get_num_threads()}, "
          f"torch flush_denormal {bool(args.torch_flush_denormal)}")
    times = {k: [] for k in configs}
    for rep in range(args.torch_epochs):  # configurations interleaved, epoch by epoch
        for k, (m, o, lf) in configs.items():
            times[k].append(epoch(m, o, lf))
        print(f"  epoch {rep}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()), flush=True)
    with torch.no_grad():
        acc = lambda m: (m(torch.from_numpy(xte)).argmax(1) == torch.from_numpy(yte)).float().mean().item()
        print(f"  test accuracy after {args.torch_epochs} epochs: "
              + ", ".join(f"{k} {100 * acc(m):.2f}%" for k, (m, _, _) in configs.items()))
    base = statistics.median(times["torch"])
    for k, v in times.items():
        med = statistics.median(v)
        print(f"  median epoch {k:26s} {med:.3f} s  ({base / med:.2f}x vs torch)")
    return base / statistics.median(times["patched + nnkernels Adam"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--which", choices=("sklearn", "torch", "both"), default="both")
    p.add_argument("--hidden", type=int, nargs="+", default=[100], help="sklearn hidden_layer_sizes")
    p.add_argument("--solver", default="adam")
    p.add_argument("--epochs", type=int, default=3, help="sklearn max_iter")
    p.add_argument("--repeats", type=int, default=3, help="sklearn fits per library (alternating)")
    p.add_argument("--seed", type=int, default=0, help="sklearn random_state (both libraries)")
    p.add_argument("--torch-hidden", type=int, nargs="+", default=[256, 128])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--torch-epochs", type=int, default=5)
    p.add_argument("--torch-samples", type=int, default=0,
                   help="samples per epoch (default 0: the whole training set, a real epoch of "
                        "938 steps; fewer steps hide what happens after the first ~800, when "
                        "Adam's decayed state turns denormal)")
    p.add_argument("--torch-flush-denormal", action="store_true",
                   help="torch.set_flush_denormal(True) first: PyTorch's own kernels then also treat "
                        "denormals as zero, as nnkernels' optimizer kernels always do (decayed Adam "
                        "state becomes denormal after ~800 steps and slows unflushed updates)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for every library (default 1: on a shared machine, 2-thread "
                        "OpenMP/BLAS regions are dominated by oversubscription)")
    p.add_argument("--x-dtype", default="float64", choices=("float32", "float64"),
                   help="dtype of the features handed to fit (float64: X / 255.0 as usually loaded)")
    args = p.parse_args(argv)
    if args.which != "sklearn":
        import torch  # noqa: F401  (so set_threads sets its pool too)
    set_threads(args.threads)
    data = load_data()
    if args.which in ("sklearn", "both"):
        bench_sklearn(args, data)
    if args.which in ("torch", "both"):
        bench_torch(args, data)


if __name__ == "__main__":
    sys.exit(main())
