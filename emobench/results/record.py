"""A benchmark record: one measurement with its environment, and what every reader derives from records (the
typed table with its schema and units, ratios to eager torch, the official form and fp32). The one place the
record's field names, units and JSON-valued fields are defined."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from emobench.results.query import comparable


#: environment columns ← the key of the record's ``env`` dict they are filled from
ENV_COLUMNS = {"emobench_version": "emobench", "git_revision": "git", "torch_version": "torch",
               "runtime_version": "backend_version", "cpu_model": "cpu", "cpu_cores": "cores", "cpu_flags": "cpu_flags"}


def env_columns(env: Any) -> dict[str, Any]:
    """The environment columns of a record from its ``env`` dict (``cpu_flags``: a comma list)."""
    if not isinstance(env, dict):
        return {}
    out = {}
    for column, key in ENV_COLUMNS.items():
        value = env.get(key)
        if column == "cpu_flags" and isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        if column == "cpu_cores" and not isinstance(value, int):
            value = None
        if value is not None and column != "cpu_cores":
            value = str(value)
        out[column] = value
    return out


@dataclass
class BenchRecord:
    """One measurement: a model on a backend at one batch size, thread count, resolution and dtype."""

    model: str
    backend: str
    form: str
    batch: int
    threads: int
    resolution: str
    dtype: str
    status: str  # ok | parity-failed | error | skipped
    form_requested: str | None = None  # what --form asked for (auto, or a formulation); ``form`` is what ran
    median_ms: float | None = None
    mean_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    iqr_ms: float | None = None
    cv: float | None = None
    noisy: bool | None = None
    runs: int | None = None
    throughput: float | None = None  # images / s
    parity_max_abs: float | None = None
    parity_ok: bool | None = None
    tolerance: float | None = None
    export_s: float | None = None
    artifact_bytes: int | None = None
    cached: bool | None = None
    error: str | None = None
    rounds: int | None = None  # fresh worker processes whose timings were pooled
    round_spread: float | None = None  # (max - min) / median of the per-round medians
    import_s: float | None = None  # cold start: importing the runtime
    load_s: float | None = None  # cold start: loading the artifact and creating the session
    first_ms: float | None = None  # cold start: the first inference
    rss_base_mb: float | None = None  # worker's resident memory after the imports (MiB)
    peak_rss_mb: float | None = None  # worker's peak resident memory (MiB)
    precision: str | None = None  # what the runtime reports computing in
    explain: dict[str, Any] = field(default_factory=dict)  # what the runtime ran (delegation, fallbacks, precisions)
    # accuracy on images (``emobench eval``) and int8 parity (schema 2)
    images: int | None = None  # images the figures below are over
    images_skipped: int | None = None  # unreadable image files left out
    image_source: str | None = None  # the images folder, or "random inputs"
    top1: float | None = None  # fraction of images whose label is the top-1 prediction
    top5: float | None = None  # … among the top 5
    top1_agreement: float | None = None  # fraction of images with the same top-1 class as eager fp32 torch
    logit_cosine: float | None = None  # mean cosine similarity of the logits to eager fp32 torch's
    calibration: str | None = None  # int8: what it was calibrated on ("DIR (N images)" or "random (N inputs)")
    # the host and the rounds (schema 3): the sentinel GEMM's median ms before this measurement's rounds and the
    # spread of those samples (the host's own variation), flagged beyond 10 %; the 95 % interval of the mean
    # of round medians (% of it), and why the rounds stopped (rounds, stable, max rounds, budget, failed)
    sentinel_ms: float | None = None
    sentinel_spread: float | None = None
    # the median in units of the run's sentinel (schema 6): median_ms / the median of every sentinel sample at
    # these threads in the run up to this record. A ratio measured in one run: the host's drift between
    # invocations, which moves ms and sentinel alike, largely cancels in it
    sentinel_ratio: float | None = None
    host_varied: bool | None = None
    ci_pct: float | None = None
    stop: str | None = None
    # where the time goes (``bench --breakdown``; schema 3): method (profiler, prefix) → its breakdown
    # (:mod:`emobench.analysis.breakdown`), measured after the timed rounds, never feeding the headline
    breakdown: dict[str, Any] = field(default_factory=dict)
    # the runtime's own benchmark tool on the same artifact (``bench --crosscheck``; schema 3)
    crosscheck: dict[str, Any] = field(default_factory=dict)
    # the cost of a training step (``emobench train-cost``; schema 4): the whole emobench.train/1 document
    train: dict[str, Any] = field(default_factory=dict)
    machine: str = ""
    env: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    # the environment as columns (filters and compare use them); filled from ``env`` when not given
    emobench_version: str | None = None
    git_revision: str | None = None
    torch_version: str | None = None
    runtime_version: str | None = None  # the backend's runtime (onnxruntime, openvino, … or torch itself)
    cpu_model: str | None = None
    cpu_cores: int | None = None
    cpu_flags: str | None = None  # comma list of ISA features (avx512f, amx_bf16, asimd = NEON, …)

    def __post_init__(self) -> None:
        for column, value in env_columns(self.env).items():
            if getattr(self, column) is None:
                setattr(self, column, value)


#: fields holding JSON objects: stored as JSON text, written to CSV as JSON text
JSON_FIELDS = ("env", "params", "explain", "breakdown", "crosscheck", "train")


def flat(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its JSON-valued fields as JSON text (CSV cells hold text)."""
    return df.assign(**{k: [json.dumps(v, sort_keys=True) for v in df[k]] for k in JSON_FIELDS if k in df})


