"""Repeatability of whole `emobench bench` invocations: the same command run N times, per backend the spread
(max − min) / median of the per-invocation medians (goal ≤ 5 % on a quiet machine), and the ratio to eager torch.

    python benchmarks/backend_latency.py [--models emo_1m] [--backends torch,onnxruntime,...] [--invocations 3]
                                         [--rounds 3] [--min-time 1] [--form auto]

Each invocation is a separate process (exports come from the cache after the first). Nothing is stored.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict

CPU = "torch,onnxruntime,openvino,executorch,litert"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="emo_1m")
    parser.add_argument("--backends", default=CPU)
    parser.add_argument("--invocations", type=int, default=3)
    parser.add_argument("--rounds", default="3")
    parser.add_argument("--min-time", default="1")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--form", default="auto")
    args = parser.parse_args()
    exe = shutil.which("emobench")
    base = [exe] if exe else [sys.executable, "-m", "emobench.cli"]
    cmd = base + ["bench", *args.models.split(","), "-B", args.backends, "-t", args.threads,
                  "--min-time", args.min_time, "--rounds", args.rounds, "--form", args.form, "--no-store", "-f", "json"]
    medians: dict[tuple[str, str], list[float]] = defaultdict(list)
    notes: dict[tuple[str, str], str] = {}
    for i in range(args.invocations):
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        for row in json.loads(out)["rows"]:
            key = (row["model"], row["backend"])
            if row["status"] == "ok":
                medians[key].append(row["median_ms"])
            else:
                notes[key] = f"{row['status']}: {row['error']}"
        print(f"invocation {i + 1}/{args.invocations} done", file=sys.stderr)
    print(f"{'model':8s} {'backend':14s} {'median ms':>10s} {'× eager':>8s} {'spread':>8s}  per-invocation medians (ms)")
    for model in args.models.split(","):
        eager = statistics.median(medians[(model, "torch")]) if medians.get((model, "torch")) else None
        for backend in args.backends.split(","):
            runs = medians.get((model, backend))
            if not runs:
                print(f"{model:8s} {backend:14s} {'–':>10s} {'–':>8s} {'–':>8s}  {notes.get((model, backend), 'no result')}")
                continue
            med = statistics.median(runs)
            spread = (max(runs) - min(runs)) / med
            ratio = f"{med / eager:.2f}" if eager else "–"
            print(f"{model:8s} {backend:14s} {med:10.2f} {ratio:>8s} {spread:8.1%}  {', '.join(f'{r:.2f}' for r in runs)}")


if __name__ == "__main__":
    main()
