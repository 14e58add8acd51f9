"""One measurement in a process of its own: ``python -m emobench.runtimes.worker SPEC.json RESULT.json``.

Runtimes keep thread pools alive and spinning after a call (OpenMP, ONNX Runtime's intra-op pool, XNNPACK's
pthreadpool) and set process-wide state (ExecuTorch's threadpool size, torch's thread count, cuDNN's TF32
switch). Measured side by side in one process they steal the cores from each other; so ``emobench bench`` runs
every (model, backend, batch, threads, dtype, round) in a fresh worker that imports one runtime, loads the
artifact the parent exported (or, for eager and compiled torch, builds the model itself from the same seed),
checks parity against the parent's reference output, times the calls and exits. The parent stores the result.

The worker reports its cold start (runtime import, load/initialisation, first inference), its resident memory
after the imports and at its peak, the precision the runtime reports computing in, and what the runtime
actually runs (the backend's ``explain`` report). Everything goes to RESULT.json; a crash or a hang leaves no
result, which the parent turns into an ``error`` record.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from emobench.errors import first_line
from emobench.runtimes.spec import ArtifactSpec, ImagesSpec, WorkerSpec, load_outputs


def _current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory. Linux: ``VmHWM`` of its own address space (``ru_maxrss`` survives
    ``execve`` and would report the parent's peak); elsewhere ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def load_backend(path: str):
    """A backend instance from ``module:QualName`` (so backends defined outside emobench run in workers too)."""
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj()


def parity(out, expected: list) -> tuple[float, str | None]:
    """Largest |difference| over every output tensor (inf when the outputs' number or shapes differ, with why)."""
    import numpy as np

    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if len(outs) != len(expected):
        return float("inf"), f"{len(outs)} output(s), expected {len(expected)}"
    worst = 0.0
    for i, (o, e) in enumerate(zip(outs, expected)):
        o = o.float().cpu().numpy()
        if o.shape != e.shape:
            return float("inf"), f"output {i}: {tuple(o.shape)} ≠ {tuple(e.shape)}"
        worst = max(worst, float(np.abs(o - e).max()) if o.size else 0.0)
    return worst, None


def _score_images(session, x, images: ImagesSpec, result: dict) -> bool:
    """Run the images through the session (the artifact's batch at a time), score them (top-1/top-5 against
    the labels, agreement and cosine against eager fp32 torch) into ``result``; False when the agreement or
    cosine falls below the spec's thresholds (then the result is ``parity-failed``)."""
    import numpy as np
    import torch

    from emobench.measure.images import run_batches, score

    data = np.load(images.input, mmap_mode="r", allow_pickle=False)
    labels = np.load(images.labels, allow_pickle=False) if images.labels else None
    reference = np.load(images.reference, allow_pickle=False) if images.reference else None
    with torch.inference_mode():
        logits = run_batches(session.run, data, x.shape[0], lambda a: torch.from_numpy(a).to(x.device))
    result.update(score(logits, labels, reference))
    low = []
    if images.min_agreement is not None and not result["top1_agreement"] >= images.min_agreement:
        low.append(f"top-1 agreement {result['top1_agreement']:.4f} < {images.min_agreement:g}")
    if images.min_cosine is not None and not result["logit_cosine"] >= images.min_cosine:
        low.append(f"logit cosine {result['logit_cosine']:.4f} < {images.min_cosine:g}")
    if low:
        result.update(status="parity-failed", error=f"{' and '.join(low)} on {result['images']} images vs eager fp32 torch")
    return not low


def loaded(backend, art: ArtifactSpec):
    """The artifact the parent exported, loaded by ``backend``; for a backend with no file of its own (eager
    torch), the parent's ``torch.export`` program (``.pt2``), prepared here on the artifact's input."""
    from emobench.runtimes.base import Artifact

    path = Path(art.path)
    if backend.suffix is None and path.suffix == ".pt2":
        import numpy as np
        import torch

        example = torch.from_numpy(np.load(art.input, allow_pickle=False)).to(backend.device)
        return backend.prepare(torch.export.load(str(path)).module(), example, "")
    return Artifact(backend.load(path), path, art.export_s, art.cached, tuple(art.companions), art.explain)


def _time_prefixes(backend, spec: WorkerSpec, x) -> tuple[list[list[float]], list[float | None]]:
    """Median ms per prefix (in the spec's order) in each of ``spec.prefix_rounds`` passes; every prefix is
    loaded first, so the passes alternate between them and drift hits all alike. Also each prefix's parity
    (max |Δ| against its ``expected`` outputs; None where it has none), from its first call."""
    import statistics

    import numpy as np
    import torch

    from emobench.measure.timing import time_calls

    sessions = [backend.session(loaded(backend, art), spec.threads, spec.dtype) for art in spec.prefixes]
    own = {art.input: torch.from_numpy(np.load(art.input, allow_pickle=False)).to(backend.device)
           for art in spec.prefixes if art.input is not None}  # a block's cuts share one input file
    inputs = [x if art.input is None else own[art.input] for art in spec.prefixes]
    checked: list[float | None] = []
    with torch.inference_mode():
        for art, s, x_ in zip(spec.prefixes, sessions, inputs):
            if art.expected is None:
                checked.append(None)
                continue
            diff, mismatch = parity(s.run(x_), load_outputs(art.expected))
            checked.append(float("inf") if mismatch else diff)
    passes = []
    with torch.inference_mode():
        for index in range(spec.prefix_rounds):
            warmup = spec.warmup if index == 0 else min(spec.warmup, 2)  # warm already; a call or two re-fills caches
            passes.append([statistics.median(time_calls(lambda s=s, x=x: s.run(x), warmup, spec.min_time,
                                                        spec.min_runs)) * 1e3
                           for s, x in zip(sessions, inputs)])
    return passes, checked


def measure(spec: WorkerSpec) -> dict:
    """Run one measurement as ``spec`` describes; returns the result (a JSON-able dict: status, timings, parity)."""
    import statistics

    import numpy as np
    import torch

    from emobench.measure.timing import time_calls

    result: dict[str, Any] = {"status": "error"}
    stage = "import"
    try:
        backend = load_backend(spec.backend)
        start = time.perf_counter()
        backend.import_runtime()
        result["import_s"] = time.perf_counter() - start
        x = torch.from_numpy(np.load(spec.input, allow_pickle=False)).to(backend.device)
        expected = load_outputs(spec.expected)  # every model output
        result["rss_base_mb"] = _current_rss_mb()

        stage = "load"
        start = time.perf_counter()
        if spec.artifact is not None:
            artifact = loaded(backend, spec.artifact)
        else:
            from emobench.models.references import build_reference
            from emobench.nn.forms import formulate

            stage = "export"
            m = spec.model
            if spec.program_error:
                raise RuntimeError(spec.program_error)
            if spec.program:  # an in-memory module, exported by the parent (see bench._program_for_worker)
                model = torch.export.load(spec.program).module()
            else:  # any model reference: a zoo name, timm:NAME, a factory (the worker rebuilds it)
                model = formulate(build_reference(m.name, m.checkpoint, m.zoo_dirs), m.form)
            artifact = backend.prepare(model, x, "")
            result["export_s"] = artifact.export_s
        stage = "load"
        session = backend.session(artifact, spec.threads, spec.dtype)
        result["load_s"] = time.perf_counter() - start - (result.get("export_s") or 0.0)

        stage = "run"
        sync = backend.sync()
        start = time.perf_counter()
        with torch.inference_mode():
            out = session.run(x)
        if sync:
            sync()
        result["first_ms"] = (time.perf_counter() - start) * 1e3
        result["precision"] = session.precision
        diff, mismatch = parity(out, expected)
        result["parity_max_abs"] = diff
        if session.precision != spec.dtype:
            result.update(status="parity-failed", error=f"{backend.name} ran {session.precision}, not {spec.dtype}")
        elif mismatch or (spec.tolerance is not None and not diff <= spec.tolerance):  # NaN fails too
            shape = f" ({mismatch})" if mismatch else ""
            result.update(status="parity-failed", error=f"max |Δ| {diff:.3g} > tolerance {spec.tolerance}{shape}")
        elif spec.images and not _score_images(session, x, spec.images, result):
            pass  # below the agreement thresholds: parity-failed, not timed
        elif spec.profile_runs:  # a breakdown: the profiler's operators, never a headline latency
            stage = "profile"
            # the whole network unprofiled, in this worker just before and after the profiled calls: what the
            # operators must add up to, measured beside them (a shared host drifts between workers)
            plain = lambda: time_calls(lambda: session.run(x), spec.warmup, spec.min_time / 2, spec.min_runs)  # noqa: E731
            with torch.inference_mode():
                before = plain()
                result["op_profile"] = backend.profile(artifact, spec.threads, spec.dtype, x, spec.profile_runs,
                                                       spec.warmup).to_json()
                result["op_profile"]["plain_ms"] = statistics.median(before + plain()) * 1e3
            result["status"] = "ok"
        elif spec.prefixes:  # prefix differencing: every cut of the network, timed in interleaved passes
            stage = "prefixes"
            result["prefix_times"], result["prefix_parity"] = _time_prefixes(backend, spec, x)
            result["status"] = "ok"
        elif not spec.time:  # eval: accuracy only
            result["status"] = "ok"
        else:
            stage = "timing"
            measure_call = None
            if backend.device == "cuda":
                from emobench.runtimes.cuda import cuda_event_seconds

                measure_call = cuda_event_seconds
            with torch.inference_mode():
                result["times"] = time_calls(lambda: session.run(x), spec.warmup, spec.min_time, spec.min_runs,
                                             sync=sync, measure=measure_call)
            result["status"] = "ok"
        result["peak_rss_mb"] = _peak_rss_mb()
        stage = "explain"
        try:
            result["explain"] = session.report()
        except Exception as err:  # noqa: BLE001 - a missing report never voids the measurement
            result["explain"] = {"summary": f"no report: {first_line(err)}"}
    except Exception as err:  # noqa: BLE001 - every failure is a result
        result.update(status="error", error=f"{stage}: {first_line(err)}")
    return result


def watch_parent(parent: int, interval: float = 1.0) -> None:
    """Exit this process as soon as ``parent`` is no longer its parent (it died: the worker was re-parented).

    The fallback where the parent cannot arm Linux's parent-death signal (it passes its pid in
    ``EMOBENCH_PARENT_PID`` then): a daemon thread polling ``os.getppid()``, so a worker whose parent was
    SIGKILLed exits within ``interval`` instead of measuring on for nobody. It needs the GIL, which a runtime
    stuck in native code may hold: hence the kernel's signal first, where there is one."""
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="emobench-parent-watchdog", daemon=True).start()


def main(argv: list[str]) -> int:
    spec_path, result_path = argv
    parent = os.environ.get("EMOBENCH_PARENT_PID", "")
    if parent.isdigit():
        watch_parent(int(parent))
    result = measure(WorkerSpec.from_json(Path(spec_path).read_text()))
    tmp = Path(result_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
