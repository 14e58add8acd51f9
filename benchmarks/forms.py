"""What each formulation is worth on each runtime, from one `emobench bench` run (all forms interleaved):
median latency, round-to-round spread and the ratio to the `official` formulation (the official code's
operators), and whether `--form auto`'s preference (each runtime's Backend.form_preference) picks the fastest.

    python benchmarks/forms.py [--models emo_1m,emo_5m] [--backends torch,onnxruntime,openvino,executorch,litert]
                               [--forms official,auto | official,reference,fused,...] [--rounds 3] [--min-time 1]

`--forms official,auto` measures the comparator and what `--form auto` picks, interleaved (the target check);
listing formulations measures each (what backs the preference table).

Targets (issue: latency on every runtime): `auto` ≤ 0.8 × official on ExecuTorch, LiteRT, ONNX Runtime and
OpenVINO, ≤ 0.6 × official in eager torch. Nothing is stored; the raw JSON goes to --json if given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from emobench.environment import cpu_flags, cpu_name
from emobench.runtimes.backends import BACKENDS

TARGET = {"torch": 0.6}
DEFAULT_TARGET = 0.8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="emo_1m,emo_5m")
    parser.add_argument("--backends", default="torch,onnxruntime,openvino,executorch,litert")
    parser.add_argument("--forms", default="official,auto")
    parser.add_argument("--rounds", default="3")
    parser.add_argument("--min-time", default="1")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--json", type=Path, help="also write the bench JSON here")
    args = parser.parse_args()
    exe = shutil.which("emobench")
    base = [exe] if exe else [sys.executable, "-m", "emobench.cli"]
    cmd = base + ["bench", *args.models.split(","), "-B", args.backends, "--form", args.forms, "-t", args.threads,
                  "--rounds", args.rounds, "--min-time", args.min_time, "--no-store", "-f", "json"]
    print("$ " + " ".join(cmd[1:] if exe else cmd), file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(proc.stderr)
    data = json.loads(proc.stdout)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    rows = data["rows"]
    print(f"CPU: {cpu_name()} ({', '.join(cpu_flags()) or 'no flags read'}); {args.threads} threads, "
          f"{args.rounds} rounds × {args.min_time} s per measurement, all forms interleaved in one run\n")
    print(f"{'model':8s} {'backend':12s} {'form':9s} {'median ms':>10s} {'spread':>7s} {'× official':>10s}  note")
    verdicts = []
    for model in args.models.split(","):
        for backend in args.backends.split(","):
            mine = {("auto" if r["form_requested"] == "auto" else r["form"]): r
                    for r in rows if r["model"] == model and r["backend"] == backend}
            official = mine.get("official", {}).get("median_ms")
            for form in args.forms.split(","):
                r = mine.get(form)
                if r is None or r["status"] != "ok":
                    note = "not measured" if r is None else f"{r['status']}: {r['error']}"
                    print(f"{model:8s} {backend:12s} {form:9s} {'–':>10s} {'–':>7s} {'–':>10s}  {note}")
                    continue
                ratio = f"{r['median_ms'] / official:.3f}" if official else "–"
                label = f"auto={r['form']}" if form == "auto" else form
                print(f"{model:8s} {backend:12s} {label:9s} {r['median_ms']:10.3f} {r['round_spread']:7.1%} {ratio:>10s}")
            ok = {f: r["median_ms"] for f, r in mine.items() if r["status"] == "ok" and f not in ("official", "auto")}
            if "auto" in mine and mine["auto"]["status"] == "ok":  # measured as such: the ratio is direct
                ok[mine["auto"]["form"]] = mine["auto"]["median_ms"]
            if not ok or not official:
                continue
            auto = mine["auto"]["form"] if "auto" in mine else next(
                (f for f in BACKENDS[backend].form_preference if f in ok), None)
            fastest = min(ok, key=ok.get)
            target = TARGET.get(backend, DEFAULT_TARGET)
            verdicts.append((model, backend, auto, ok.get(auto), official, fastest, target))
    print(f"\n{'model':8s} {'backend':12s} {'auto picks':10s} {'auto/official':>13s} {'target':>7s} {'met':>4s}  fastest measured")
    for model, backend, auto, ms, official, fastest, target in verdicts:
        ratio = ms / official if ms else float("nan")
        met = "yes" if ratio <= target else "NO"
        flag = "" if fastest == auto else "  ← faster than auto's pick"
        print(f"{model:8s} {backend:12s} {str(auto):10s} {ratio:13.3f} {target:7.2f} {met:>4s}  {fastest}{flag}")


if __name__ == "__main__":
    main()
