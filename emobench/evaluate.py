"""``emobench eval``: top-1/top-5 on an ImageFolder through eager torch and through every exported artifact.

Evaluation is a sweep of :func:`emobench.bench.run_bench` without timing: the same exports (cached), the same
worker processes and parity check on random inputs, and then each worker classifies the decoded images at the
export's batch size. Every backend sees the same preprocessed bytes (:mod:`emobench.measure.images`), so the
figures differ only by what the runtime computes; each record also carries the top-1 agreement and the logit
cosine against eager fp32 torch on those images. Records are stored like benchmark records (no latency).
"""

from __future__ import annotations

import pandas as pd

from .bench import BenchPlan, Progress, run_bench
from .store import BenchRecord, ResultStore

from .views import SCHEMAS

#: the schema of ``emobench eval --format json|csv`` rows
SCHEMA = SCHEMAS["eval"]

#: the machine-readable columns of ``emobench eval`` (snake_case, stable within the schema version)
COLUMNS = ["model", "backend", "form", "dtype", "batch", "threads", "resolution", "images", "images_skipped",
           "top1", "top5", "top1_agreement", "logit_cosine", "image_source", "calibration", "precision",
           "status", "error", "uuid"]

UNITS = {"images": "count", "images_skipped": "count", "top1": "fraction of images", "top5": "fraction of images",
         "top1_agreement": "fraction of images (same top-1 class as eager fp32 torch)",
         "logit_cosine": "mean cosine similarity to eager fp32 torch's logits"}


def eval_plan(model: str, images: str, backends: list[str], **options) -> BenchPlan:
    """A sweep that classifies ``images`` on each backend once, without timing (one round, no warm-up)."""
    return BenchPlan(models=[model], backends=backends, images=images, rounds=1, warmup=0, min_runs=1, min_time=0.0,
                     timed=False, **options)


def run_eval(plan: BenchPlan, store: ResultStore | None = None, progress: Progress | None = None) -> list[BenchRecord]:
    """Run an evaluation sweep (see :func:`eval_plan`); records are stored unless ``store`` is None."""
    return run_bench(plan, store, progress)


def eval_table(records: list[BenchRecord]) -> pd.DataFrame:
    """One row per backend (and form, batch, threads) under :data:`COLUMNS`."""
    df = pd.DataFrame([r.__dict__ for r in records], columns=list(BenchRecord.__dataclass_fields__))
    return df[COLUMNS].reset_index(drop=True)


def eval_frame(records: list[BenchRecord]) -> pd.DataFrame:
    """The screen table: accuracy as percentages, agreement with eager fp32 torch."""
    df = eval_table(records)
    pct = lambda col: [None if v is None or v != v else round(100 * v, 2) for v in df[col]]  # noqa: E731
    return pd.DataFrame({
        "model": df["model"], "backend": df["backend"], "form": df["form"], "dtype": df["dtype"], "images": df["images"],
        "skipped": df["images_skipped"], "top-1 %": pct("top1"), "top-5 %": pct("top5"),
        "agreement %": pct("top1_agreement"), "cosine": df["logit_cosine"], "status": df["status"], "note": df["error"],
    })
