"""``emobench eval``: top-1/top-5 on an ImageFolder through eager torch and through every exported artifact.

Evaluation is a sweep of :func:`emobench.runs.bench.run_bench` without timing: the same exports (cached), the same
worker processes and parity check on random inputs, and then each worker classifies the decoded images at the
export's batch size. Every backend sees the same preprocessed bytes (:mod:`emobench.measure.images`), so the
figures differ only by what the runtime computes; each record also carries the top-1 agreement and the logit
cosine against eager fp32 torch on those images. Records are stored like benchmark records (no latency).
"""

from __future__ import annotations

import math

from emobench.errors import EmobenchError
from emobench.runs.bench import BenchPlan, Progress, run_bench
from emobench.results.store import BenchRecord, ResultStore


def eval_plan(model, images: str, backends: list[str], preprocess: dict | None = None, **options) -> BenchPlan:
    """A sweep that classifies ``images`` on each backend once, without timing (one round, no warm-up).
    ``preprocess`` overrides the model's preprocessing (``crop_pct``, ``interpolation``, ``mean``, ``std``; the
    last two as numbers or as comma-separated text, as the command line gives them; None values are left out)."""
    overrides = {k: _numbers(v, f"--{k}") if k in ("mean", "std") else v for k, v in (preprocess or {}).items()
                 if v is not None}
    return BenchPlan(models=[model], backends=backends, images=images, rounds=1, warmup=0, min_runs=1, min_time=0.0,
                     timed=False, preprocess=overrides, **options)


def _numbers(value, what: str) -> tuple[float, ...]:
    if isinstance(value, str):
        try:
            value = [float(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise EmobenchError(f"{what} must be comma-separated numbers, got '{value}'") from None
    values = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in values):
        raise EmobenchError(f"{what} must be finite numbers, got {','.join(map(str, values))}")
    return values


def run_eval(plan: BenchPlan, store: ResultStore | None = None, progress: Progress | None = None) -> list[BenchRecord]:
    """Run an evaluation sweep (see :func:`eval_plan`); records are stored unless ``store`` is None."""
    return run_bench(plan, store, progress)
