"""nnkernels bench: timing/statistics, the runner's records, the writers,
--compare and a tiny CLI run. No timing assertions: only structure and
arithmetic on controlled (fake-clock) measurements."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from nnkernels import _C
from nnkernels.bench import compare, core, peers, plots, report, timing
from nnkernels.bench.core import Config, NotAvailable, Task
from nnkernels.bench.timing import Budget, Stats, measure
from nnkernels.cli import main


# ---- timing and statistics ---------------------------------------------------

@pytest.mark.parametrize("xs", [[1.0], [3.0, 1.0], [5.0, 1.0, 4.0, 2.0, 3.0], list(np.linspace(0, 1, 8))])
def test_stats_match_numpy(xs):
    s = Stats(list(xs), number=3)
    assert s.median == pytest.approx(np.median(xs))
    assert s.q1 == pytest.approx(np.percentile(xs, 25))
    assert s.q3 == pytest.approx(np.percentile(xs, 75))
    assert (s.min, s.max, s.n) == (min(xs), max(xs), len(xs))
    assert s.iqr == pytest.approx(np.percentile(xs, 75) - np.percentile(xs, 25))
    d = s.to_dict()
    assert d["number"] == 3 and d["samples"] == list(xs) and d["median"] == s.median
    assert Stats.from_dict(d).samples == s.samples


@pytest.mark.parametrize("bad", [[], [-1.0], [float("nan")], [1.0, float("inf")]])
def test_stats_reject_bad_samples(bad):
    with pytest.raises(ValueError):
        Stats(bad)


def test_quantile_checks():
    with pytest.raises(ValueError):
        timing.quantile([], 0.5)
    with pytest.raises(ValueError):
        timing.quantile([1.0], 1.5)


class FakeClock:
    """A clock that only moves when the timed function runs."""

    def __init__(self, per_call):
        self.t = 0.0
        self.calls = 0
        self.per_call = per_call

    def __call__(self):
        return self.t

    def fn(self):
        self.calls += 1
        self.t += self.per_call(self.calls) if callable(self.per_call) else self.per_call


def test_measure_calibrates_number_and_repeats():
    clk = FakeClock(0.002)
    b = Budget(target=0.01, repeats=9, min_repeats=3, max_time=0.1, warmup=2)
    s = measure(clk.fn, b, clock=clk)
    assert s.number == 5                    # 5 calls of 2 ms reach the 10 ms target
    assert s.n == 9                         # 0.1 s allows 10 samples; capped at 9
    assert clk.calls == 2 + 1 + 9 * 5       # warm-up, calibration, timed
    assert s.median == pytest.approx(0.002) and s.iqr == pytest.approx(0.0, abs=1e-12)


def test_measure_respects_time_budget_and_min_repeats():
    clk = FakeClock(0.05)
    s = measure(clk.fn, Budget(target=0.01, repeats=9, min_repeats=3, max_time=0.1, warmup=0), clock=clk)
    assert s.number == 1 and s.n == 3      # only 2 fit in max_time, but min_repeats wins


def test_measure_slow_call_keeps_one_sample():
    clk = FakeClock(lambda i: 10.0 if i > 1 else 0.001)
    s = measure(clk.fn, Budget(slow=5.0, warmup=1), clock=clk)
    assert s.samples == [10.0] and clk.calls == 2


def test_measure_slow_warmup_is_not_a_sample():
    # A first call that compiles for 10 s, then 1 ms calls: the compile time is never reported.
    clk = FakeClock(lambda i: 10.0 if i == 1 else 0.001)
    s = measure(clk.fn, Budget(target=0.01, repeats=3, max_time=1.0, warmup=3, slow=5.0), clock=clk)
    assert s.median == pytest.approx(0.001) and s.max == pytest.approx(0.001)
    assert clk.calls == 1 + 1 + 3 * s.number             # warm-up stopped after the slow call


def test_measure_median_of_varying_samples():
    times = iter([0.001, 0.001] + [0.001, 0.003, 0.002, 0.005, 0.004])
    clk = FakeClock(lambda i: next(times))
    s = measure(clk.fn, Budget(target=1e-6, repeats=5, min_repeats=5, max_time=1.0, warmup=1), clock=clk)
    assert s.samples == pytest.approx([0.001, 0.003, 0.002, 0.005, 0.004])
    assert s.median == pytest.approx(0.003) and s.min == pytest.approx(0.001) and s.max == pytest.approx(0.005)


def test_measure_calls_sync_on_every_result():
    seen = []
    clk = FakeClock(0.01)

    def fn():
        clk.fn()
        return clk.calls

    measure(fn, Budget(target=0.01, repeats=3, max_time=1.0, warmup=1), clock=clk, sync=seen.append)
    assert seen == list(range(1, clk.calls + 1))


@pytest.mark.parametrize("kw", [{"target": 0}, {"repeats": 0}, {"max_time": -1}, {"warmup": -1}])
def test_budget_validation(kw):
    with pytest.raises(ValueError):
        Budget(**kw)


def test_format_time_and_geomean():
    assert timing.format_time(812e-9) == "812 ns"
    assert timing.format_time(4.214e-6) == "4.21 us"
    assert timing.format_time(0.013) == "13 ms"
    assert timing.format_time(2.5) == "2.5 s"
    assert timing.format_time(float("nan")) == "-"
    assert timing.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert math.isnan(timing.geomean([]))


# ---- native machine measurements --------------------------------------------------

def test_native_peak_and_bandwidth():
    info = _C.bench_info()
    assert info["isa"] == _C.cpu_info()["isa"]
    assert info["flops_per_iteration"] == 2 * info["lanes"] * info["chains"]
    assert _C.fma_peak(0.01, 1) > 0
    assert _C.copy_bandwidth(1 << 20, 0.01, 2) > 0
    assert info["ukr_mr"] == _C.gemm_info()["mr_f32"] and info["ukr_nr"] == _C.gemm_info()["nr_f32"]


def test_microkernel_ceiling_is_below_the_fma_peak():
    # The microkernel does the peak loop's FMAs plus loads: a rate well above
    # the peak would mean the flop count or the timing is wrong. (Loose bound:
    # both are measured on a shared machine.)
    peak = max(_C.fma_peak(0.05, 1) for _ in range(3))
    ukr = min(_C.ukr_peak(0.05, 1) for _ in range(3))
    assert 0 < ukr < 1.25 * peak
    assert _C.ukr_peak(0.01, 2, k=64, tiles=3) > 0


@pytest.mark.parametrize("call", [lambda: _C.fma_peak(0.0, 1), lambda: _C.fma_peak(0.01, 0),
                                  lambda: _C.copy_bandwidth(100, 0.01, 1),
                                  lambda: _C.copy_bandwidth(1 << 20, 0.01, -1),
                                  lambda: _C.ukr_peak(0.0, 1), lambda: _C.ukr_peak(0.01, 0),
                                  lambda: _C.ukr_peak(0.01, 1, k=-1), lambda: _C.ukr_peak(0.01, 1, tiles=5000)])
def test_native_argument_checks(call):
    with pytest.raises(ValueError):
        call()


def test_peak_loops_run_under_every_isa():
    original = _C.cpu_info()["isa"]
    try:
        for isa in _C.cpu_info()["supported"]:
            _C.set_isa(isa)
            assert _C.bench_info()["isa"] == isa
            assert _C.fma_peak(0.005, 1) > 0 and _C.copy_bandwidth(1 << 16, 0.005, 1) > 0
            assert _C.ukr_peak(0.005, 1, k=32, tiles=2) > 0
    finally:
        _C.set_isa(original)


# ---- runner records -----------------------------------------------------------------

FAST = Budget(target=1e-4, repeats=3, min_repeats=3, max_time=0.01, warmup=1)
PEAKS = {"fma": {"1": 100.0}, "copy": {"1": 10.0}}


def _task(impl="nnk:numpy", setup=None, **kw):
    return Task("s", "c", impl, 1, setup or (lambda: (lambda: None)), **kw)


def test_run_task_ok_record_has_rates_and_peak_fraction():
    r = core.run_task(_task(flops=1e6, nbytes=1e3, samples=10, roof="fma"), FAST, PEAKS)
    assert r["status"] == "ok"
    t = r["time"]["median"]
    assert r["gflops"] == pytest.approx(1e6 / t * 1e-9)
    assert r["gbs"] == pytest.approx(1e3 / t * 1e-9)
    assert r["samples_per_s"] == pytest.approx(10 / t)
    assert r["pct_peak"] == pytest.approx(100 * r["gflops"] / 100.0)
    r = core.run_task(_task(nbytes=1e3, roof="copy"), FAST, PEAKS)
    assert r["pct_peak"] == pytest.approx(100 * r["gbs"] / 10.0)


def test_run_task_statuses():
    def missing_api():
        raise NotAvailable("nnkernels.ops.frobnicate is not in this build")

    def broken():
        raise RuntimeError("boom")

    assert core.run_task(_task(setup=missing_api), FAST)["status"] == "not available"
    r = core.run_task(_task(setup=broken), FAST)
    assert r["status"] == "error" and "boom" in r["note"]
    r = core.run_task(_task(impl="nosuchpeer"), FAST)
    assert r["status"] == "missing" and "nosuchpeer" in r["note"]
    made = core.run_task(_task(setup=lambda: ((lambda: None), "layer by layer")), FAST)
    assert made["status"] == "ok" and made["note"] == "layer by layer"


def test_run_task_calls_a_callable_note_after_the_timed_calls():
    calls = []

    def setup():
        return (lambda: calls.append("fit")), (lambda: f"accuracy after {len(calls)} calls")

    r = core.run_task(_task(setup=setup), FAST)
    assert r["status"] == "ok" and calls
    assert r["note"] == f"accuracy after {len(calls)} calls"


def test_missing_kernel_is_not_available_but_a_bug_is_an_error():
    from nnkernels.backends import load_backend

    backend = load_backend("numpy")

    def lacks_kernel():
        return backend.no_such_kernel

    def buggy():
        return None.shape

    assert core.run_task(_task(setup=lacks_kernel), FAST)["status"] == "not available"
    assert core.run_task(_task(setup=buggy), FAST)["status"] == "error"


def test_jax_rows_only_at_all_threads():
    t = Task("s", "c", "jax", peers.all_threads() + 1, lambda: (lambda: None))
    r = core.run_task(t, FAST)
    assert r["status"] == ("n/a" if peers.available("jax") else "missing")


def test_run_tasks_restores_threads_and_adds_ratios():
    import nnkernels

    before = nnkernels.get_num_threads()
    seen = []

    def fn_at(delay_calls):
        def setup():
            seen.append(nnkernels.get_num_threads())
            return lambda: sum(range(delay_calls))
        return setup

    tasks = [Task("s", "c", "nnk:numpy", 1, fn_at(10)), Task("s", "c", "numpy", 1, fn_at(20000))]
    recs = core.run_tasks(tasks, FAST, progress=False)
    assert nnkernels.get_num_threads() == before and seen == [1, 1]
    ours, peer = recs
    assert ours["vs"]["numpy"] == pytest.approx(peer["time"]["median"] / ours["time"]["median"])
    assert "vs" not in peer


# ---- writers and --compare ----------------------------------------------------------

def _result(scale=1.0):
    recs = []
    for impl, t in (("nnk:cpp", 1e-3), ("torch", 2e-3), ("jax", 4e-3)):
        task = Task("gemm", "64x64x64", impl, 1, lambda: None, flops=2 * 64 ** 3, roof="fma",
                    params={"size": 64})
        recs.append(core._record(task, "ok", stats=Stats([t * scale, t * scale * 1.1, t * scale * 0.9]),
                                 peaks=PEAKS))
    recs.append(core._record(Task("gemm", "64x64x64", "numpy", 1, lambda: None), "missing", "not installed"))
    for b, t in ((16, 1e-3), (64, 2e-3)):
        for impl, f in (("nnk:cpp", 1.0), ("torch", 3.0)):
            task = Task("train-step", f"batch {b}", impl, 1, lambda: None, samples=b, flops=1e6, roof="fma",
                        params={"batch": b})
            recs.append(core._record(task, "ok", stats=Stats([t * f * scale]), peaks=PEAKS))
    for c in (10, 100):
        task = Task("softmax-xent", f"C={c}", "nnk:cpp", 1, lambda: None, nbytes=8.0 * c, roof="copy",
                    params={"classes": c})
        recs.append(core._record(task, "ok", stats=Stats([c * 1e-6 * scale]), peaks=PEAKS))
    core.add_ratios(recs)
    machine = {"cpu_model": "test cpu", "logical_cpus": 2, "isa": "avx512", "isa_compiled": ["generic"],
               "isa_supported": ["generic"], "peak_loop": {"chains": 16, "lanes": 16, "fma": True},
               "system": "test", "versions": {"numpy": "2", "jax": None}, "date_utc": "2026-01-01 00:00:00"}
    peaks = {"fma": {"1": 100.0}, "copy": {"1": 10.0}, "ukr": {"1": 85.0}, "fma_stats": {"1": Stats([90.0, 100.0]).to_dict()},
             "copy_stats": {"1": Stats([9.0, 10.0]).to_dict()}}
    config = {"threads": [1], "backends": ["cpp"], "quick": True, "primary": "nnk:cpp",
              "suites": ["gemm", "train-step", "softmax-xent"], "suite_docs": {"gemm": "GEMM doc."}}
    return report.result(machine, peaks, config, recs, 1.0)


def test_markdown_report_tables_and_standing():
    md = report.markdown(_result(), ["gemm.png"])
    assert md.startswith("# nnkernels benchmark report")
    for needle in ("## Machine", "## Measured peak", "## gemm", "### gemm, 1 thread", "GEMM doc.",
                   "| 64x64x64 | nnk:cpp | 1 ms |", "2.00x", "4.00x", "missing", "![gemm](gemm.png)",
                   "| 10.0 (9.5, 9.0-10.0) | 85.0 (85%) |"):
        assert needle in md, needle
    tail = md.split("## Where we stand")[1]
    assert "| gemm | 1 | torch | 2.00x | 1/1 |" in tail
    assert "| train-step | 1 | torch | 3.00x | 2/2 |" in tail
    rows = report.standing(_result()["records"], "nnk:cpp")
    assert ("gemm", 1, "jax", pytest.approx(4.0), 1, 1) == rows[1]


def test_standing_has_a_row_per_variant_of_the_primary():
    recs = []
    for impl, t in (("nnk:cpp", 1.0), ("nnk:cpp-sklearn", 2.0), ("nnk:numba", 3.0), ("sklearn", 8.0)):
        task = Task("epoch", "fit", impl, 2, lambda: None)
        recs.append(core._record(task, "ok", stats=Stats([t])))
    core.add_ratios(recs)
    rows = report.standing(recs, "nnk:cpp")
    assert rows == [("epoch", 2, "sklearn", pytest.approx(8.0), 1, 1),
                    ("epoch (nnk:cpp-sklearn)", 2, "sklearn", pytest.approx(4.0), 1, 1)]


def test_json_round_trip_and_schema(tmp_path):
    res = _result()
    res["records"][0]["vs"]["inf-peer"] = float("inf")
    path = tmp_path / "r.json"
    report.write_json(res, str(path))
    back = report.load_json(str(path))
    assert back["records"][0]["vs"]["inf-peer"] is None          # JSON has no inf
    assert back["records"][0]["time"]["samples"] == res["records"][0]["time"]["samples"]
    assert back["machine"]["cpu_model"] == "test cpu"
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "other", "records": []}))
    with pytest.raises(ValueError):
        report.load_json(str(tmp_path / "bad.json"))


def test_plots_are_pngs(tmp_path):
    names = plots.write_plots(_result(), str(tmp_path))
    assert names == ["gemm.png", "train_step.png", "softmax_xent.png"]
    for n in names:
        data = (tmp_path / n).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_compare_ratios():
    c = compare.compare(_result(scale=2.0), _result(scale=1.0))
    assert len(c["rows"]) == 9
    assert all(row[6] == pytest.approx(2.0) for row in c["rows"])
    assert {s[0] for s in c["summary"]} == {"gemm", "train-step", "softmax-xent"}
    text = compare.format_compare(c, "old", "new")
    assert "2.00x" in text and "geometric mean" in text


def test_cli_compare(tmp_path, capsys):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    report.write_json(_result(scale=3.0), str(old))
    report.write_json(_result(scale=1.0), str(new))
    assert main(["bench", "--compare", str(old), str(new)]) == 0
    assert "3.00x" in capsys.readouterr().out
    assert main(["bench", "--compare", str(old), str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--threads", "a"], ["--backend", "fortran"],
                                  ["--suite", "nosuch"], ["--repeats", "0"]])
def test_cli_usage_errors(argv, tmp_path, capsys):
    assert main(["bench", *argv, "--out", str(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err


# ---- suites and a tiny end-to-end run -----------------------------------------------

def test_every_suite_builds_tasks():
    from nnkernels.bench.suites import SUITES

    cfg = Config(threads=[1, 2], backends=["cpp", "numpy"], quick=True)
    for name, mod in SUITES.items():
        tasks = mod.tasks(cfg)
        assert tasks and all(t.suite == name for t in tasks)
        assert {t.threads for t in tasks} == {1, 2}
        assert any(core.is_ours(t.impl) for t in tasks) and any(not core.is_ours(t.impl) for t in tasks)
        assert all((t.flops > 0 and t.roof == "fma") or (t.nbytes > 0 and t.roof == "copy") for t in tasks)


def test_cli_tiny_run(tmp_path, monkeypatch, capsys):
    from nnkernels.bench.suites import gemm

    monkeypatch.setattr(gemm, "SQUARE_QUICK", (32, 64))
    monkeypatch.setattr(gemm, "MLP_M_QUICK", (8,))
    monkeypatch.setattr(gemm, "PEERS", ("numpy", "nosuchpeer"))
    out = tmp_path / "out"
    rc = main(["bench", "--quick", "--suite", "gemm", "--threads", "1", "--backend", "numpy,cpp",
               "--repeats", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["gemm.png", "report.md", "results.json"]
    res = report.load_json(str(out / "results.json"))
    assert res["config"]["backends"] == ["numpy", "cpp"] and res["config"]["primary"] == "nnk:numpy"
    assert res["machine"]["isa"] == _C.cpu_info()["isa"] and res["peaks"]["fma"]["1"] > 0
    recs = res["records"]
    assert len(recs) == 5 * 4                               # 2 squares + 3 MLP products, 4 impls
    by = {(r["case"], r["impl"]): r for r in recs}
    assert by[("32x32x32", "nosuchpeer")]["status"] == "missing"
    ok = by[("mlp dW M=8", "nnk:cpp")]
    assert ok["status"] == "ok" and ok["time"]["n"] >= 2 and ok["flops"] == 2 * 8 * 256 * 784
    assert set(ok["vs"]) == {"numpy"}
    md = (out / "report.md").read_text()
    assert "## gemm" in md and "## Where we stand" in md and "nosuchpeer" in md


def test_measure_stops_when_calls_get_slow():
    # Calibrated on a 1 ms call, then every call takes 1 s: without the hard
    # stop this would be 3 samples x 10 calls x 1 s.
    clk = FakeClock(lambda i: 0.001 if i <= 2 else 1.0)
    b = Budget(target=0.01, repeats=3, min_repeats=3, max_time=0.5, warmup=1, slow=2.0)
    s = measure(clk.fn, b, clock=clk)
    assert s.number == 10 and s.n == 1
    assert clk.t < 2 + 0.002 + 2.0           # stopped within one clock check of the limit
    assert s.samples[0] == pytest.approx(1.0)


def _numpy_vs_torch(a, b):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                               rtol=2e-4, atol=1e-6)


def test_numpy_peers_compute_what_torch_computes():
    """The hand-written NumPy peers time the right computation."""
    torch = pytest.importorskip("torch")
    from nnkernels.bench.suites import activations, losses, softmax_xent

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8)).astype(np.float32)
    g = rng.standard_normal((4, 8)).astype(np.float32)
    for act in ("relu", "silu", "sigmoid", "tanh"):
        for direction in ("fwd", "bwd"):
            out = np.empty_like(x)
            activations._numpy(act, direction, x, g, out)()
            ref = activations._torch(act, direction, x, g)()
            _numpy_vs_torch(out, ref.numpy())
    t = rng.random((4, 8)).astype(np.float32)
    for name in losses.LOSSES:
        loss, grad = losses._numpy(name, x, t)()
        rl, rg = losses._torch(name, x, t)()
        _numpy_vs_torch(loss, float(rl))
        _numpy_vs_torch(grad, rg.numpy())
    y = rng.integers(0, 8, size=4)
    loss, grad = softmax_xent._numpy(x, y)()
    rl, rg = softmax_xent._torch(x, y)()
    _numpy_vs_torch(loss, float(rl))
    _numpy_vs_torch(grad, rg.numpy())
    xt = torch.from_numpy(x).requires_grad_()
    torch.nn.functional.cross_entropy(xt, torch.from_numpy(y)).backward()
    _numpy_vs_torch(grad, xt.grad.numpy())


def test_numpy_adam_matches_torch():
    torch = pytest.importorskip("torch")
    from nnkernels.bench.suites import optim

    shapes = [(3, 5), (5,)]
    ours_np = optim._numpy(shapes)
    step_t = optim._torch(shapes, "loop")
    for _ in range(3):
        ours_np()
        step_t()
    # Both started from the same arrays (same seeds): compare the parameters.
    p_np = ours_np.params
    p_t = [p.detach().numpy() for p in step_t.__self__.param_groups[0]["params"]]
    assert len(p_np) == len(p_t) == 2
    for a, b in zip(p_np, p_t):
        _numpy_vs_torch(a, b)
    if "adam_step" in dir(__import__("nnkernels").ops):
        ours = optim._ours(shapes)
        for _ in range(3):
            ours()
        for a, b in zip(ours.params, p_t):
            _numpy_vs_torch(a, b)


def test_missing_peer_is_reported_not_an_error(monkeypatch):
    from nnkernels.bench.suites import gemm

    monkeypatch.setitem(peers._versions, "torch", None)
    monkeypatch.setattr(gemm, "SQUARE_QUICK", (16,))
    monkeypatch.setattr(gemm, "MLP_M_QUICK", ())
    cfg = Config(threads=[1], backends=["numpy"], quick=True, budget=FAST)
    recs = core.run_tasks(gemm.tasks(cfg), FAST, progress=False)
    by = {r["impl"]: r for r in recs}
    assert by["torch"]["status"] == "missing" and by["nnk:numpy"]["status"] == "ok"
    assert "torch" not in by["nnk:numpy"]["vs"]
    assert "torch" in report.markdown(report.result(
        _result()["machine"], _result()["peaks"], {**_result()["config"], "suites": ["gemm"]}, recs, 1.0))


def test_jax_worker_measures_in_a_pinned_subprocess():
    pytest.importorskip("jax")
    from nnkernels.bench import jax_worker

    cfg = Config(threads=[1], backends=["cpp"], quick=True, budget=FAST)
    recs = jax_worker.measure_in_subprocess(1, [["gemm", "256x256x256"]], cfg, PEAKS, timeout=300)
    assert len(recs) == 1
    r = recs[0]
    assert (r["suite"], r["case"], r["impl"], r["threads"], r["status"]) == ("gemm", "256x256x256", "jax", 1, "ok")
    assert "pinned to 1 CPU" in r["note"] and r["gflops"] > 0
