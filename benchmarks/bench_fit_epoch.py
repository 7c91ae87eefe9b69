"""Time per epoch: nnkernels.fit vs an equivalent PyTorch loop, same run.

Recipe: MLP [784, 256, 128, 10] (ReLU), Adam(lr=1e-3), cross-entropy, batch
64, shuffled, on Fashion-MNIST-sized random data (60000 x 784 float32, 10
classes). Both use the same number of threads. Epochs alternate between the
two libraries so machine noise hits both; medians are reported.

    PYTHONPATH=python python benchmarks/bench_fit_epoch.py [--epochs 3] [--threads 2] [--n 60000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="default: nnkernels' thread count")
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--backend", default="cpp")
    args = ap.parse_args()

    import torch

    import nnkernels
    from nnkernels import nn, optim

    if args.threads:
        nnkernels.set_num_threads(args.threads)
    threads = nnkernels.get_num_threads()
    torch.set_num_threads(threads)
    nnkernels.set_backend(args.backend)

    rng = np.random.default_rng(0)
    X = rng.random((args.n, 784), dtype=np.float32)
    y = rng.integers(0, 10, args.n)
    sizes = [784, 256, 128, 10]

    nnkernels.manual_seed(0)
    model = nn.MLP(sizes, init="torch")
    opt = optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    dl = nnkernels.DataLoader(X, y, batch_size=args.batch_size, shuffle=True, seed=0)

    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                                 torch.nn.ReLU(), torch.nn.Linear(128, 10))
    topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
    tloss = torch.nn.CrossEntropyLoss()
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)

    def torch_epoch() -> float:
        t0 = time.perf_counter()
        perm = torch.randperm(args.n)
        for i in range(0, args.n, args.batch_size):
            idx = perm[i:i + args.batch_size]
            topt.zero_grad()
            loss = tloss(tmodel(tX[idx]), ty[idx])
            loss.backward()
            topt.step()
        return time.perf_counter() - t0

    def nnk_epoch() -> tuple[float, float]:
        h = nnkernels.fit(model, loss_fn, opt, dl, epochs=1, progress=False)
        return h.seconds[0], h.train_loss[0]

    ours, theirs = [], []
    for e in range(args.epochs):
        s, loss = nnk_epoch()
        ours.append(s)
        theirs.append(torch_epoch())
        print(f"epoch {e + 1}: nnkernels {ours[-1]:.2f} s (train loss {loss:.4f})   "
              f"pytorch {theirs[-1]:.2f} s", flush=True)
    mo, mt = statistics.median(ours), statistics.median(theirs)
    info = nnkernels.cpu_info()
    print(f"\n{args.n} x 784, batch {args.batch_size}, Adam, MLP {sizes}, threads {threads}, "
          f"isa {info['isa']}, backend {args.backend}, torch {torch.__version__}")
    print(f"median s/epoch: nnkernels {mo:.2f}  pytorch {mt:.2f}  ratio pytorch/nnkernels {mt / mo:.2f}x")


if __name__ == "__main__":
    main()
