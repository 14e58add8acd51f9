"""What every runtime shares: a :class:`Backend` exports a model to an :class:`Artifact` and opens it as a
:class:`Session` to time; file exports are written atomically and cached (keyed by the caller)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from emobench.paths import artifact_cache_dir


Runner = Callable[[torch.Tensor], torch.Tensor]


def weights_fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Artifact:
    """What ``export`` produced: an in-memory object and/or a file, and what it cost."""

    obj: object
    path: Path | None
    export_s: float | None
    cached: bool
    companions: tuple[str, ...] = ()
    #: what the exporter reported about the artifact (ExecuTorch: its delegation summary)
    explain: dict | None = None

    @property
    def size(self) -> int | None:
        """Bytes on disk, companion files (OpenVINO's .bin weights) included."""
        if self.path is None:
            return None
        files = [self.path, *(self.path.with_suffix(s) for s in self.companions)]
        return sum(f.stat().st_size for f in files if f.exists())


@dataclass
class Session:
    """A loaded model ready to run: the call, the precision the runtime reports computing in, and what it runs.

    ``explain`` follows one shape for every backend: ``summary`` (one line), ``fallback`` (operator → count of
    nodes the accelerated path did not take; empty when it took all), ``accelerated`` (operator → count),
    ``subgraphs`` (delegate partitions, where the runtime has them) and ``precisions`` (precision → layers)."""

    run: Runner
    precision: str
    #: the report, or a function computing it (called after the timing, when it costs a second session)
    explain: dict | Callable[[], dict] = field(default_factory=dict)

    def report(self) -> dict:
        return self.explain() if callable(self.explain) else self.explain


@dataclass
class OpProfile:
    """A runtime profiler's view of inference: every operator it ran, in execution order, with its name there,
    its type, the torch module path it came from ('' when the runtime keeps none) and its median time per
    inference (ms, over ``runs`` profiled calls); and the median wall time per profiled call. Profiled calls
    run slower than unprofiled ones: these never feed a headline latency."""

    source: str
    ops: list[dict]
    wall_ms: float
    runs: int

    def to_json(self) -> dict:
        return {"source": self.source, "ops": self.ops, "wall_ms": self.wall_ms, "runs": self.runs}


def median_per_call(calls: list[list[tuple[str, str, str, float]]]) -> list[dict]:
    """Each operator's median time over the profiled calls (a shared host's stall in one call does not move
    it): ``calls`` holds, per call, its (name, type, module path, ms) in execution order; every call must have
    run the same operators (a runtime that varies them cannot be attributed per operator)."""
    import statistics

    if not calls:
        raise ValueError("no profiled calls")
    first = calls[0]
    for i, call in enumerate(calls[1:], 2):
        if [c[:2] for c in call] != [c[:2] for c in first]:
            raise RuntimeError(f"profiled call {i} ran other operators than call 1 ({len(call)} vs {len(first)})")
    return [{"name": name, "op": op, "scope": scope, "ms": statistics.median(call[j][3] for call in calls)}
            for j, (name, op, scope, _) in enumerate(first)]


def explain_counts(summary: str, accelerated: dict | None = None, fallback: dict | None = None,
                   subgraphs: int | None = None, precisions: dict | None = None) -> dict:
    return {"summary": summary, "accelerated": dict(sorted((accelerated or {}).items())),
            "fallback": dict(sorted((fallback or {}).items())), "subgraphs": subgraphs,
            "precisions": dict(sorted((precisions or {}).items()))}


class Backend:
    """A way to run a model. Subclasses set the class attributes and implement ``export`` and ``open``.

    The parent process exports (``prepare``, cached on disk); a worker process loads the artifact and measures
    it (``session``), so each runtime runs alone in its process. Backends with nothing to write (``suffix`` is
    None: eager and compiled torch) export inside the worker instead."""

    name: str = ""
    description: str = ""
    modules: tuple[str, ...] = ()  # import names that must be present
    distribution: str = "torch"  # whose version identifies the artifact
    install: str = ""  # the pip extra that installs it
    suffix: str | None = None  # artifact file suffix; None: nothing to cache, the worker builds the model
    dtypes: tuple[str, ...] = ("fp32",)
    device: str = "cpu"
    exports: bool = True  # False: nothing is converted, so there is no export time
    companions: tuple[str, ...] = ()  # suffixes of files written beside the artifact
    #: ``--form auto``: the formulations to try in order (the first the model has and that passes parity is
    #: measured; reference is always last). Backed by ``benchmarks/forms.py``, figures in docs/benchmarking.md.
    form_preference: tuple[str, ...] = ("reference",)

    def unavailable(self) -> str | None:
        """None when usable, else one line saying why and how to install."""
        for module in self.modules:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install 'emobench[{self.install}]')"
        return None

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def import_runtime(self) -> None:
        """Import the runtime's modules (timed separately as part of the cold start)."""
        for module in self.modules:
            importlib.import_module(module)

    def artifact_path(self, key: str) -> Path | None:
        if self.suffix is None:
            return None
        return artifact_cache_dir() / self.name / f"{key}{self.suffix}"

    def prepare(self, model: nn.Module, example: torch.Tensor, key: str, calibration=None) -> Artifact:
        """Export (or load the cached export of) ``model`` for inputs shaped like ``example``; with
        ``calibration`` (N×C×H×W inputs), the runtime's int8 export calibrated on them."""
        path = self.artifact_path(key)
        meta = path.with_suffix(path.suffix + ".json") if path else None
        if path is not None and path.exists() and meta.exists():
            info = json.loads(meta.read_text())
            return Artifact(self.load(path), path, info.get("export_s"), cached=True, companions=self.companions,
                            explain=info.get("explain"))
        start = time.perf_counter()
        with _quiet():
            obj, explain = (self.export(model, example, path) if calibration is None
                            else self.export_int8(model, example, path, calibration))
        export_s = time.perf_counter() - start if self.exports else None
        if path is not None:
            meta.write_text(json.dumps({"export_s": export_s, "version": self.version(), "explain": explain}))
        return Artifact(obj, path, export_s, cached=False, companions=self.companions, explain=explain)

    def session(self, artifact: Artifact, threads: int, dtype: str) -> Session:
        """``open`` with the runtime's start-up chatter silenced."""
        with _quiet():
            return self.open(artifact, threads, dtype)

    def export(self, model: nn.Module, example: torch.Tensor, path: Path | None) -> tuple[object, dict | None]:
        """(the object to run or the written path, the exporter's report or None)."""
        return model, None

    def export_int8(self, model: nn.Module, example: torch.Tensor, path: Path | None, calibration) -> tuple[object, dict | None]:
        raise NotImplementedError(f"{self.name} has no int8 export")

    def load(self, path: Path) -> object:
        raise NotImplementedError

    def open(self, artifact: Artifact, threads: int, dtype: str) -> Session:
        raise NotImplementedError

    def sync(self) -> Callable[[], None] | None:
        return None

    #: the per-operator profiler ``profile`` reads (said in every breakdown); None: the runtime has none that
    #: emobench reads, and a breakdown is by prefix differencing
    profiler: str | None = None

    def profile(self, artifact: Artifact, threads: int, dtype: str, x: torch.Tensor, runs: int, warmup: int) -> OpProfile:
        """``runs`` profiled calls (after ``warmup`` unprofiled ones) of a session opened for profiling."""
        raise NotImplementedError(f"{self.name} has no per-operator profiler")


