"""The latency predictor's error: the zoo's EMO variants, the EMO-5M ablations and random valid points of a
sweep spec, predicted from block tables and measured whole, per backend and prediction method.

    python benchmarks/predictor_error.py [--backends torch,onnxruntime,openvino,executorch,litert] [--random 20]
        [--spec examples/sweep_emo1m.toml] [--threads 2] [--rounds 10] [--min-time 0.05] [--store PATH] [--repeat]
        [--methods isolated,calibrated] [--json PATH]

Per backend, every table row both methods need and every whole network (in the formulation its prediction
uses) are timed in ONE worker's interleaved passes (``emobench predict --measure``), so a prediction and the
measurement it is judged against come from the same passes and the host's drift hits both alike. Prints one row
per network, backend and method and, per backend and method, how many predictions are within 10 % (goal: 90 %),
the median |error| and the bias. ``--repeat`` runs the whole measurement a second time and says how far the
whole networks' medians moved between the two runs and how far each prediction's error moved: the host's own
noise, which no predictor can beat. Tables go to the store (default: a fresh temporary one).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

VARIANTS = ["emo_1m", "emo_2m", "emo_5m", "emo_6m"]
ABLATIONS = ["emo_5m_contiguous", "emo_5m_post", "emo_5m_parallel", "emo_5m_no_attn", "emo_5m_no_dw", "emo_5m_plain"]


def sampled_points(spec_path: str, count: int) -> list[str]:
    """``count`` valid points of the sweep spec, in a seeded random order."""
    from emobench.runs.sweep import evaluate_point, load_spec, points

    spec, _ = load_spec(spec_path)
    out = []
    for p in random.Random(0).sample(points(spec), len(points(spec))):
        row = evaluate_point(spec.base, p, spec.size, spec.constraints)
        if row["status"] == "ok":
            out.append(row["reference"])
        if len(out) == count:
            break
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch,onnxruntime,openvino,executorch,litert")
    parser.add_argument("--random", type=int, default=20)
    parser.add_argument("--spec", default="examples/sweep_emo1m.toml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved passes")
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per module and pass")
    parser.add_argument("--store")
    parser.add_argument("--repeat", action="store_true", help="measure everything twice (the host's noise)")
    parser.add_argument("--methods", default="isolated,calibrated", help="prediction methods (emobench predict --method)")
    parser.add_argument("--json", help="also write every prediction (with its pieces) to this JSON file")
    args = parser.parse_args()

    from emobench.results.store import ResultStore
    from emobench.runs.predict import error_summary, predict, prediction_errors

    refs = VARIANTS + ABLATIONS + sampled_points(args.spec, args.random)
    methods = args.methods.split(",")
    store = Path(args.store) if args.store else Path(tempfile.mkdtemp()) / "predictor.sqlite"
    say = lambda label, done, total: print(label, flush=True)  # noqa: E731
    runs = []
    with ResultStore(store) as db:
        for backend in args.backends.split(","):
            for attempt in range(2 if args.repeat else 1):
                preds = predict(refs, [backend], args.threads, db, method=",".join(methods), rounds=args.rounds,
                                min_time=args.min_time, progress=say, measure=True)
                runs.append([{**r, "run": attempt, "piece_rows": p.rows} for r, p in zip(prediction_errors(preds), preds)])
    rows = [r for run in runs for r in run if r["run"] == 0]
    if args.json:
        Path(args.json).write_text(json.dumps([r for run in runs for r in run], indent=1))
    for r in rows:
        err = "–" if r["error"] is None else f"{r['error']:+.1%}"
        measured = "–" if r["measured_ms"] is None else f"{r['measured_ms']:.2f}"
        predicted = "–" if r["predicted_ms"] is None else f"{r['predicted_ms']:.2f}"
        print(f"{r['backend']:12} {r['method']:9} {r['form']:14} {r['model'][:60]:60} predicted {predicted:>8} ms  "
              f"measured {measured:>8} ms  error {err}{'  ' + r['note'] if r['note'] else ''}")
    for m in methods:
        for backend, s in error_summary([r for r in rows if r["method"] == m]).items():
            errs = [r["error"] for r in rows if r["method"] == m and r["backend"] == backend and r["error"] is not None]
            spreads = [r["round_spread"] for r in rows if r["method"] == m and r["backend"] == backend
                       and r["round_spread"] is not None]
            print(f"{backend} [{m}]: {s['within']} of {s['n']} within 10 % ({s['share_within'] or 0:.0%}); median "
                  f"|error| {s['median_abs_error'] or 0:.1%}; {sum(e > 0 for e in errs)} of {len(errs)} over-predicted; "
                  f"the networks' own pass-to-pass spread: median {statistics.median(spreads) if spreads else 0:.1%}")
    pair = ["isolated", "pairs"]
    if set(pair) <= set(methods):  # the two share their single-piece rows with opposite signs (pairs subtract them)
        for backend in args.backends.split(","):
            by = {}
            for r in rows:
                if r["backend"] == backend and r["method"] in pair and r["error"] is not None:
                    by.setdefault(r["model"], []).append(r["error"])
            both = [statistics.mean(e) for e in by.values() if len(e) == len(pair)]
            if both:
                print(f"{backend} [mean of isolated, pairs]: {sum(abs(e) <= 0.10 for e in both)} of {len(both)} "
                      f"within 10 %; median |error| {statistics.median(abs(e) for e in both):.1%}")
    if args.repeat:
        first = {(r["backend"], r["method"], r["model"]): r for r in rows}
        for backend in args.backends.split(","):
            for m in methods:
                again = [(first[(r["backend"], m, r["model"])], r) for run in runs for r in run
                         if r["run"] == 1 and r["backend"] == backend and r["method"] == m]
                moved = sorted(abs(b["measured_ms"] / a["measured_ms"] - 1) for a, b in again
                               if a["measured_ms"] and b["measured_ms"])
                err_moved = sorted(abs(b["error"] - a["error"]) for a, b in again
                                   if a["error"] is not None and b["error"] is not None)
                if moved and err_moved:
                    print(f"{backend} [{m}] run 2 vs run 1: whole networks moved a median {statistics.median(moved):.1%} "
                          f"(largest {moved[-1]:.1%}); errors moved a median {statistics.median(err_moved):.1%} "
                          f"(largest {err_moved[-1]:.1%})")
    print(f"store: {store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
