"""A fixed workload timed between measurements, so that each run records how much the host itself varied.

On a shared host the same network measured twice can differ by 10 % because the machine did, not the code.
The sentinel is an fp32 GEMM of a fixed size at the measurement's thread count, timed for a fixed short span
before every measurement worker starts: its medians over a run vary only with the host (frequency, steal, cache
pressure from neighbours). It runs at the measurement's threads because a host can slow one of its cores only:
on this kind of machine three `bench emo_1m -t 2` invocations saw ONNX Runtime, ExecuTorch and LiteRT run 1.7–2×
slower, every round alike, through a whole invocation while a one-thread GEMM stayed within 1 %. A measurement
whose sentinel samples spread beyond :data:`HOST_VARIED` is flagged."""

from __future__ import annotations

import statistics

import torch

from emobench.environment import torch_threads
from emobench.measure.timing import time_calls

#: the GEMM: SIZE×SIZE by SIZE×SIZE, fp32 (2·SIZE³ = 33.6 MFLOP)
SIZE = 256
#: a measurement is flagged when the sentinel samples beside its rounds spread by more than this fraction
HOST_VARIED = 0.10


def sample(min_time: float = 0.05, threads: int = 1) -> float:
    """The sentinel's median ms per GEMM now, in ``threads`` threads (the caller's setting is restored)."""
    a = torch.randn(SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    b = torch.randn(SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch_threads(threads), torch.inference_mode():
        return statistics.median(time_calls(lambda: torch.mm(a, b), warmup=3, min_time=min_time, min_runs=10)) * 1e3