def records_writer(name: str):
    """The function turning stored records into the text of the file ``name``: ``.json`` (a list of objects; NaN
    as null) or ``.csv`` (JSON fields as JSON text), every field kept. Anything else is refused at once."""
    from emobench.errors import EmobenchError

    suffix = Path(name).suffix.lower()
    if suffix == ".json":
        return lambda df: json.dumps(json.loads(df.to_json(orient="records")), indent=2) + "\n"
    if suffix == ".csv":
        return lambda df: flat(df).to_csv(index=False)
    raise EmobenchError(f"export writes .csv or .json, got '{Path(name).name}'")


def failed(records: list[BenchRecord]) -> list[BenchRecord]:
    """The records that make ``emobench bench`` exit 1: a measurement that errored or failed parity."""
    return [r for r in records if r.status in ("error", "parity-failed")]


#: the schema of ``emobench bench --format json|csv`` rows: every :class:`BenchRecord` field plus the ratios
SCHEMA = "emobench.bench/1"


def _records_df(records: list[BenchRecord] | pd.DataFrame) -> pd.DataFrame:
    df = records if isinstance(records, pd.DataFrame) else pd.DataFrame([r.__dict__ for r in records])
    for col in BenchRecord.__dataclass_fields__:
        if col not in df:
            df[col] = None
    return df.assign(form_requested=df["form_requested"].fillna(df["form"]))  # records from before formulations


def _ratio(df: pd.DataFrame, reference: pd.DataFrame, keys: list[str]) -> list[float | None]:
    base = comparable(reference, keys).set_index(keys)["median_ms"]
    return [
        (r.median_ms / base.get(tuple(r[k] for k in keys))) if r.status == "ok" and tuple(r[k] for k in keys) in base.index else None
        for _, r in df.iterrows()
    ]


def _fp32_ratios(df: pd.DataFrame, history: pd.DataFrame | None) -> dict[str, list]:
    """``ratio_to_fp32`` (latency) and ``size_ratio_to_fp32`` (artifact bytes) of non-fp32 records against the
    newest measured fp32 record of the same model, backend, form, batch, threads, resolution and machine,
    among these records and ``history`` (the store)."""
    keys = ["model", "backend", "form", "batch", "threads", "resolution", "machine"]
    pool = df if history is None or history.empty else pd.concat([_records_df(history), df], ignore_index=True)
    base = comparable(pool[pool["dtype"] == "fp32"], keys).set_index(keys)
    latency, size = [], []
    for _, r in df.iterrows():
        key = tuple(r[k] for k in keys)
        found = r["dtype"] != "fp32" and key in base.index
        row = base.loc[key] if found else None
        latency.append(r["median_ms"] / row["median_ms"] if found and r["status"] == "ok" and pd.notna(r["median_ms"]) else None)
        size.append(r["artifact_bytes"] / row["artifact_bytes"] if found and pd.notna(r["artifact_bytes"])
                    and pd.notna(row["artifact_bytes"]) and row["artifact_bytes"] else None)
    return {"ratio_to_fp32": latency, "size_ratio_to_fp32": size}


