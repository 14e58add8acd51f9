"""A sweep on a local two-node Ray cluster (two `ray start` processes on this machine), with the worker node
killed mid-sweep: the counts must equal a local run's and every point must be stored (and measured) once.

    python benchmarks/ray_two_nodes.py [--spec examples/sweep_emo1m.toml] [--kill-after 40]

The head node offers 1 CPU, the worker node 1 CPU; each offers one measurement slot (emobench_bench). The worker
node's processes are killed after --kill-after counted points; Ray retries its tasks on the head.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def ray_start(*args: str) -> None:
    """One node of the cluster: 1 CPU and one measurement slot."""
    subprocess.run([*RAY, "start", *args, "--num-cpus", "1", "--resources", '{"emobench_bench": 1}'],
                   check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="examples/sweep_emo1m.toml")
    parser.add_argument("--kill-after", type=int, default=40)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    port = "6390"
    os.environ["RAY_ADDRESS"] = f"127.0.0.1:{port}"
    os.environ["RAY_AUTH_MODE"] = "disabled"  # loopback only: the nodes and the driver of this machine
    started = {p.pid for p in _ray_processes()}
    ray_start("--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false")
    before = {p.pid for p in _ray_processes()}
    ray_start(f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1")
    worker_pids = {p.pid for p in _ray_processes()} - before
    try:
        local, ray_store = tmp / "local.sqlite", tmp / "ray.sqlite"
        exe = [sys.executable, "-m", "emobench.cli", "sweep", args.spec, "--no-measure", "-f", "json"]
        subprocess.run([*exe, "--store", str(local), "-o", str(tmp / "local.json")], check=True, capture_output=True)
        sweep = subprocess.Popen([*exe, "--store", str(ray_store), "--ray", "auto", "-o", str(tmp / "ray.json")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed = False
        while sweep.poll() is None:
            time.sleep(0.5)
            if not killed and _stored(ray_store) >= args.kill_after:
                for pid in worker_pids:  # the worker node's raylet and its workers
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                killed = True
                print(f"killed the worker node ({len(worker_pids)} processes) after {_stored(ray_store)} points")
        out, err = sweep.communicate()
        if sweep.returncode:
            print(err[-2000:])
            return 1
        a = json.loads((tmp / "local.json").read_text())["rows"]
        b = json.loads((tmp / "ray.json").read_text())["rows"]
        key = lambda rows: sorted((r["point"], r["params"], r["macs"], r["activations"]) for r in rows)  # noqa: E731
        import sqlite3

        rows = sqlite3.connect(ray_store).execute("SELECT point, COUNT(*) FROM sweep_points GROUP BY point").fetchall()
        print(f"points: local {len(a)}, ray {len(b)}; counts equal: {key(a) == key(b)}; stored once: "
              f"{all(n == 1 for _, n in rows)} ({len(rows) - 1} points); killed mid-sweep: {killed}")
        return 0 if key(a) == key(b) and all(n == 1 for _, n in rows) else 1
    finally:  # only the nodes this script started
        for p in _ray_processes():
            if p.pid not in started:
                try:
                    p.kill()
                except Exception:  # noqa: BLE001 - already gone
                    pass


def _ray_processes():
    import psutil

    return [p for p in psutil.process_iter(["cmdline"]) if any("ray" in c for c in (p.info["cmdline"] or []))]


def _stored(path: Path) -> int:
    import sqlite3

    if not path.exists():
        return 0
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute(
            "SELECT COUNT(*) FROM sweep_points WHERE point != '__spec__'").fetchone()[0]
    except sqlite3.Error:
        return 0


if __name__ == "__main__":
    sys.exit(main())
