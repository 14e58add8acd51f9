"""A quick eager latency figure (``emobench profile``); the full methodology lives in ``emobench bench``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils import benchmark


@dataclass(frozen=True)
class QuickTiming:
    median_s: float
    iqr_s: float
    runs: int
    threads: int
    device: str


def quick_latency(model: nn.Module, x: torch.Tensor, threads: int | None = None, min_run_time: float = 0.5) -> QuickTiming:
    """Median of ``torch.utils.benchmark``'s ``blocked_autorange`` after 3 warm-up calls (CUDA: synchronised)."""
    threads = threads or torch.get_num_threads()
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        m = timer.blocked_autorange(min_run_time=min_run_time)
    return QuickTiming(m.median, m.iqr, len(m.times) * m.number_per_run, threads, x.device.type)
