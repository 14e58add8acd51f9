"""``emobench bench``: latency and throughput of zoo models on every installed backend, one methodology.

Every measurement is checked first: the backend's output on the benchmark input is compared with eager fp32
torch on the reference form, and a backend that computes something else is recorded as ``parity-failed``
without a latency. Every record goes to the results store with its environment.
"""

from __future__ import annotations

import copy
import hashlib
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
import torch

from . import __version__
from .errors import EmobenchError
from .measure.backends import BACKENDS, TOLERANCE, Backend, cuda_event_seconds, weights_fingerprint
from .measure.timing import NOISY_CV, summarize, time_calls
from .models import create_model, input_shape
from .nn import fuse
from .nn.fused import has_fused_form
from .environment import cpu_name
from .environment import environment as machine_environment
from .store import BenchRecord, ResultStore, newest
from .zoo import get_entry


@dataclass
class BenchPlan:
    models: list[str]
    backends: list[str] = field(default_factory=lambda: ["torch"])
    batches: list[int] = field(default_factory=lambda: [1])
    threads: list[int] = field(default_factory=lambda: [torch.get_num_threads()])
    resolution: tuple[int, int] | None = None
    dtype: str = "fp32"
    form: str = "fused"
    warmup: int = 5
    min_time: float = 2.0
    min_runs: int = 20
    tolerance: float | None = None
    noisy_cv: float = NOISY_CV
    checkpoint: str | None = None

    def validate(self) -> None:
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise EmobenchError(f"unknown backend {', '.join(unknown)} (known: {', '.join(BACKENDS)}, or all)")
        if any(b < 1 for b in self.batches):
            raise EmobenchError(f"batch sizes must be >= 1, got {self.batches}")
        if any(t < 1 for t in self.threads):
            raise EmobenchError(f"thread counts must be >= 1, got {self.threads}")
        if self.dtype not in TOLERANCE:
            raise EmobenchError(f"unknown dtype '{self.dtype}' (choose {', '.join(TOLERANCE)})")
        if self.form not in ("fused", "reference"):
            raise EmobenchError(f"unknown form '{self.form}' (choose fused or reference)")
        if self.warmup < 0 or self.min_runs < 1 or self.min_time < 0:
            raise EmobenchError("warmup >= 0, min-runs >= 1 and min-time >= 0 are required")
        for name in self.models:
            get_entry(name)

    @property
    def size(self) -> int:
        return len(self.models) * len(self.backends) * len(self.batches) * len(self.threads)


def parse_backends(spec: str) -> list[str]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if names == ["all"]:
        return list(BACKENDS)
    return names


def parse_ints(spec: str, what: str) -> list[int]:
    try:
        values = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise EmobenchError(f"{what} must be comma-separated integers, got '{spec}'") from None
    if not values or min(values) < 1:
        raise EmobenchError(f"{what} must be >= 1, got '{spec}'")
    return values


def environment(backend: Backend, threads: int) -> dict:
    return {**machine_environment(threads, cuda=backend.device == "cuda"), "backend": backend.name, "backend_version": backend.version()}


