"""``nnkernels bench``: the benchmark report. See docs/benchmarks.md."""

from __future__ import annotations

import os
import sys


#: --quick: seconds from the start of the command after which figures are skipped,
#: so the whole run (imports, machine peaks, writing the report) stays under a minute.
QUICK_DEADLINE = 38.0


def _int_list(text: str, what: str) -> list:
    from ..cli import UsageError

    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--{what}: expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise UsageError(f"--{what}: expected positive integers, got {text!r}")
    return sorted(set(vals))


def _name_list(text: str, valid, what: str) -> list:
    from ..cli import UsageError

    vals = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in vals if v not in valid]
    if not vals or bad:
        raise UsageError(f"--{what}: unknown {what} {', '.join(bad) or repr(text)}; "
                         f"choose from {', '.join(valid)}")
    out = []
    for v in vals:
        if v not in out:
            out.append(v)
    return out


def add_arguments(parser) -> None:
    from .suites import SUITES

    parser.add_argument("--suite", default=None, metavar="NAME[,NAME]",
                        help=f"suites to run (default: all): {', '.join(SUITES)}")
    parser.add_argument("--threads", default=None, metavar="N[,N]",
                        help="thread counts (default: 1 and all CPUs of this process)")
    parser.add_argument("--backend", default=None, metavar="NAME[,NAME]",
                        help="our backends to measure: cpp, numba, numpy (default: cpp,numba,numpy; "
                             "--quick: cpp); the first is the one summarised in 'where we stand'")
    parser.add_argument("--quick", action="store_true",
                        help="fewer sizes and shorter timing: the whole run in under a minute")
    parser.add_argument("--out", default="nnkernels-bench", metavar="DIR",
                        help="output directory for report.md, results.json and the PNG plots "
                             "(default: ./nnkernels-bench/)")
    parser.add_argument("--repeats", type=int, default=None, metavar="N",
                        help="timed samples per figure (default 9; --quick 5)")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="seconds from the start after which the remaining figures are reported "
                             f"as skipped (default: none; --quick: {QUICK_DEADLINE:.0f})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--compare", nargs=2, metavar=("OLD.json", "NEW.json"),
                        help="print speed ratios between two results.json files and exit")


def run(args) -> int:
    import time

    started = time.perf_counter()
    from ..cli import UsageError
    from . import Config, run_bench, write_outputs
    from .peers import all_threads
    from .suites import SUITES
    from .timing import FULL, QUICK

    if args.compare:
        from .compare import compare_files

        for p in args.compare:
            if not os.path.exists(p):
                raise UsageError(f"--compare: no such file {p!r}")
        try:
            print(compare_files(*args.compare))
        except (ValueError, KeyError) as exc:
            raise UsageError(f"--compare: {exc}") from None
        return 0

    import nnkernels

    suites = _name_list(args.suite, list(SUITES), "suite") if args.suite else list(SUITES)
    threads = _int_list(args.threads, "threads") if args.threads else sorted({1, all_threads()})
    default_backends = "cpp" if args.quick else ",".join(nnkernels.available_backends())
    backends = _name_list(args.backend or default_backends, nnkernels.available_backends(), "backend")
    budget = QUICK if args.quick else FULL
    if args.repeats is not None:
        if args.repeats < 1:
            raise UsageError(f"--repeats: expected a positive integer, got {args.repeats}")
        import dataclasses

        budget = dataclasses.replace(budget, repeats=args.repeats, min_repeats=min(budget.min_repeats,
                                                                                   args.repeats))
    deadline = args.time_limit if args.time_limit is not None else (QUICK_DEADLINE if args.quick else None)
    if deadline is not None and deadline <= 0:
        raise UsageError(f"--time-limit: expected a positive number of seconds, got {deadline}")
    cfg = Config(threads=threads, backends=backends, quick=args.quick, budget=budget,
                 stop_at=None if deadline is None else started + deadline)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out: cannot create {args.out!r}: {exc.strerror}") from None
    progress = not args.no_progress
    print(f"nnkernels bench: suites {', '.join(suites)}; threads {threads}; backends {backends}"
          f"{'; quick' if args.quick else ''}", file=sys.stderr)
    res = run_bench(cfg, suites, progress=progress)
    paths = write_outputs(res, args.out)
    peaks = res["peaks"]
    for t in sorted(peaks["fma"], key=int):
        print(f"measured peak, {t} thread(s): {peaks['fma'][t]:.0f} GFLOP/s fp32 FMA, "
              f"{peaks['copy'][t]:.1f} GB/s copy, GEMM microkernel alone "
              f"{peaks['ukr'][t]:.0f} GFLOP/s", file=sys.stderr)
    print(f"wrote {paths['markdown']}, {paths['json']}, "
          f"{', '.join(paths['plots']) or 'no plots'} in {res['elapsed_s']:.0f} s")
    return 0
