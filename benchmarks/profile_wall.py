"""Wall time of `emobench profile MODEL --counts-only` as a whole process (import included); goal ≤ 10 s.

    python benchmarks/profile_wall.py [--model emo_5m] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="emo_5m")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    exe = shutil.which("emobench")
    cmd = [exe] if exe else [sys.executable, "-m", "emobench.cli"]
    cmd += ["profile", args.model, "--counts-only", "--format", "json"]
    walls = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
    print(f"{' '.join(cmd[-5:])}: median {statistics.median(walls):.2f} s, min {min(walls):.2f} s, "
          f"max {max(walls):.2f} s over {args.runs} runs (goal ≤ 10 s)")


if __name__ == "__main__":
    main()
