"""The latency predictor's error: the zoo's EMO variants, the EMO-5M ablations and random valid points of a
sweep spec, predicted from block tables and measured whole (same formulation, same session), per backend.

    python benchmarks/predictor_error.py [--backends torch,onnxruntime,openvino] [--random 10]
        [--spec examples/sweep_emo1m.toml] [--threads 2] [--store PATH] [--repeat]

Tables and networks go to the store (default: a fresh temporary one). Prints one row per network and backend
and, per backend, how many predictions are within 10 % (goal: 90 %). ``--repeat`` measures every whole network
a second time after the first pass and says how many of the two measurements agree within 10 % of each other:
the ceiling the host's noise puts on any predictor.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

VARIANTS = ["emo_1m", "emo_2m", "emo_5m", "emo_6m"]
ABLATIONS = ["emo_5m_contiguous", "emo_5m_post", "emo_5m_parallel", "emo_5m_no_attn", "emo_5m_no_dw", "emo_5m_plain"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch,onnxruntime,openvino")
    parser.add_argument("--random", type=int, default=10)
    parser.add_argument("--spec", default="examples/sweep_emo1m.toml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store")
    parser.add_argument("--repeat", action="store_true", help="measure the whole networks twice (the noise ceiling)")
    parser.add_argument("--reuse-measured", action="store_true",
                        help="take the whole networks' medians already in --store (same machine, form, threads)")
    args = parser.parse_args()

    from emobench.results.store import ResultStore
    from emobench.runs.bench import BenchPlan, run_bench
    from emobench.runs.predict import error_summary, predict, prediction_errors
    from emobench.runs.sweep import evaluate_point, load_spec, points

    spec, _ = load_spec(args.spec)
    sampled = []
    for p in random.Random(0).sample(points(spec), len(points(spec))):
        row = evaluate_point(spec.base, p, spec.size, spec.constraints)
        if row["status"] == "ok":
            sampled.append(row["reference"])
        if len(sampled) == args.random:
            break
    refs = VARIANTS + ABLATIONS + sampled
    backends = args.backends.split(",")
    store = Path(args.store) if args.store else Path(tempfile.mkdtemp()) / "predictor.sqlite"
    rows, repeats = [], []
    with ResultStore(store) as db:
        preds = predict(refs, backends, args.threads, db, progress=lambda label, done, total: print(label, flush=True))
        stored = _stored_wholes(db, args.threads) if args.reuse_measured else []
        for backend in backends:  # whole networks, each in the formulation its prediction used
            mine = [p for p in preds if p.backend == backend]
            for form in sorted({p.form for p in mine}):
                todo = [p for p in mine if p.form == form]
                have = {(r.model, r.backend, r.form) for r in stored}
                missing = [p.model for p in todo if (p.model, backend, form) not in have]
                records = list(stored)
                plan = BenchPlan(models=missing, backends=[backend], forms=[form], threads=[args.threads],
                                 rounds=args.rounds)
                if missing:
                    records += run_bench(plan, db)
                rows += prediction_errors(todo, records)
                if args.repeat and missing:  # the same networks again, after the whole first pass
                    again = {(r.model, r.form): r for r in run_bench(plan, db) if r.status == "ok"}
                    repeats += [{"backend": backend, "model": r.model, "first": r.median_ms,
                                 "again": again[(r.model, r.form)].median_ms} for r in records
                                if r.status == "ok" and (r.model, r.form) in again]
    for r in rows:
        err = "–" if r["error"] is None else f"{r['error']:+.1%}"
        measured = "–" if r["measured_ms"] is None else f"{r['measured_ms']:.2f}"
        predicted = "–" if r["predicted_ms"] is None else f"{r['predicted_ms']:.2f}"
        print(f"{r['backend']:12} {r['form']:14} {r['model'][:60]:60} predicted {predicted:>8} ms  "
              f"measured {measured:>8} ms  error {err}{'  ' + r['note'] if r['note'] else ''}")
    for backend, s in error_summary(rows).items():
        share = "–" if s["share_within"] is None else f"{s['share_within']:.0%}"
        mae = "–" if s["median_abs_error"] is None else f"{s['median_abs_error']:.1%}"
        print(f"{backend}: {s['within']} of {s['n']} within 10 % ({share}); median |error| {mae}")
    for backend in dict.fromkeys(r["backend"] for r in repeats):
        mine = [r for r in repeats if r["backend"] == backend]
        diffs = sorted(abs(r["again"] / r["first"] - 1) for r in mine)
        print(f"{backend}: a whole network measured again agrees within 10 % for {sum(d <= 0.10 for d in diffs)} of "
              f"{len(diffs)} (median |difference| {diffs[len(diffs) // 2]:.1%}, largest {diffs[-1]:.1%})")
    print(f"store: {store}")
    return 0


def _stored_wholes(db, threads: int) -> list:
    """The newest ok whole-network records of the store at ``threads`` (the table rows are ``piece:…``)."""
    from types import SimpleNamespace

    from emobench.results.query import comparable

    df = db.records()
    df = df[~df["model"].astype(str).str.startswith("piece:") & (df["threads"].astype(str) == str(threads))]
    return [SimpleNamespace(**row) for row in comparable(df).to_dict("records")]


if __name__ == "__main__":
    sys.exit(main())
