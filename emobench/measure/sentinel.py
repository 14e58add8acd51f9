"""A fixed workload timed between measurements, so that each run records how much the host itself varied.

On a shared host the same network measured twice can differ by 10 % because the machine did, not the code.
The sentinel is one-thread fp32 GEMM of a fixed size (no thread pool left spinning for the next worker),
timed for a fixed short span before every measurement worker starts: its medians over a run vary only with
the host (frequency, steal, cache pressure from neighbours). A measurement whose sentinel samples spread beyond
:data:`HOST_VARIED` is flagged."""

from __future__ import annotations

import statistics

import torch

from emobench.measure.timing import time_calls

#: the GEMM: SIZE×SIZE by SIZE×SIZE, fp32, one thread (2·SIZE³ = 33.6 MFLOP)
SIZE = 256
#: a measurement is flagged when the sentinel samples beside its rounds spread by more than this fraction
HOST_VARIED = 0.10


def sample(min_time: float = 0.05) -> float:
    """The sentinel's median ms per GEMM now (one thread; the caller's thread setting is restored)."""
    threads = torch.get_num_threads()
    a = torch.randn(SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    b = torch.randn(SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            return statistics.median(time_calls(lambda: torch.mm(a, b), warmup=3, min_time=min_time, min_runs=10)) * 1e3
    finally:
        torch.set_num_threads(threads)
