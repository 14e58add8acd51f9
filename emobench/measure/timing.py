"""Timing methodology: warm-up, then timed calls until both a minimum duration and a minimum count are reached;
summarised as median, p10/p90, IQR and coefficient of variation, with a noise flag."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

#: A run whose coefficient of variation exceeds this is flagged noisy.
NOISY_CV = 0.10


@dataclass(frozen=True)
class TimingStats:
    runs: int
    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    min_ms: float
    max_ms: float
    cv: float
    noisy: bool


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(seconds: Sequence[float], noisy_cv: float = NOISY_CV) -> TimingStats:
    """Statistics of per-call times given in seconds; reported in milliseconds."""
    if not seconds:
        raise ValueError("no timings to summarise")
    ms = sorted(s * 1e3 for s in seconds)
    mean = statistics.fmean(ms)
    cv = statistics.stdev(ms) / mean if len(ms) > 1 and mean > 0 else 0.0
    return TimingStats(
        runs=len(ms),
        median_ms=statistics.median(ms),
        mean_ms=mean,
        p10_ms=percentile(ms, 10),
        p90_ms=percentile(ms, 90),
        iqr_ms=percentile(ms, 75) - percentile(ms, 25),
        min_ms=ms[0],
        max_ms=ms[-1],
        cv=cv,
        noisy=cv > noisy_cv,
    )


def time_calls(
    call: Callable[[], object],
    warmup: int = 5,
    min_time: float = 1.0,
    min_runs: int = 20,
    max_runs: int = 100_000,
    sync: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    measure: Callable[[Callable[[], object]], float] | None = None,
) -> list[float]:
    """Per-call wall times (s) of ``call`` after ``warmup`` calls, until ``min_time`` seconds and ``min_runs`` calls
    have both passed (or ``max_runs``). ``sync`` (e.g. ``torch.cuda.synchronize``) runs after each call, inside
    the timed span, so asynchronous devices are timed to completion. ``measure`` replaces the host clock for
    each call's duration (CUDA events); the loop's budget still runs on ``clock``."""
    if warmup < 0 or min_runs < 1 or min_time < 0:
        raise ValueError("warmup >= 0, min_runs >= 1 and min_time >= 0 are required")
    for _ in range(warmup):
        call()
    if sync:
        sync()
    times: list[float] = []
    start = clock()
    while len(times) < max_runs and (len(times) < min_runs or clock() - start < min_time):
        if measure is not None:
            times.append(measure(call))
            continue
        t0 = clock()
        call()
        if sync:
            sync()
        times.append(clock() - t0)
    return times


def relative_range(values: Sequence[float]) -> float | None:
    """(max − min) / median: how far apart rounds (or sentinel samples, or a vendor tool's runs) landed; None
    with fewer than two values or a median that is not positive."""
    if len(values) < 2:
        return None
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle > 0 else None


#: Student's t, two-sided 95 % (0.975 quantile), for 1 … 30 degrees of freedom; the normal 1.96 beyond
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def relative_ci(round_medians: Sequence[float]) -> float | None:
    """Half-width of the 95 % confidence interval of the mean of per-round medians (Student's t: rounds are
    independent processes, each median one sample), relative to that mean; None with fewer than two rounds.
    ``--until-stable`` adds rounds until this is within its target (pyperf's and MLPerf's habit)."""
    n = len(round_medians)
    if n < 2:
        return None
    mean = statistics.fmean(round_medians)
    if mean <= 0:
        return None
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return t * statistics.stdev(round_medians) / math.sqrt(n) / mean
