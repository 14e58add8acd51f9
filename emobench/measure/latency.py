"""A quick eager latency figure (``emobench profile``); the full methodology lives in ``emobench bench``."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from torch import nn

from emobench.environment import torch_threads
from emobench.measure.timing import time_calls


@dataclass(frozen=True)
class QuickTiming:
    median_s: float
    iqr_s: float
    runs: int
    threads: int
    device: str
    warmup: int
    min_time: float


def quick_latency(model: nn.Module, x: torch.Tensor, threads: int | None = None, min_time: float = 0.2,
                  warmup: int = 1, min_runs: int = 5) -> QuickTiming:
    """Median and IQR of ``model(x)`` timed by bench's own loop (:func:`~emobench.measure.timing.time_calls`) for
    ``min_time`` seconds and at least ``min_runs`` calls after ``warmup`` (CUDA: synchronised), in ``threads``
    (the caller's setting is restored)."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else None
    with torch_threads(threads) as threads, torch.inference_mode():
        times = time_calls(lambda: model(x), warmup=warmup, min_time=min_time, min_runs=min_runs, sync=sync)
    q1, _, q3 = statistics.quantiles(times, n=4)
    return QuickTiming(statistics.median(times), q3 - q1, len(times), threads, x.device.type, warmup, min_time)
