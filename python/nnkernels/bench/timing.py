"""Timing and statistics: calibrated repeats after warm-up, median and spread.

``measure(fn)`` calls ``fn`` once to warm up (JIT compilation, caches, page
faults), times one more call to calibrate, then picks ``number`` calls per
sample so one sample lasts about ``target`` seconds (timer resolution and
call overhead become negligible) and ``repeats`` samples so the whole
measurement stays near ``max_time``. Each sample is the mean time of one
call over its ``number`` calls; the figures reported are the median of the
samples and their spread (quartiles and min-max). If the calls turn out
much slower than the calibration call (a loaded machine), timing stops
after ``max(4 * max_time, slow)`` seconds with the samples taken so far.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence


@dataclass(frozen=True)
class Budget:
    """How long to measure one case."""

    target: float = 0.02      # seconds per sample (number of calls chosen to reach it)
    repeats: int = 9          # samples wanted
    min_repeats: int = 3      # samples kept even when a call is slow
    max_time: float = 0.6     # seconds of timed calls per case (soft)
    warmup: int = 1           # untimed calls first
    slow: float = 5.0         # a single call slower than this: keep the calibration sample only

    def __post_init__(self):
        if self.target <= 0 or self.max_time <= 0 or self.slow <= 0:
            raise ValueError("Budget: target, max_time and slow must be positive")
        if self.repeats < 1 or self.min_repeats < 1 or self.warmup < 0:
            raise ValueError("Budget: repeats and min_repeats must be >= 1, warmup >= 0")


FULL = Budget()
QUICK = Budget(target=0.003, repeats=5, min_repeats=3, max_time=0.08, warmup=1, slow=1.0)


def quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (NumPy's default) of an ascending sequence."""
    if not sorted_xs:
        raise ValueError("quantile of an empty sequence")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q: expected 0 <= q <= 1, got {q}")
    pos = q * (len(sorted_xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass
class Stats:
    """Seconds per call: every sample plus its summary."""

    samples: list = field(default_factory=list)  # seconds per call, one per sample
    number: int = 1                               # calls averaged in each sample

    def __post_init__(self):
        if not self.samples:
            raise ValueError("Stats: need at least one sample")
        if any(not (s >= 0.0 and math.isfinite(s)) for s in self.samples):
            raise ValueError(f"Stats: samples must be finite and >= 0, got {self.samples}")

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def q1(self) -> float:
        return quantile(sorted(self.samples), 0.25)

    @property
    def q3(self) -> float:
        return quantile(sorted(self.samples), 0.75)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(median=self.median, q1=self.q1, q3=self.q3, min=self.min, max=self.max, n=self.n)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Stats":
        return cls(samples=list(d["samples"]), number=int(d.get("number", 1)))


def measure(fn: Callable[[], object], budget: Budget = FULL,
            clock: Callable[[], float] = time.perf_counter,
            sync: Optional[Callable[[object], object]] = None) -> Stats:
    """Time ``fn()`` (no arguments) under ``budget``; see the module docstring.

    ``sync(result)`` is called inside the timed region after each call (e.g.
    JAX's ``block_until_ready``) so asynchronous work is counted.
    """
    def call():
        r = fn()
        if sync is not None:
            sync(r)

    for _ in range(budget.warmup):
        t0 = clock()
        call()
        if clock() - t0 >= budget.slow:  # no more warm-up calls (this one may include compilation)
            break
    t0 = clock()
    call()
    one = max(clock() - t0, 1e-9)
    if one >= budget.slow:
        return Stats(samples=[one], number=1)
    number = max(1, int(math.ceil(budget.target / one)))
    per_sample = number * one
    repeats = int(budget.max_time // per_sample)
    repeats = max(budget.min_repeats, min(budget.repeats, repeats))
    # Hard stop: if calls become much slower than the calibration call (a
    # loaded machine), end early with the samples so far rather than spend
    # number * repeats slow calls. The clock is read every `check` calls.
    stop = clock() + max(4.0 * budget.max_time, budget.slow)
    check = max(1, number // 8)
    samples = []
    for _ in range(repeats):
        t0 = clock()
        done = 0
        late = False
        while done < number:
            for _ in range(min(check, number - done)):
                call()
            done += min(check, number - done)
            if done < number and clock() > stop:
                late = True
                break
        samples.append((clock() - t0) / done)
        if late or clock() > stop:
            break
    return Stats(samples=samples, number=number)


def geomean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if x > 0 and math.isfinite(x)]
    if not xs:
        return float("nan")
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def format_time(seconds: float) -> str:
    """3 significant digits with a unit: 812 ns, 4.21 us, 13.0 ms, 2.50 s."""
    if not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            v = seconds / scale
            return f"{v:.3g} {unit}"
    return f"{seconds:.3g} s"  # pragma: no cover
