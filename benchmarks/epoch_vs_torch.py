"""Seconds per epoch: `nnkernels train` vs a plain PyTorch loop, same recipe, same run.

Recipe (the defaults of `nnkernels train --dataset fashion-mnist --hidden 256,128
--optimizer adam --epochs 15`): MLP 784-256-128-10 with ReLU, He-normal
weights and zero biases, cross-entropy, Adam lr 1e-3, cosine learning-rate
schedule over the epochs (stepped per epoch), batch 128, reshuffled every
epoch, 10% of the training set held out (stratified, seed 0) for validation,
validation loss and accuracy computed every epoch, float32, same thread count.

Both sides time the same thing per epoch: the training pass over all batches
plus the validation pass. The two runs alternate (nnkernels, torch, nnkernels,
torch, ...) so machine noise hits both; medians over all epochs of all runs.

    python benchmarks/epoch_vs_torch.py                  # fashion-mnist, 15 epochs, 1 round
    python benchmarks/epoch_vs_torch.py --rounds 2 --epochs 5 --dataset digits
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time


def torch_run(ds, args, threads: int) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    (Xtr, ytr), (Xva, yva) = ds.split_validation(args.val_split, seed=args.seed)
    Xtr, ytr = torch.from_numpy(Xtr), torch.from_numpy(ytr)
    Xva, yva = torch.from_numpy(Xva), torch.from_numpy(yva)
    Xte, yte = torch.from_numpy(ds.X_test), torch.from_numpy(ds.y_test)
    sizes = [ds.n_features, *args.hidden, ds.n_classes]
    layers = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        nn.init.kaiming_normal_(lin.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    gen = torch.Generator().manual_seed(args.seed)
    n = len(ytr)
    epochs = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, args.batch_size):
            idx = perm[start:start + args.batch_size]
            xb, yb = Xtr[idx], ytr[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        model.eval()
        with torch.no_grad():
            logits = model(Xva)
            val_loss = loss_fn(logits, yva).item()
            val_acc = (logits.argmax(1) == yva).float().mean().item()
        epochs.append({"train_loss": total / n, "val_loss": val_loss, "val_accuracy": val_acc,
                       "seconds": time.perf_counter() - t0})
    with torch.no_grad():
        test_acc = (model(Xte).argmax(1) == yte).float().mean().item()
    return {"epochs": epochs, "test_accuracy": test_acc}


def nnkernels_run(ds, args, threads: int) -> dict:
    from nnkernels.commands import train as train_cmd

    argv = ["--dataset", args.dataset, "--hidden", ",".join(map(str, args.hidden)),
            "--optimizer", "adam", "--lr", str(args.lr), "--scheduler", "cosine",
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--val-split", str(args.val_split), "--seed", str(args.seed),
            "--threads", str(threads), "--backend", args.backend, "--quiet"]
    with open(os.devnull, "w") as devnull:
        result = train_cmd.train_from_argv(argv, dataset=ds, out=devnull)
    h = result.history
    epochs = [{"train_loss": h.train_loss[i], "val_loss": h.val_loss[i],
               "val_accuracy": h.val_accuracy[i], "seconds": h.seconds[i]}
              for i in range(len(h.train_loss))]
    return {"epochs": epochs, "test_accuracy": result.test_accuracy}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--hidden", default="256,128")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-split", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--backend", default="cpp")
    p.add_argument("--rounds", type=int, default=1, help="alternating nnkernels/torch rounds")
    p.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    args = p.parse_args()
    args.hidden = [int(s) for s in args.hidden.split(",") if s.strip()]

    import torch
    import nnkernels
    from nnkernels.commands._common import load_dataset

    ds = load_dataset(argparse.Namespace(dataset=args.dataset, data_dir=None, download=False))
    sizes = "-".join(map(str, [ds.n_features, *args.hidden, ds.n_classes]))
    print(f"{args.dataset}: {len(ds.y_train)} train ({args.val_split:.0%} held out for validation), "
          f"{len(ds.y_test)} test; MLP {sizes} relu, Adam lr {args.lr}, cosine, batch "
          f"{args.batch_size}, {args.epochs} epochs, {args.threads} threads")
    print(f"nnkernels {nnkernels.__version__} (backend {args.backend}, isa "
          f"{nnkernels.cpu_info()['isa']}), torch {torch.__version__}, python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}")

    runs = {"nnkernels": [], "torch": []}
    for r in range(args.rounds):
        for name, fn in (("nnkernels", nnkernels_run), ("torch", torch_run)):
            res = fn(ds, args, args.threads)
            runs[name].append(res)
            secs = [e["seconds"] for e in res["epochs"]]
            print(f"round {r + 1} {name:>9}: median {statistics.median(secs):.3f} s/epoch "
                  f"(min {min(secs):.3f}), final val acc {100 * res['epochs'][-1]['val_accuracy']:.2f}%, "
                  f"test acc {100 * res['test_accuracy']:.2f}%", flush=True)

    med = {k: statistics.median(e["seconds"] for res in v for e in res["epochs"]) for k, v in runs.items()}
    acc = {k: statistics.median(res["test_accuracy"] for res in v) for k, v in runs.items()}
    print()
    print(f"{'':>10} {'s/epoch (median)':>17} {'test accuracy':>14}")
    for k in runs:
        print(f"{k:>10} {med[k]:>17.3f} {100 * acc[k]:>13.2f}%")
    print(f"torch / nnkernels time per epoch: {med['torch'] / med['nnkernels']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": runs}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