def _artifact_key(entry, form: str, shape, backend: Backend, fingerprint: str) -> str:
    ident = {
        "model": entry.name, "family": entry.family, "config": entry.raw_config, "form": form, "shape": list(shape),
        "backend": backend.name, "backend_version": backend.version(), "torch": torch.__version__,
        "emobench": __version__, "weights": fingerprint,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def run_bench(
    plan: BenchPlan,
    store: ResultStore | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[BenchRecord]:
    """Run the sweep; returns every record (skipped and failed ones included) and stores the measured ones."""
    plan.validate()
    records: list[BenchRecord] = []
    tolerance = plan.tolerance if plan.tolerance is not None else TOLERANCE[plan.dtype]
    step = progress or (lambda label: None)

    def record(**kw) -> BenchRecord:
        rec = BenchRecord(created=time.time(), machine=f"{socket.gethostname()} ({cpu_name()})", **kw)
        records.append(rec)
        if store is not None and rec.status != "skipped":
            store.add(rec)
        return rec

    for name in plan.models:
        entry = get_entry(name)
        with torch.random.fork_rng():  # deterministic weights (cached exports stay valid), caller's RNG untouched
            torch.manual_seed(0)
            reference = create_model(name, checkpoint=plan.checkpoint).eval()
        # Families without a fused form are measured in their reference form (and recorded so).
        form = plan.form if plan.form == "reference" or has_fused_form(reference) else "reference"
        model = fuse(reference) if form == "fused" else reference
        fingerprint = weights_fingerprint(reference)
        for backend_name in plan.backends:
            backend = BACKENDS[backend_name]
            reason = backend.unavailable() or (
                None if plan.dtype in backend.dtypes else f"{backend.name} runs {', '.join(backend.dtypes)} only"
            )
            for batch in plan.batches:
                shape = input_shape(entry, plan.resolution, batch)
                common = dict(
                    model=name, backend=backend.name, form=form, batch=batch, resolution=f"{shape[2]}x{shape[3]}",
                    dtype=plan.dtype, tolerance=tolerance,
                    params={"warmup": plan.warmup, "min_time": plan.min_time, "min_runs": plan.min_runs,
                            "input_shape": list(shape), "checkpoint": plan.checkpoint, "noisy_cv": plan.noisy_cv},
                )
                if reason:
                    for threads in plan.threads:
                        step(f"{name} {backend.name}: skipped")
                        record(threads=threads, status="skipped", error=reason, env=environment(backend, threads), **common)
                    continue
                x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
                with torch.inference_mode():
                    expected = reference(x)
                step(f"{name} {backend.name} b{batch}: exporting")
                try:
                    # A private copy: some converters leave state on the module they convert.
                    artifact = backend.prepare(
                        copy.deepcopy(model), x.to(backend.device), _artifact_key(entry, form, shape, backend, fingerprint)
                    )
                except Exception as err:  # noqa: BLE001 - an export failure is a result, not a crash
                    for threads in plan.threads:
                        record(threads=threads, status="error", error=f"export: {_first_line(err)}", env=environment(backend, threads), **common)
                        step(f"{name} {backend.name}: export failed")
                    continue
                for threads in plan.threads:
                    step(f"{name} {backend.name} b{batch} t{threads}: timing")
                    try:
                        _measure_one(plan, backend, artifact, threads, x, expected, batch, tolerance, record, common)
                    finally:
                        backend.release()

    return records


def _measure_one(plan: BenchPlan, backend: Backend, artifact, threads: int, x: torch.Tensor, expected: torch.Tensor,
                 batch: int, tolerance: float, record, common: dict) -> None:
    """Parity, then timing, of one backend at one thread count; records the outcome."""
    env = environment(backend, threads)
    extra = dict(export_s=artifact.export_s, artifact_bytes=artifact.size, cached=artifact.cached)
    try:
        run = backend.session(artifact, threads, plan.dtype)
        xin = x.to(backend.device)
        diff = (run(xin).float().cpu() - expected).abs().max().item()
    except Exception as err:  # noqa: BLE001
        record(threads=threads, status="error", error=f"run: {_first_line(err)}", env=env, **extra, **common)
        return
    if not diff <= tolerance:  # NaN fails too
        record(threads=threads, status="parity-failed", parity_max_abs=diff, parity_ok=False, env=env, **extra, **common)
        return
    measure = cuda_event_seconds if backend.device == "cuda" else None
    with torch.inference_mode():
        times = time_calls(lambda: run(xin), plan.warmup, plan.min_time, plan.min_runs, sync=backend.sync(), measure=measure)
    stats = summarize(times, plan.noisy_cv)
    record(
        threads=threads, status="ok", median_ms=stats.median_ms, mean_ms=stats.mean_ms, p10_ms=stats.p10_ms,
        p90_ms=stats.p90_ms, iqr_ms=stats.iqr_ms, cv=stats.cv, noisy=stats.noisy, runs=stats.runs,
        throughput=batch / (stats.median_ms / 1e3), parity_max_abs=diff, parity_ok=True, env=env,
        **extra, **common,
    )


def records_frame(records: list[BenchRecord] | pd.DataFrame) -> pd.DataFrame:
    """The table users read: one row per measurement with its ratio to torch eager (same model, batch, threads)."""
    df = records if isinstance(records, pd.DataFrame) else pd.DataFrame([r.__dict__ for r in records])
    if df.empty:
        return pd.DataFrame()
    keys = ["model", "form", "batch", "threads", "resolution", "dtype", "machine"]
    eager = df[(df["backend"] == "torch") & (df["status"] == "ok")]
    eager = (newest(eager, keys) if "created" in eager else eager.groupby(keys, as_index=False).last()).set_index(keys)["median_ms"]
    ratio = [
        (r.median_ms / eager.get(tuple(r[k] for k in keys))) if r.status == "ok" and tuple(r[k] for k in keys) in eager.index else None
        for _, r in df.iterrows()
    ]
    out = pd.DataFrame(
        {
            "model": df["model"], "backend": df["backend"], "batch": df["batch"], "threads": df["threads"],
            "res": df["resolution"], "median ms": df["median_ms"], "p10 ms": df["p10_ms"], "p90 ms": df["p90_ms"],
            "CV": df["cv"], "noisy": df["noisy"], "img/s": df["throughput"], "× torch": ratio,
            "max |Δ|": df["parity_max_abs"], "export s": df["export_s"], "MB": df["artifact_bytes"] / 1e6 if "artifact_bytes" in df else None,
            "cached": df["cached"], "status": df["status"], "note": df["error"],
        }
    )
    return out
