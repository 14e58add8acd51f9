"""Counting speed of a sweep against `emobench profile --counts-only`, and the counts compared on sampled points.

    python benchmarks/sweep_counting.py [--spec examples/sweep_emo1m.toml] [--samples 3]

Runs `emobench sweep SPEC --no-measure` into a fresh store (wall time, points/s), then `emobench profile REF
--counts-only -f json` on sampled points (wall time each) and checks params, MACs and activations are equal.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="examples/sweep_emo1m.toml")
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    exe = [sys.executable, "-m", "emobench.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        store, out = Path(tmp) / "s.sqlite", Path(tmp) / "sweep.json"
        wall, _ = timed([*exe, "sweep", args.spec, "--no-measure", "--store", str(store), "-o", str(out)])
        doc = json.loads(out.read_text())
    meta, rows = doc["meta"], doc["rows"]
    print(f"sweep: {meta['points']} points ({meta['ok']} ok, {meta['invalid']} invalid, {meta['over_budget']} over "
          f"budget) in {wall:.1f} s wall ({meta['count_s']:.1f} s counting): {meta['points'] / wall:.2f} points/s")
    ok = [r for r in rows if r["status"] == "ok"]
    per_point = []
    for row in random.Random(0).sample(ok, min(args.samples, len(ok))):
        seconds, text = timed([*exe, "profile", row["reference"], "--counts-only", "-f", "json", "-d", "0"])
        per_point.append(seconds)
        m = json.loads(text)["profiles"][0]["metrics"]
        same = (m["params"]["value"], m["macs"]["value"], m["activations"]["value"]) == (
            row["params"], row["macs"], row["activations"])
        print(f"  {row['point']}: profile --counts-only {seconds:.1f} s; counts {'equal' if same else 'DIFFER'}")
        if not same:
            return 1
    if per_point:
        rate = 1 / statistics.median(per_point)
        print(f"profile --counts-only: {rate:.3f} points/s (median of {len(per_point)}); sweep / profile = "
              f"{meta['points'] / wall / rate:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
