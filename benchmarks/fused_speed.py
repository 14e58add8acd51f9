"""Eager CPU latency of the reference form vs the fused inference form (not a test; prints a table).

    python benchmarks/fused_speed.py [--models emo_1m,emo_5m] [--threads 2] [--resolution 224] [--min-time 2]

Median and IQR from torch.utils.benchmark's blocked_autorange, batch 1, fp32, inference_mode.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils import benchmark

import emobench


def measure(model: torch.nn.Module, x: torch.Tensor, threads: int, min_time: float) -> benchmark.Measurement:
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        return timer.blocked_autorange(min_run_time=min_time)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="emo_1m,emo_2m,emo_5m,emo_6m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--min-time", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch 1, {args.resolution}², fp32 eager")
    print(f"{'model':10s} {'reference ms':>14s} {'fused ms':>14s} {'speed-up':>9s} {'max |diff|':>11s}")
    for name in args.models.split(","):
        model = emobench.create_model(name).eval()
        fused = emobench.fuse(model)
        x = torch.randn(1, 3, args.resolution, args.resolution)
        with torch.inference_mode():
            diff = (model(x) - fused(x)).abs().max().item()
        ref = measure(model, x, args.threads, args.min_time)
        fast = measure(fused, x, args.threads, args.min_time)
        print(
            f"{name:10s} {ref.median * 1e3:8.2f} ±{ref.iqr * 1e3:4.2f} {fast.median * 1e3:8.2f} ±{fast.iqr * 1e3:4.2f}"
            f" {ref.median / fast.median:8.2f}x {diff:11.1e}"
        )


if __name__ == "__main__":
    main()