@contextlib.contextmanager
def _quiet():
    """Exporters and runtimes print progress and warnings of their own, some from C++ straight to the file
    descriptors; keep them off the user's terminal."""
    import sys

    saved = []
    try:
        for fd in (1, 2):
            sys.stdout.flush() if fd == 1 else sys.stderr.flush()
            saved.append(os.dup(fd))
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
    except OSError:  # no real file descriptors (e.g. captured output): Python-level quieting only
        pass
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def _outputs(values) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """A runtime's outputs as torch tensors: one tensor for a single-output model, else a tuple in model order."""
    tensors = tuple(v if isinstance(v, torch.Tensor) else torch.from_numpy(np.array(v, copy=True)) for v in values)
    return tensors[0] if len(tensors) == 1 else tensors


def _atomic_path(path: Path) -> Path:
    """A temporary sibling with the same suffix (some exporters insist on it), renamed into place when done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


class FileBackend(Backend):
    """A backend whose export is a file: written under a temporary name and renamed into place when complete,
    so an interrupted export never leaves a half-written artifact in the cache."""

    def export(self, model, example, path, write=None):
        tmp = _atomic_path(path)
        explain = (write or self.write)(model, example, tmp)
        for suffix in self.companions:
            tmp.with_suffix(suffix).replace(path.with_suffix(suffix))
        tmp.replace(path)
        return path, explain

    def write(self, model: nn.Module, example: torch.Tensor, path: Path) -> dict | None:
        """Write the artifact; return the exporter's report (or None)."""
        raise NotImplementedError

    def export_int8(self, model, example, path, calibration):
        return self.export(model, example, path, lambda m, x, p: self.write_int8(m, x, p, calibration))

    def write_int8(self, model: nn.Module, example: torch.Tensor, path: Path, calibration) -> dict | None:
        """Write the runtime's own static int8 export calibrated on ``calibration``; its exporter's report."""
        raise NotImplementedError(f"{self.name} has no int8 export")

    def load(self, path):
        return path


def _clean_op(name: str) -> str:
    for prefix in ("aten_", "aten."):
        name = name.removeprefix(prefix)
    return name.removesuffix("_default").removesuffix(".default")
