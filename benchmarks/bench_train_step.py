"""Training-step throughput: nnkernels' fused step vs PyTorch eager vs JAX jit.

MLP([784, 256, 128, 10]) (ReLU) + softmax cross-entropy + Adam(lr=1e-3), float32.
nnkernels runs the public API (``model.train_step(x, y, loss_fn, optimizer)``,
the fused native step); PyTorch the usual eager loop (zero_grad, forward,
loss, backward, step); JAX one ``jax.jit`` function doing forward, grad and
a hand-written Adam update (same math as optax/torch), buffers donated.

Each thread count runs in its own subprocess pinned to that many CPUs
(sched_setaffinity; XLA/torch/nnkernels thread counts set to match). Within
it the frameworks run interleaved, round after round, on the same batch, so
the ratios are same-run; each figure is the median over rounds. The machine
is shared and noisy: read the ratios, not the absolute numbers. Workers run
with OMP_WAIT_POLICY=passive by default (see --omp-wait-policy): with the
default spin-wait, OpenMP threads of one library (ours, torch's) and XLA's pool
spin against each other on the same pinned CPUs and every framework's 2-thread
figure collapses on a loaded machine.

    python benchmarks/bench_train_step.py                       # threads 1,2; batches 1,64,1024,4096
    python benchmarks/bench_train_step.py --threads 2 --batches 64 --rounds 9 --json out.json

FLOPs per sample: 6 per weight (forward, input-gradient and weight-gradient
GEMMs) less 2 per weight of the first layer (no input gradient is computed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

DIMS = [784, 256, 128, 10]
#: fp32 FMA peak of one Sapphire Rapids core (2 x 512-bit FMA x 2 GHz-ish); used when
#: nnkernels._C.fma_peak (bench branch) is not available
NOMINAL_PEAK_PER_CORE = 275.0


def flops_per_sample(dims) -> int:
    w = [a * b for a, b in zip(dims, dims[1:])]
    return 6 * sum(w) - 2 * w[0]


def worker(threads: int, batches, rounds: int, min_time: float, frameworks) -> dict:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               (" --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
                                if threads == 1 else ""))
    import numpy as np

    runners = {}
    if "nnkernels" in frameworks:
        import nnkernels
        from nnkernels import nn, optim
        nnkernels.set_num_threads(threads)

        def make_nnk():
            m = nn.MLP(DIMS, rng=0)
            opt = optim.Adam(m.parameters(), lr=1e-3)
            lf = nn.CrossEntropyLoss()

            def step(x, y):
                return m.train_step(x, y, lf, opt)
            step.check = lambda: m.last_step_fused
            return step
        runners["nnkernels"] = make_nnk
    if "torch" in frameworks:
        import torch
        torch.set_num_threads(threads)

        def make_torch():
            torch.manual_seed(0)
            m = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                                    torch.nn.ReLU(), torch.nn.Linear(128, 10))
            opt = torch.optim.Adam(m.parameters(), lr=1e-3)
            lf = torch.nn.CrossEntropyLoss()
            cache = {}

            def step(x, y):
                key = id(x)
                if key not in cache:
                    cache.clear()
                    cache[key] = (torch.from_numpy(x), torch.from_numpy(y))
                xt, yt = cache[key]
                opt.zero_grad()
                loss = lf(m(xt), yt)
                loss.backward()
                opt.step()
                return loss.item()
            return step
        runners["torch"] = make_torch
    if "jax" in frameworks:
        import jax
        import jax.numpy as jnp

        def make_jax():
            key = jax.random.PRNGKey(0)
            params = []
            for a, b in zip(DIMS, DIMS[1:]):
                key, k1 = jax.random.split(key)
                bound = 1 / np.sqrt(a)
                params.append((jax.random.uniform(k1, (b, a), jnp.float32, -bound, bound),
                               jnp.zeros((b,), jnp.float32)))
            zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
            state = [params, zeros, jax.tree_util.tree_map(jnp.zeros_like, params), jnp.zeros((), jnp.int32)]

            def loss_fn(p, x, y):
                h = x
                for i, (w, b) in enumerate(p):
                    h = h @ w.T + b
                    if i < len(p) - 1:
                        h = jax.nn.relu(h)
                logz = jax.nn.log_softmax(h)
                return -jnp.mean(jnp.take_along_axis(logz, y[:, None], axis=1))

            def train_step(p, m, v, t, x, y):
                loss, g = jax.value_and_grad(loss_fn)(p, x, y)
                t = t + 1
                b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
                m = jax.tree_util.tree_map(lambda m_, g_: b1 * m_ + (1 - b1) * g_, m, g)
                v = jax.tree_util.tree_map(lambda v_, g_: b2 * v_ + (1 - b2) * g_ * g_, v, g)
                bc1 = 1 - b1 ** t
                bc2 = 1 - b2 ** t
                p = jax.tree_util.tree_map(
                    lambda p_, m_, v_: p_ - lr / bc1 * m_ / (jnp.sqrt(v_) / jnp.sqrt(bc2) + eps), p, m, v)
                return p, m, v, t, loss

            jstep = jax.jit(train_step, donate_argnums=(0, 1, 2))
            cache = {}

            def step(x, y):
                k = id(x)
                if k not in cache:
                    cache.clear()
                    cache[k] = (jnp.asarray(x), jnp.asarray(y.astype(np.int32)))
                xj, yj = cache[k]
                p, m, v, t, loss = jstep(state[0], state[1], state[2], state[3], xj, yj)
                state[:] = [p, m, v, t]
                return loss
            step.sync = lambda: jax.block_until_ready(state[0])
            return step
        runners["jax"] = make_jax

    peak = None
    try:
        from nnkernels import _C
        if hasattr(_C, "fma_peak"):
            peak = float(_C.fma_peak(0.3, threads))
    except Exception:  # pragma: no cover
        peak = None

    rng = np.random.default_rng(0)
    results = {"threads": threads, "fma_peak_gflops": peak, "batches": {}}
    for bs in batches:
        x = rng.standard_normal((bs, DIMS[0])).astype(np.float32)
        y = rng.integers(0, DIMS[-1], bs).astype(np.int64)
        steps = {name: make() for name, make in runners.items()}
        reps = {}
        for name, st in steps.items():  # warm-up (JIT compile, workspace, caches); calibrate
            for _ in range(3):
                st(x, y)
            getattr(st, "sync", lambda: None)()
            if hasattr(st, "check"):
                assert st.check(), "nnkernels did not take the fused path"
            t0 = time.perf_counter()
            n = 0
            while time.perf_counter() - t0 < min_time / 4:
                st(x, y)
                n += 1
            getattr(st, "sync", lambda: None)()
            per = (time.perf_counter() - t0) / n
            reps[name] = max(1, int(min_time / per))
        rates = {name: [] for name in steps}
        cpu_rates = []
        for _ in range(rounds):
            for name, st in steps.items():
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(reps[name]):
                    st(x, y)
                getattr(st, "sync", lambda: None)()
                rates[name].append(bs * reps[name] / (time.perf_counter() - t0))
                if name == "nnkernels":  # CPU time of the process: robust to a shared machine
                    cpu_rates.append(bs * reps[name] / max(time.process_time() - c0, 1e-9))
        med = {name: statistics.median(r) for name, r in rates.items()}
        entry = {"samples_per_s": med}
        if cpu_rates:
            entry["nnkernels_gflops_per_cpu_s"] = statistics.median(cpu_rates) * flops_per_sample(DIMS) / 1e9
        fl = flops_per_sample(DIMS)
        entry["gflops"] = {name: med[name] * fl / 1e9 for name in med}
        if "nnkernels" in med:
            for other in ("torch", "jax"):
                if other in med:
                    entry[f"x_vs_{other}"] = med["nnkernels"] / med[other]
            if peak:
                entry["fraction_of_peak"] = entry["gflops"]["nnkernels"] / peak
            if cpu_rates:  # per CPU-second against one core's peak (FMA peak / threads, or nominal)
                core_peak = peak / threads if peak else NOMINAL_PEAK_PER_CORE
                entry["cpu_fraction_of_core_peak"] = entry["nnkernels_gflops_per_cpu_s"] / core_peak
        results["batches"][str(bs)] = entry
        print(json.dumps({"threads": threads, "batch": bs, **entry}), file=sys.stderr, flush=True)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="1,64,1024,4096")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.25, help="seconds per framework per round")
    ap.add_argument("--frameworks", default="nnkernels,torch,jax")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--omp-wait-policy", default="passive",
                    help="OMP_WAIT_POLICY for the workers (default passive: on a shared, oversubscribed "
                         "machine spinning OpenMP threads of one library starve the others'; '' keeps "
                         "the environment's)")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    batches = [int(b) for b in a.batches.split(",")]
    fws = a.frameworks.split(",")
    if a.worker is not None:
        print(json.dumps(worker(a.worker, batches, a.rounds, a.min_time, fws)))
        return 0
    allres = []
    for nt in [int(t) for t in a.threads.split(",")]:
        env = dict(os.environ, OMP_NUM_THREADS=str(nt))
        if a.omp_wait_policy:
            env["OMP_WAIT_POLICY"] = a.omp_wait_policy
        out = subprocess.run([sys.executable, __file__, "--worker", str(nt), "--batches", a.batches,
                              "--rounds", str(a.rounds), "--min-time", str(a.min_time), "--frameworks",
                              a.frameworks], env=env, check=True, stdout=subprocess.PIPE, text=True)
        allres.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"MLP{DIMS} + Adam, float32, {flops_per_sample(DIMS) / 1e6:.3f} MFLOP/sample; medians of "
          f"{a.rounds} interleaved rounds")
    hdr = f"{'threads':>7} {'batch':>6} " + " ".join(f"{f + ' samp/s':>18}" for f in fws) + \
        "  nnk/torch  nnk/jax  nnk GFLOP/s  %peak  GFLOP/cpu-s  %core-peak"
    print(hdr)
    for r in allres:
        for bs, e in r["batches"].items():
            sps = e["samples_per_s"]
            row = f"{r['threads']:>7} {bs:>6} " + " ".join(f"{sps.get(f, float('nan')):>18,.0f}" for f in fws)
            row += f"  {e.get('x_vs_torch', float('nan')):>9.2f}  {e.get('x_vs_jax', float('nan')):>7.2f}"
            row += f"  {e['gflops'].get('nnkernels', float('nan')):>11.1f}"
            row += f"  {100 * e['fraction_of_peak']:>5.1f}" if e.get("fraction_of_peak") else "      -"
            if "nnkernels_gflops_per_cpu_s" in e:
                row += f"  {e['nnkernels_gflops_per_cpu_s']:>11.1f}  {100 * e['cpu_fraction_of_core_peak']:>10.1f}"
            print(row)
        if r["fma_peak_gflops"]:
            print(f"        FMA peak ({r['threads']} threads, this run): {r['fma_peak_gflops']:.0f} GFLOP/s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(allres, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