def records_table(records: list[BenchRecord] | pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every record field under its own (snake_case) name, plus ``ratio_to_torch`` (eager torch at the same
    model, requested form, batch, threads, resolution, dtype and machine) and ``ratio_to_official`` (the
    ``official`` formulation on the same backend and conditions), both None where no such record exists, and
    for int8 (any non-fp32 dtype) records ``ratio_to_fp32`` / ``size_ratio_to_fp32`` against the fp32 record of
    the same measurement, found among ``records`` and ``history`` (the stored records)."""
    df = _records_df(records)
    if df.empty:
        return pd.DataFrame(columns=[*BenchRecord.__dataclass_fields__, "ratio_to_torch", "ratio_to_official",
                                     "ratio_to_fp32", "size_ratio_to_fp32"])
    common = ["model", "batch", "threads", "resolution", "dtype", "machine"]
    return df.assign(ratio_to_torch=_ratio(df, df[df["backend"] == "torch"], ["form_requested", *common]),
                     ratio_to_official=_ratio(df, df[df["form"] == "official"], ["backend", *common]),
                     **_fp32_ratios(df, history))


#: units of the machine-readable columns
UNITS = {"median_ms": "ms", "mean_ms": "ms", "p10_ms": "ms", "p90_ms": "ms", "iqr_ms": "ms", "throughput": "images/s",
         "artifact_bytes": "bytes", "export_s": "s", "import_s": "s", "load_s": "s", "first_ms": "ms",
         "rss_base_mb": "MiB", "peak_rss_mb": "MiB", "round_spread": "(max - min) / median of the per-round medians",
         "cv": "standard deviation / mean", "created": "s since the Unix epoch", "images": "count",
         "images_skipped": "count", "top1": "fraction of images", "top5": "fraction of images",
         "top1_agreement": "fraction of images (same top-1 class as eager fp32 torch)",
         "logit_cosine": "mean cosine similarity to eager fp32 torch's logits",
         "ratio_to_fp32": "median_ms / the fp32 record's", "size_ratio_to_fp32": "artifact_bytes / the fp32 record's",
         "sentinel_ms": "ms (median of a 256x256 fp32 GEMM at the measurement's threads before each round)",
         "sentinel_spread": "(max - min) / median of the sentinel samples",
         "sentinel_ratio": "median_ms / the run's sentinel ms (its samples at these threads, every measurement so far)",
         "ci_pct": "% of the mean of round medians"}




#: the schema of ``emobench eval --format json|csv`` rows
EVAL_SCHEMA = "emobench.eval/1"

#: the machine-readable columns of ``emobench eval`` (snake_case, stable within the schema version)
EVAL_COLUMNS = ["model", "backend", "form", "dtype", "batch", "threads", "resolution", "images", "images_skipped",
                "top1", "top5", "top1_agreement", "logit_cosine", "image_source", "calibration", "precision",
                "status", "error", "uuid"]
EVAL_UNITS = {k: UNITS[k] for k in EVAL_COLUMNS if k in UNITS}


def eval_table(records: list[BenchRecord]) -> pd.DataFrame:
    """One row per backend (and form, batch, threads) under :data:`EVAL_COLUMNS`."""
    df = pd.DataFrame([r.__dict__ for r in records], columns=list(BenchRecord.__dataclass_fields__))
    return df[EVAL_COLUMNS].reset_index(drop=True)
