"""Wall time of `emobench profile MODEL` as a whole process (imports included), optionally against a comparator
tree (an older checkout), the two interleaved in one session so the ratio is from one run.

    python benchmarks/profile_wall.py [--model emo_5m] [--runs 7] [--counts-only] [--against PATH] [--empty-cache]

--against PATH runs the same command from another emobench source tree (e.g. `git worktree add /tmp/old
<commit>`; it must import with this environment's packages) by putting PATH first on PYTHONPATH.
--empty-cache gives every timed run an empty cache folder (EMOBENCH_CACHE): the first profile on a machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


#: emobench's command line from a given source tree: an editable install's import hook would otherwise win
LAUNCH = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
tree, sys.argv = sys.argv[1], sys.argv[2:]
sys.path.insert(0, tree)
import importlib
cli = importlib.import_module("emobench.cli.app")
getattr(cli, "run", cli.main)()  # run: the console entry point (older trees: main)
"""


def wall(cmd: list[str], empty_cache: bool = False) -> float:
    """Seconds ``cmd`` takes as a process, optionally with an empty cache folder of its own."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, **({"EMOBENCH_CACHE": cache} if empty_cache else {})}
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        return time.perf_counter() - start


def summary(name: str, walls: list[float]) -> str:
    med = statistics.median(walls)
    return f"{name}: median {med:.2f} s (min {min(walls):.2f}, max {max(walls):.2f}, spread {(max(walls) - min(walls)) / med:.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="emo_5m")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--counts-only", action="store_true")
    parser.add_argument("--against", help="another emobench source tree to time interleaved with this one")
    parser.add_argument("--empty-cache", action="store_true", help="every timed run starts with an empty cache")
    args = parser.parse_args()
    argv = ["emobench", "profile", args.model, *(["--counts-only"] if args.counts_only else [])]
    print(f"{' '.join(argv)}: {args.runs} runs per tree, interleaved{', each with an empty cache' if args.empty_cache else ''}")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"this tree": here, **({"comparator": os.path.abspath(args.against)} if args.against else {})}
    cmds = {name: [sys.executable, "-c", LAUNCH, tree, *argv] for name, tree in trees.items()}
    for cmd in cmds.values():  # untimed: bytecode compiled, caches filled, for both alike
        wall(cmd)
    walls: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, cmd in cmds.items():
            walls[name].append(wall(cmd, args.empty_cache))
    for name, values in walls.items():
        print(summary(f"{' '.join(argv)} [{name}]", values))
    if args.against:
        ratios = [a / b for a, b in zip(walls["this tree"], walls["comparator"])]
        print(f"this / comparator: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")


if __name__ == "__main__":
    main()
