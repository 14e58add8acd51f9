"""``emobench bench``: latency of zoo models on every installed backend, one methodology, one runtime per process.

The parent process builds each model once (fixed seed or checkpoint), computes the reference output with eager
fp32 torch on the reference form, exports every (formulation, backend) artifact (cached on disk), then runs
the measurements in fresh worker processes (:mod:`emobench.runtimes.worker`), round after round, alternating
backends within a round so that drift over the run hits every backend alike. A worker checks parity before it
times anything: a backend that computes something else, or in another precision than asked, is recorded as
``parity-failed`` without a latency. ``--form auto`` takes, per backend, the first formulation of the
backend's preference list that exports and passes parity.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import dataclasses
import hashlib
import itertools
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from emobench.paths import source_fingerprint
from emobench.version import __version__
from emobench.environment import check_thread_counts, cpu_name, default_threads
from emobench.environment import environment as machine_environment
from emobench.errors import EmobenchError, first_line
from emobench.runtimes.spec import ArtifactSpec, ModelSpec, WorkerSpec, save_outputs
from emobench.runtimes.backends import BACKENDS, TOLERANCE, Artifact, Backend, weights_fingerprint
from emobench.runtimes.parity import CALIBRATION_IMAGES, MIN_LOGIT_COSINE, MIN_TOP1_AGREEMENT
from emobench.measure.images import scan_image_folder
from emobench.measure import sentinel
from emobench.measure.timing import NOISY_CV, relative_ci, relative_range, summarize
from emobench.models.budget import check_fits
from emobench.nn.forms import AUTO, candidates, form_names, formulate
from emobench.results.record import BenchRecord, failed  # noqa: F401 - failed: what makes a run exit 1
from emobench.results.store import ResultStore
from emobench.runs import breakdown as breakdowns
from emobench.runs import crosscheck as crosschecks
from emobench.runs.breakdown import check_method as check_breakdown
from emobench.models.references import ResolvedModel, build_reference, module_input_size, resolve
from emobench.zoo.catalog import current_extra_dirs

#: bump when the artifact format or what is stored beside it changes (older cached exports are not reused)
ARTIFACT_FORMAT = 3

Progress = Callable[[str, int, int], None]


@dataclass
class BenchPlan:
    models: list[str]
    backends: list[str] = field(default_factory=lambda: ["torch"])
    batches: list[int] = field(default_factory=lambda: [1])
    threads: list[int] = field(default_factory=lambda: [default_threads()])
    resolution: tuple[int, int] | None = None
    #: one dtype, or several comma-separated ("fp32,int8"): measured interleaved in one run, like backends
    dtype: str = "fp32"
    forms: list[str] = field(default_factory=lambda: [AUTO])
    warmup: int = 10
    min_time: float = 1.0
    min_runs: int = 20
    rounds: int = 3
    timeout: float = 600.0
    tolerance: float | None = None
    noisy_cv: float = NOISY_CV
    checkpoint: str | None = None
    #: an ImageFolder every backend classifies (``emobench eval``; see :mod:`emobench.runs.evaluate`)
    images: str | None = None
    class_index: str | None = None
    limit: int | None = None  # at most this many images of the folder (in ImageFolder order)
    preprocess: dict = field(default_factory=dict)  # crop_pct, mean, std, interpolation overriding the model's
    timed: bool = True  # False: accuracy only, no latency (eval)
    #: int8: calibration images (a folder; None: seeded random inputs, flagged) and the parity thresholds
    calibration: str | None = None
    calibration_size: int = CALIBRATION_IMAGES
    min_agreement: float = MIN_TOP1_AGREEMENT
    min_cosine: float = MIN_LOGIT_COSINE
    #: where the time goes, measured after each record's timed rounds: auto, profiler, prefix or both (None: not)
    breakdown: str | None = None
    #: run the runtime's own benchmark tool on the measured artifact after each round (openvino, litert)
    crosscheck: bool = False
    #: keep adding rounds (beyond ``rounds``) until each median's 95 % interval is within this many percent …
    until_stable: float | None = None
    max_rounds: int = 20  #: … or this many rounds have run …
    budget: float | None = 600.0  #: … or this many seconds have passed (None: no time limit)

    @property
    def dtypes(self) -> list[str]:
        """The dtypes of ``dtype`` in order (an empty or repeated item is refused by :meth:`validate`)."""
        return list(dict.fromkeys(parse_names(self.dtype)))

    def validate(self) -> None:
        def once(items: list, what: str, spec: str | None = None) -> None:
            """Refuse an empty item and an item given twice (a typo, never a wish to measure twice)."""
            if spec is not None and spec.strip() and any(not s.strip() for s in spec.split(",")):
                raise EmobenchError(f"{what}: empty item in '{spec}'")
            for i, item in enumerate(items):
                if item in items[:i]:
                    raise EmobenchError(f"{what}: '{item}' is listed twice in '{spec if spec is not None else ','.join(map(str, items))}'")

        once([s.strip() for s in self.dtype.split(",")], "dtype", self.dtype)
        once(self.backends, "backend")
        once(self.batches, "batch")
        once(self.threads, "threads")
        once(self.forms, "form")
        for what, value in (("--min-time", self.min_time), ("--timeout", self.timeout), ("--tolerance", self.tolerance)):
            if value is not None and not math.isfinite(value):
                raise EmobenchError(f"{what} must be a finite number, got {value}")
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise EmobenchError(f"unknown backend {', '.join(unknown)} (known: {', '.join(BACKENDS)}, or all)")
        if not self.backends:
            raise EmobenchError("no backend given (e.g. -B torch,onnxruntime or -B all)")
        if any(b < 1 for b in self.batches):
            raise EmobenchError(f"batch sizes must be >= 1, got {self.batches}")
        check_thread_counts(self.threads)
        bad = [d for d in self.dtypes if d not in TOLERANCE]
        if bad or not self.dtypes:
            raise EmobenchError(f"unknown dtype '{','.join(bad) or self.dtype}' (choose {', '.join(TOLERANCE)}, or several comma-separated)")
        bad = [f for f in self.forms if f not in form_names()]
        if bad or not self.forms:
            raise EmobenchError(f"unknown form '{','.join(bad)}' (choose {', '.join(form_names())})")
        if self.warmup < 0 or self.min_runs < 1 or self.min_time < 0 or self.rounds < 1:
            raise EmobenchError("warmup >= 0, min-runs >= 1, min-time >= 0 and rounds >= 1 are required")
        if not self.timeout > 0:
            raise EmobenchError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.tolerance is not None and not self.tolerance >= 0:
            raise EmobenchError(f"tolerance must be >= 0, got {self.tolerance}")
        if self.tolerance is not None and "int8" in self.dtypes:
            raise EmobenchError("int8 parity is top-1 agreement and logit cosine (--min-agreement, --min-cosine), not a max |Δ| tolerance")
        if self.calibration is not None and "int8" not in self.dtypes:
            raise EmobenchError("--calibration calibrates an int8 export: add --dtype int8")
        if self.calibration_size < 1 or (self.limit is not None and self.limit < 1):
            raise EmobenchError("the calibration size and the image limit must be >= 1")
        if not (0 <= self.min_agreement <= 1 and -1 <= self.min_cosine <= 1):
            raise EmobenchError("--min-agreement must be in [0, 1] and --min-cosine in [-1, 1]")
        check_breakdown(self.breakdown)
        if self.until_stable is not None and not (0 < self.until_stable < 100):
            raise EmobenchError(f"--until-stable takes a percentage in (0, 100), got {self.until_stable}")
        if self.until_stable is not None and (self.max_rounds < max(self.rounds, 2) or (self.budget is not None and not self.budget > 0)):
            raise EmobenchError("--max-rounds must be >= --rounds and >= 2, and --budget > 0 seconds")
        if self.breakdown is not None and not self.timed:
            raise EmobenchError("a breakdown splits a measured latency: it needs timed runs (emobench bench)")
        if self.images is not None:  # a folder without classes fails here, before anything is built
            scan_image_folder(self.images, self.class_index)
        # each model resolved here, once: everything after takes the ResolvedModel
        self.models = [item if isinstance(item, torch.nn.Module) else resolve(item) for item in self.models]

    def check_fits(self) -> None:
        """Refuse (before anything is built) a model whose largest batch cannot fit: one measurement runs at a time."""
        for item in self.models:
            if not isinstance(item, torch.nn.Module):
                check_fits(item, item.input_shape(self.resolution, max(self.batches)))


def parse_names(spec: str) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()]


def environment(backend: Backend, threads: int) -> dict:
    return {**machine_environment(threads, cuda=backend.device == "cuda"), "backend": backend.name, "backend_version": backend.version()}


def model_identity(item: ResolvedModel | torch.nn.Module) -> dict:
    """What names a model's architecture in an export's cache key (an in-memory module: its structure, and the
    settings its modules keep outside ``repr`` — a block's configuration, a window size, a flag — which change
    what it computes without changing its printout or its weights' shapes)."""
    if isinstance(item, torch.nn.Module):
        return {"model": type(item).__qualname__, "structure": repr(item), "settings": _module_settings(item)}
    return item.identity()


def _module_settings(module: torch.nn.Module) -> str:
    """A digest of every submodule's plain attributes (numbers, strings, flags, tuples, configurations)."""
    digest = hashlib.sha256()
    for name, sub in module.named_modules():
        for key, value in sorted(vars(sub).items()):
            if key.startswith("_") or isinstance(value, (torch.Tensor, torch.nn.Module)) or callable(value):
                continue
            text = value.model_dump_json() if hasattr(value, "model_dump_json") else repr(value)
            digest.update(f"{name}.{key}={text};".encode())
    return digest.hexdigest()[:16]


def code_fingerprint() -> str:
    """A hash of the code that decides what an export contains (the networks and their formulations in
    ``emobench/nn``, the exporters in ``emobench/runtimes``, the counters and inputs in ``emobench/measure``):
    an edited formulation must not reuse an artifact cached from the old one under an unchanged version."""
    return source_fingerprint("nn", "measure", "runtimes")


def _artifact_key(identity: dict, form: str, shape, backend: Backend, fingerprint: str) -> str:
    ident = {
        **identity, "form": form, "shape": list(shape),
        "backend": backend.name, "backend_version": backend.version(), "torch": torch.__version__,
        "emobench": __version__, "code": code_fingerprint(), "weights": fingerprint, "format": ARTIFACT_FORMAT,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:20]


# --- worker processes -------------------------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during a sweep, raised where the signal lands (see :func:`_interruptible`): on the way
    out the current worker is killed and the temporary folder removed. :func:`run_stored` adds what was kept
    (``stored`` records in ``store``; ``store`` None: nothing stored) for the command line to say."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class _Signals:
    """The sweep's SIGINT/SIGTERM state: whether a worker is being spawned (a signal then waits until its
    process is known, so that it can be killed) and whether the one exception has been raised."""

    spawning = False
    pending: int | None = None
    raised = False

    @classmethod
    def handle(cls, signum, frame) -> None:
        if cls.raised:  # already unwinding: a second Ctrl-C must not interrupt the clean-up
            return
        if cls.spawning:
            cls.pending = signum
            return
        cls.raised = True
        raise Interrupted(signum)

    @classmethod
    def raise_pending(cls) -> None:
        if cls.pending is not None and not cls.raised:
            signum, cls.pending, cls.raised = cls.pending, None, True
            raise Interrupted(signum)


@contextlib.contextmanager
def _interruptible():
    """SIGINT and SIGTERM raise :class:`Interrupted` while a sweep runs, so that ``with`` and ``finally`` blocks
    unwind (worker killed, temporary folder removed, store closed) instead of the process vanishing (SIGTERM's
    default) with its worker still measuring. Installed in the main thread only, and only over the default
    handlers (an application's own handlers are left alone); nested uses are no-ops."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    installed = {}
    for signum, default in defaults.items():
        if signal.getsignal(signum) is default:
            installed[signum] = signal.signal(signum, _Signals.handle)
    if installed:
        _Signals.spawning, _Signals.pending, _Signals.raised = False, None, False
    try:
        yield
    finally:
        for signum, previous in installed.items():
            signal.signal(signum, previous)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: a ``preexec_fn`` that has the kernel SIGKILL the worker the moment this process dies, however it
    dies (SIGKILL included; nothing of the worker's own state matters, a runtime stuck in native code dies
    too). Checks after arming that this process is still the parent (it may have died between fork and
    prctl). None where ``prctl`` is not available: then the worker watches its parent itself
    (``EMOBENCH_PARENT_PID``, :func:`emobench.runtimes.worker.watch_parent`)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return None
    # everything made here, before fork: the child only calls
    option, sig, zero, parent = ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0), os.getpid()

    def arm() -> None:
        prctl(option, sig, zero, zero, zero)  # cannot fail for a valid signal
        if os.getppid() != parent:  # this process died before the signal was armed: nobody would send it
            os._exit(125)

    return arm


def _kill(proc: subprocess.Popen) -> None:
    """Kill a worker that has not been waited for (so its pid, and process group, cannot have been reused) with
    everything it started, and reap it."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)  # its own process group: its children too
        else:  # pragma: no cover - not POSIX
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def worker_command(spec_path: Path, result_path: Path) -> list[str]:
    """The command that runs one measurement (tests replace it to simulate crashing or hanging workers)."""
    return [sys.executable, "-m", "emobench.runtimes.worker", str(spec_path), str(result_path)]


def run_worker(spec: WorkerSpec, workdir: Path, timeout: float) -> dict:
    """Run one measurement in a fresh process; a crash or a timeout becomes an ``error`` result.

    The worker runs in a process group of its own (a terminal's Ctrl-C reaches this process only, which then
    kills the group) and never outlives this process: Linux's parent-death signal (:func:`_die_with_parent`)
    kills it even when this process is SIGKILLed; elsewhere the worker's watchdog exits it once its parent is
    gone. A timeout, SIGINT or SIGTERM (:class:`Interrupted`) kills it here before anything else happens."""
    fd, name = tempfile.mkstemp(prefix="spec-", suffix=".json", dir=workdir)
    os.close(fd)
    spec_path = Path(name)
    result_path = spec_path.with_name(spec_path.stem + ".result.json")
    spec_path.write_text(spec.to_json())
    # The worker sees what this process sees (backends defined outside emobench included).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    arm = _die_with_parent()
    if arm is None:
        env["EMOBENCH_PARENT_PID"] = str(os.getpid())
    extra = {"process_group": 0} if os.name == "posix" else {}
    _Signals.spawning = True  # a signal now waits until the worker's pid is known
    try:
        proc = subprocess.Popen(worker_command(spec_path, result_path), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env, preexec_fn=arm, **extra)
    finally:
        _Signals.spawning = False
    try:
        _Signals.raise_pending()
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return {"status": "error", "error": f"worker timed out after {timeout:g} s and was killed"}
    except BaseException:  # SIGINT, SIGTERM, anything: the worker goes first
        _kill(proc)
        raise
    if result_path.exists():
        return json.loads(result_path.read_text())
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    how = f"signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0 else f"exit code {proc.returncode}"
    return {"status": "error", "error": f"worker died ({how}){': ' + lines[-1].strip()[:200] if lines else ''}"}


TEMP_PREFIX = "emobench-"


def remove_stale_workdirs(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove the temporary folders (``emobench-<pid>-…`` in ``root``, default the system's temporary folder)
    that sweeps whose process no longer exists left behind: a SIGKILLed sweep cannot clean up after itself.
    Folders of live processes, of other users, and not named by a pid are left alone. Returns those removed."""
    import psutil

    removed = []
    base = Path(root if root is not None else tempfile.gettempdir())
    try:
        entries = list(base.glob(TEMP_PREFIX + "*"))
    except OSError:
        return removed
    for path in entries:
        owner = path.name[len(TEMP_PREFIX):].partition("-")[0]
        if not owner.isdigit() or int(owner) == os.getpid() or psutil.pid_exists(int(owner)):
            continue
        try:
            if not path.is_dir() or path.is_symlink() or (hasattr(os, "getuid") and path.stat().st_uid != os.getuid()):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


#: the reaper: waits for end-of-file on its stdin (the sweep holds the only write end, so the end comes when the
#: sweep exits, however it exits, SIGKILL included), then removes the sweep's folder; it imports nothing else
_REAPER = "import shutil, sys; sys.stdin.buffer.read(); shutil.rmtree(sys.argv[1], ignore_errors=True)"


@contextlib.contextmanager
def _workdir():
    """The sweep's private temporary folder, removed when the sweep ends in any way: normally and on SIGTERM by
    this process, and after a SIGKILL by a reaper process (:data:`_REAPER`) within moments. Named by this
    process's pid, so :func:`remove_stale_workdirs` also knows whose it is if even the reaper was killed."""
    remove_stale_workdirs()
    tmp = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
    try:  # its own session: a terminal's Ctrl-C to our process group does not reach it
        reaper = subprocess.Popen([sys.executable, "-S", "-c", _REAPER, tmp], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        reaper = None  # no reaper: the next sweep removes a folder a SIGKILL leaves
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if reaper is not None:
            reaper.stdin.close()  # end of file: the reaper finds the folder gone and exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                reaper.wait(timeout=10)


# --- the sweep ----------------------------------------------------------------------------------------------


@dataclass
class _Slot:
    """One (model, backend, batch, requested form): its candidates, the chosen formulation, its artifacts."""

    model: str
    backend: Backend
    batch: int
    form_requested: str
    candidates: list[tuple[str, str | None]]
    reference: torch.nn.Module
    entry: dict  # the model's identity (:func:`model_identity`)
    shape: tuple[int, ...]
    inputs: dict  # the WorkerSpec fields of the inputs: input / expected paths, images to score, program
    fingerprint: str
    plan: BenchPlan  # the sweep's plan at this slot's one dtype
    seq: int = 0
    calibration: object = None  # int8: the calibration inputs (N×C×H×W array)
    accuracy: dict = field(default_factory=dict)  # record fields known before measuring (image source, calibration)
    chosen: str | None = None
    artifact: Artifact | None = None
    notes: list[str] = field(default_factory=list)
    failure: dict | None = None
    results: dict[int, list[dict]] = field(default_factory=dict)  # threads → one result per round
    vendor: dict[int, list[dict]] = field(default_factory=dict)  # threads → the vendor tool's run per round
    sentinel: dict[int, list[float]] = field(default_factory=dict)  # threads → the host sentinel before each round
    stopped: dict[int, str] = field(default_factory=dict)  # threads → why its rounds ended (--until-stable)


def _export(slot: _Slot, form: str) -> Artifact | None:
    """Export ``form`` for a file backend in this process (cached); None for backends the worker builds."""
    if slot.backend.suffix is None:
        return None
    return _export_module(slot, formulate(slot.reference, form), form, slot.entry)


def _export_module(slot: _Slot, module: torch.nn.Module, form: str, identity: dict,
                   shape: tuple[int, ...] | None = None) -> Artifact:
    """Export ``module`` (formulation ``form`` of the slot's model, or a part of it named by ``identity``, which
    takes an input of ``shape``, default the model's) for the slot's backend, cached under a key of everything
    that decides the artifact."""
    model = copy.deepcopy(module)  # converters may leave state on what they convert
    shape = tuple(shape or slot.shape)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    if slot.calibration is not None:  # an int8 export depends on what it was calibrated on
        calibrated = hashlib.sha256(np.ascontiguousarray(slot.calibration).tobytes()).hexdigest()[:16]
        identity = {**identity, "dtype": "int8", "calibration": calibrated}
    key = _artifact_key(identity, form, shape, slot.backend, slot.fingerprint)
    return slot.backend.prepare(model, x.to(slot.backend.device), key, calibration=slot.calibration)


def _spec(slot: _Slot, form: str, artifact: Artifact | None, threads: int) -> WorkerSpec:
    backend, plan = type(slot.backend), slot.plan
    return WorkerSpec(
        backend=f"{backend.__module__}:{backend.__qualname__}", dtype=plan.dtype, threads=threads,
        model=ModelSpec(slot.model, form, plan.checkpoint, [str(d) for d in current_extra_dirs()]),
        tolerance=_tolerance(plan), warmup=plan.warmup, min_time=plan.min_time, min_runs=plan.min_runs,
        time=plan.timed, **slot.inputs,
        artifact=None if artifact is None else _artifact_spec(artifact),
    )


def _resolve(slot: _Slot, threads: int, workdir: Path) -> dict | None:
    """Try the slot's candidates in order until one exports and passes parity; returns that first result."""
    for form, unsupported in slot.candidates:
        if unsupported:  # auto passes over forms the model has not; a forced one is an error
            slot.failure = {"status": "error", "error": f"form {form}: {unsupported}", "form": form}
            continue
        try:
            artifact = _export(slot, form)
        except Exception as err:  # noqa: BLE001 - an export failure is a result, not a crash
            slot.notes.append(f"{form}: export failed ({first_line(err)})")
            slot.failure = {"status": "error", "error": f"export: {first_line(err)}"}
            continue
        result = run_worker(_spec(slot, form, artifact, threads), workdir, slot.plan.timeout)
        if result["status"] == "ok":
            slot.chosen, slot.artifact = form, artifact
            return result
        slot.notes.append(f"{form}: {result['status']} ({result.get('error')})")
        slot.failure = {**result, "form": form, "artifact": artifact}
    return None


#: interleaved passes over the cuts of a prefix breakdown per timed round of the plan
PASSES_PER_ROUND = 4


def _artifact_spec(artifact: Artifact) -> ArtifactSpec:
    return ArtifactSpec(str(artifact.path), artifact.export_s, artifact.cached, list(artifact.companions), artifact.explain)


def _breakdown(slot: _Slot, threads: int, workdir: Path, headline_ms: float | None) -> dict:
    """``plan.breakdown`` for one measured (slot, threads), in workers after its timed rounds."""
    plan = slot.plan

    def profile() -> dict:
        spec = dataclasses.replace(_spec(slot, slot.chosen, slot.artifact, threads), time=False,
                                   profile_runs=max(plan.min_runs, 10))
        return run_worker(spec, workdir, plan.timeout)

    folder = Path(tempfile.mkdtemp(prefix="cuts-", dir=workdir))
    programs = itertools.count()

    def export(cut: torch.nn.Module, identity: dict, shape: tuple[int, ...] | None) -> Artifact:
        """A cut for the slot's backend: its export (cached), or for eager torch its ``torch.export`` program."""
        if slot.backend.suffix is not None:
            return _export_module(slot, cut, slot.chosen, {**slot.entry, **identity}, shape)
        x = torch.randn(tuple(shape or slot.shape), generator=torch.Generator().manual_seed(1))
        path = folder / f"cut-{next(programs)}.pt2"
        start = time.perf_counter()
        program = _program_for_worker(cut, x, str(path))
        if "program_error" in program:
            raise RuntimeError(program["program_error"])
        return Artifact(None, path, time.perf_counter() - start, False)

    def time_prefixes(cuts: list[tuple[Artifact | None, np.ndarray | None]]) -> dict:
        """The cuts (None: the measured network) timed in interleaved passes, each on its input (None: the network's)."""
        whole = slot.artifact or export(formulate(slot.reference, slot.chosen), {}, None)
        specs, saved = [], {}
        for artifact, x in cuts:
            spec = _artifact_spec(artifact or whole)
            if x is not None:  # the cuts of one block share its input: one file
                if id(x) not in saved:
                    saved[id(x)] = str(folder / f"input-{len(saved)}.npy")
                    np.save(saved[id(x)], x, allow_pickle=False)
                spec.input = saved[id(x)]
            elif slot.backend.suffix is None:  # a program is prepared on its input: the network's
                spec.input = slot.inputs["input"]
            specs.append(spec)
        # the time of the old `rounds` passes of min_time / 2 in PASSES_PER_ROUND × as many shorter ones: the
        # host's slow spells last seconds, and a cut's median over many short passes sits outside them
        spec = dataclasses.replace(_spec(slot, slot.chosen, slot.artifact, threads), time=False, prefixes=specs,
                                   prefix_rounds=plan.rounds * PASSES_PER_ROUND,
                                   min_time=plan.min_time / (2 * PASSES_PER_ROUND),
                                   min_runs=max(3, plan.min_runs // PASSES_PER_ROUND))
        return run_worker(spec, workdir, plan.timeout * plan.rounds)

    return breakdowns.measure(plan.breakdown, slot.backend, slot.reference, slot.chosen, slot.inputs["input"],
                              headline_ms, profile=profile, time_prefixes=time_prefixes, export=export)


@dataclass
class TogetherTiming:
    """What :func:`time_together` measured: per module, its median ms in each interleaved pass (empty when the
    worker failed, ``error`` saying why) and its parity against eager torch; the record fields of the run
    (machine, environment, settings) for whoever stores the figures."""

    passes: dict[str, list[float]]
    error: str | None
    parity: dict[str, float]  #: per module timed: max |Δ| against eager torch on its input
    record: dict
    failed: dict[str, str] = field(default_factory=dict)  #: modules that did not export or failed parity: name → why

    def median_ms(self, name: str) -> float:
        return statistics.median(self.passes[name])

    def to_record(self, name: str, shape: tuple[int, ...]) -> BenchRecord:
        """The figures of module ``name`` as a record (``rounds`` = passes, ``round_spread`` their range)."""
        fields = dict(model=name, form="reference", form_requested="reference", batch=shape[0],
                      resolution=f"{shape[2]}x{shape[3]}" if len(shape) == 4 else "x".join(map(str, shape[1:])),
                      **{**self.record, "params": {**self.record["params"], "input_shape": list(shape)}})
        if name not in self.passes:
            return BenchRecord(**fields, status="error", error=self.failed.get(name) or self.error)
        median = self.median_ms(name)
        return BenchRecord(**fields, status="ok", median_ms=median, rounds=len(self.passes[name]),
                           round_spread=relative_range(self.passes[name]), throughput=shape[0] / (median / 1e3),
                           parity_max_abs=self.parity[name], parity_ok=True)


def time_together(modules: dict[str, tuple[torch.nn.Module, tuple[int, ...]]], backend_name: str, threads: int, *,
                  rounds: int = 10, min_time: float = 0.05, warmup: int = 5, min_runs: int = 10,
                  timeout: float = 20.0) -> TogetherTiming:
    """Every module of ``modules`` (name → (module, input shape)) on ``backend_name`` in ONE worker process, all
    loaded first and timed in ``rounds`` interleaved passes (each a median of ``time_calls`` per module), each on
    a seeded input of its shape: the host's drift hits all of them alike, so their ratios and differences are
    from one run (latency tables, predictions judged against whole networks). File backends time the export
    (cached like ``bench``'s); eager torch the modules' ``torch.export`` programs. The worker checks every
    module's parity against eager fp32 torch on its own input before the passes; one that fails (or does not
    export) is in ``failed``, the others are timed. ``timeout``: seconds per module to load and check it (the
    worker is given that plus a generous allowance per call of each pass, and killed beyond)."""
    from emobench.models.forward import output_tensors

    backend = BACKENDS[backend_name]
    why = backend.unavailable()
    if why:
        raise EmobenchError(f"{backend_name}: {why}")
    check_thread_counts(threads)
    if not modules:
        raise EmobenchError("time_together: no modules to time")
    settings = {"warmup": warmup, "min_time": min_time, "min_runs": min_runs, "rounds": rounds,
                "method": "interleaved passes in one worker"}
    refused: dict[str, str] = {}
    record = dict(backend=backend.name, threads=threads, dtype="fp32", created=time.time(),
                  machine=f"{socket.gethostname()} ({cpu_name()})", env=environment(backend, threads),
                  params=settings, tolerance=TOLERANCE["fp32"])
    with _interruptible(), _workdir() as workdir:
        specs, names = [], []
        for index, (name, (module, shape)) in enumerate(modules.items()):
            module = copy.deepcopy(module).eval()
            x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
            stem = workdir / f"together{index}"
            np.save(f"{stem}-x.npy", x.numpy(), allow_pickle=False)
            try:
                if backend.suffix is None:
                    program = _program_for_worker(module, x, f"{stem}.pt2")
                    if "program_error" in program:
                        raise RuntimeError(program["program_error"])
                    spec = ArtifactSpec(program["program"])
                else:
                    key = _artifact_key(model_identity(module), "reference", shape, backend, weights_fingerprint(module))
                    spec = _artifact_spec(backend.prepare(copy.deepcopy(module), x.to(backend.device), key))
            except Exception as err:  # noqa: BLE001 - one module that does not export is its own failure
                refused[name] = f"export: {first_line(err)}"
                continue
            with torch.inference_mode():
                outs = output_tensors(module(x), name)
            save_outputs(f"{stem}-y.npz", outs)
            spec.input, spec.expected = f"{stem}-x.npy", f"{stem}-y.npz"
            specs.append(spec)
            names.append(name)
        if not specs:
            return TogetherTiming({}, "nothing exported", {}, record, refused)
        name, spec = names[0], specs[0]
        # the worker's own parity step (on the first module) only checks shapes: each module's parity is checked
        # in the prefix step, so one that fails is its own failure
        worker = WorkerSpec(
            backend=f"{type(backend).__module__}:{type(backend).__qualname__}", dtype="fp32", threads=threads,
            input=spec.input, expected=spec.expected, model=ModelSpec(name, "reference"), tolerance=None,
            warmup=warmup, min_time=min_time, min_runs=min_runs, time=False,
            artifact=spec if backend.suffix is not None else None, program=spec.path if backend.suffix is None else None,
            prefixes=specs, prefix_rounds=rounds)
        result = run_worker(worker, workdir, len(specs) * (timeout + rounds * (min_time + 2.0)))
    record["precision"] = result.get("precision")
    if result.get("status") != "ok":
        return TogetherTiming({}, f"{result.get('status')}: {result.get('error')}", {}, record, refused)
    passes, checked = result["prefix_times"], result["prefix_parity"]
    timed = {}
    for i, name in enumerate(names):
        if not checked[i] <= TOLERANCE["fp32"]:  # NaN and a shape mismatch (inf) fail too
            refused[name] = f"parity-failed: max |Δ| {checked[i]:.3g} > tolerance {TOLERANCE['fp32']}"
        else:
            timed[name] = [p[i] for p in passes]
    return TogetherTiming(timed, None, {n: checked[i] for i, n in enumerate(names) if n in timed}, record, refused)


def _tolerance(plan: BenchPlan) -> float:
    """The parity tolerance at ``plan``'s (one) dtype."""
    return plan.tolerance if plan.tolerance is not None else TOLERANCE[plan.dtype]


def _input_shape(item, module: torch.nn.Module, resolution, batch: int) -> tuple[int, ...]:
    if not isinstance(item, torch.nn.Module):
        return item.input_shape(resolution, batch)
    c, h, w = module_input_size(module)[0]
    return (batch, c, *(resolution or (h, w)))


def _program_for_worker(module: torch.nn.Module, example: torch.Tensor, path: str) -> dict:
    """An in-memory module reaches an eager worker as a ``torch.export`` program in the sweep's private
    temporary folder (graph as JSON, weights as raw bytes; the worker loads it with ``torch.export.load``):
    no code of the caller is pickled. A module that does not export gets its reason recorded instead."""
    try:
        with torch.no_grad():
            torch.export.save(torch.export.export(module, (example,)), path)
    except Exception as err:  # noqa: BLE001 - an export failure is a record, not a crash
        return {"program_error": f"torch.export of the in-memory module failed: {first_line(err)}"}
    return {"program": path}


def run_bench(plan: BenchPlan, store: ResultStore | None = None, progress: Progress | None = None) -> list[BenchRecord]:
    """Run the sweep; returns every record (skipped and failed ones included) and stores all but the skipped.

    With ``plan.images`` every backend also classifies those images (top-1/top-5, agreement with eager fp32
    torch); with ``dtype="int8"`` the exports are calibrated (``plan.calibration`` or random inputs) and their
    parity is top-1 agreement and logit cosine on the images, or on the calibration inputs.

    Intermediate files live in a temporary folder ``emobench-<pid>-…``, removed on return, on any error and on
    SIGINT or SIGTERM (:class:`Interrupted`; the running worker is killed first). A SIGKILLed sweep cannot
    clean up: its workers die with it (see :func:`run_worker`) and a reaper process removes its folder
    (:func:`_workdir`); should the reaper be gone too, the next sweep removes it (:func:`remove_stale_workdirs`)."""
    from emobench.models.forward import forward, output_tensors
    from emobench.runs.inputs import prepare_image_inputs

    plan.validate()
    plan.check_fits()
    report = progress or (lambda label, done, total: None)
    slots: list[_Slot] = []
    skipped: list[tuple] = []
    with _interruptible(), _workdir() as workdir:
        for index, item in enumerate(plan.models):
            in_memory = isinstance(item, torch.nn.Module)
            if in_memory:  # measured as given (its own weights); the caller's module is not touched
                reference = copy.deepcopy(item).eval()
                name = getattr(item, "model_reference", None) or type(item).__name__
            else:
                reference = build_reference(item, plan.checkpoint)
                name = item.text
            entry = model_identity(item)
            fingerprint = weights_fingerprint(reference)
            for batch in plan.batches:
                shape = _input_shape(item, reference, plan.resolution, batch)
                x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
                with torch.inference_mode():
                    expected = forward(reference, x, name)  # the model failing is the user's input: one line
                outs = output_tensors(expected, name)  # a dict or a nested output: refused, saying what is measured
                stem = workdir / f"model{index}-b{batch}"  # references may hold '/' and ':'
                common = {"input": f"{stem}-x.npy", "expected": f"{stem}-y.npz"}
                if in_memory and any(BACKENDS[b].suffix is None for b in plan.backends):
                    common.update(_program_for_worker(reference, x, f"{stem}.pt2"))
                np.save(common["input"], x.numpy(), allow_pickle=False)
                save_outputs(common["expected"], outs)
                for dtype in plan.dtypes:  # several dtypes: one more dimension of the interleaved sweep
                    at_dtype = dataclasses.replace(plan, dtype=dtype)
                    scored = prepare_image_inputs(at_dtype, index, reference, shape, workdir, report)
                    inputs = {**common, **({"images": scored.images} if scored.images is not None else {})}
                    for backend_name in plan.backends:
                        backend = BACKENDS[backend_name]
                        reason = backend.unavailable() or (
                            None if dtype in backend.dtypes else f"{backend.name} runs {', '.join(backend.dtypes)} only")
                        for form in plan.forms:
                            seq = len(skipped) + len(slots)  # records come back in the plan's order
                            if reason:
                                skipped.append((seq, name, backend, batch, form, shape, at_dtype, reason))
                                continue
                            options = candidates(form, backend.form_preference, reference)
                            if in_memory and backend.suffix is None:  # the worker runs the module's exported graph
                                options = [(n, None if n == "reference" else "an in-memory module runs as given on "
                                            "eager backends (form reference)") for n, _ in options if n == "reference" or form != AUTO]
                            slots.append(_Slot(name, backend, batch, form, options, reference, entry, shape, inputs,
                                               fingerprint, at_dtype, seq, calibration=scored.calibration,
                                               accuracy=scored.fields))

        done_records: dict[tuple[int, int], BenchRecord] = {}

        def record(order: tuple[int, int], slot_like: dict, threads: int, **kw) -> None:
            backend, at_dtype = slot_like["backend"], slot_like["plan"]
            rec = BenchRecord(
                model=slot_like["model"], backend=backend.name, batch=slot_like["batch"], threads=threads,
                resolution=f"{slot_like['shape'][2]}x{slot_like['shape'][3]}", dtype=at_dtype.dtype,
                tolerance=_tolerance(at_dtype),
                form_requested=slot_like["form_requested"], created=time.time(),
                machine=f"{socket.gethostname()} ({cpu_name()})", env=environment(backend, threads),
                params={"warmup": plan.warmup, "min_time": plan.min_time, "min_runs": plan.min_runs,
                        "rounds": plan.rounds, "timeout": plan.timeout, "input_shape": list(slot_like["shape"]),
                        "checkpoint": plan.checkpoint, "noisy_cv": plan.noisy_cv},
                **kw,
            )
            done_records[order] = rec
            if store is not None and rec.status != "skipped":
                store.add(rec)  # at once: an interrupted sweep keeps what it measured

        def finish(slot: _Slot, threads_index: int) -> None:
            """Store the record of one (slot, threads) as soon as its last round is in, or its failure known."""
            threads = plan.threads[threads_index]
            base = dict(model=slot.model, backend=slot.backend, batch=slot.batch, form_requested=slot.form_requested,
                        shape=slot.shape, plan=slot.plan)
            runs = slot.results.get(threads, [])
            order = (slot.seq, threads_index)
            if slot.chosen is None or not runs:
                failure = slot.failure or {"status": "error", "error": "not measured"}
                art = failure.get("artifact")
                record(order, base, threads, **_accuracy(slot, failure), form=failure.get("form") or slot.candidates[-1][0], status=failure["status"],
                       error="; ".join(slot.notes) if slot.form_requested == AUTO else failure.get("error"),
                       parity_max_abs=failure.get("parity_max_abs"), parity_ok=False if "parity_max_abs" in failure else None,
                       precision=failure.get("precision"), explain=failure.get("explain") or {},
                       export_s=art.export_s if art else None, artifact_bytes=art.size if art else None,
                       cached=art.cached if art else None)
                return
            measured = _aggregate(runs, slot, threads)
            run_host = [ms for s in slots for ms in s.sentinel.get(threads, [])]  # the run's samples so far
            if measured.get("median_ms") is not None and run_host:
                measured["sentinel_ratio"] = measured["median_ms"] / statistics.median(run_host)
            if plan.crosscheck and measured["status"] == "ok":
                why = crosschecks.available(slot.backend.name)
                measured["crosscheck"] = {"error": why} if why else crosschecks.summarise(
                    slot.vendor.get(threads, []), measured.get("median_ms"), measured.get("round_spread"),
                    threads=threads, dtype=slot.plan.dtype, warmup=plan.warmup)
            if plan.breakdown is not None and measured["status"] == "ok":
                report(f"breakdown · {slot.model} · {slot.backend.name} · b{slot.batch} t{threads}", done, total)
                measured["breakdown"] = _breakdown(slot, threads, workdir, measured.get("median_ms"))
            record(order, base, threads, form=slot.chosen, **_accuracy(slot, runs[-1]), **measured)

        for seq, name, backend, batch, form, shape, at_dtype, reason in skipped:
            for t, threads in enumerate(plan.threads):
                record((seq, t), dict(model=name, backend=backend, batch=batch, form_requested=form, shape=shape,
                                      plan=at_dtype), threads, form=form, status="skipped", error=reason)

        pending = {(i, t) for i in range(len(slots)) for t in range(len(plan.threads))}
        total = len(pending) * plan.rounds  # grows while --until-stable adds rounds
        done, rnd = 0, 0
        deadline = time.monotonic() + plan.budget if plan.until_stable is not None and plan.budget else None
        while pending:
            rounds_text = f"{rnd + 1}/{plan.rounds}" if plan.until_stable is None or rnd < plan.rounds else f"{rnd + 1}"
            for i, slot in enumerate(slots):
                for t, threads in enumerate(plan.threads):
                    if (i, t) not in pending:
                        continue
                    label = f"round {rounds_text} · {slot.model} · {slot.backend.name} · b{slot.batch} t{threads}"
                    if len(plan.dtypes) > 1:
                        label += f" {slot.plan.dtype}"
                    report(label, done, total)
                    done += 1
                    if plan.timed:  # how fast the host itself is, just before this measurement
                        slot.sentinel.setdefault(threads, []).append(sentinel.sample(threads=threads))
                    if slot.chosen is None:
                        result = _resolve(slot, threads, workdir)
                        if result is None:  # every candidate failed: the slot is done at every thread count
                            for t_all in range(len(plan.threads)):
                                if (i, t_all) in pending:
                                    finish(slot, t_all)
                                    pending.discard((i, t_all))
                            continue
                    else:
                        spec = _spec(slot, slot.chosen, slot.artifact, threads)
                        result = run_worker(spec, workdir, plan.timeout)
                    slot.results.setdefault(threads, []).append(result)
                    if plan.crosscheck and result["status"] == "ok" and slot.artifact is not None and \
                            crosschecks.available(slot.backend.name) is None:
                        report(f"{label} · {crosschecks.tool_for(slot.backend.name)}", done, total)
                        slot.vendor.setdefault(threads, []).append(crosschecks.run_round(
                            slot.backend.name, slot.artifact.path, threads=threads, shape=slot.shape,
                            dtype=slot.plan.dtype, min_time=plan.min_time, min_runs=plan.min_runs,
                            warmup=plan.warmup, timeout=plan.timeout))
                    stop = _stop(plan, slot.results[threads], rnd + 1, deadline)
                    if stop is not None:  # stored at once: an interrupted sweep keeps what it finished
                        slot.stopped[threads] = stop
                        finish(slot, t)
                        pending.discard((i, t))
            rnd += 1
            total = max(total, done + len(pending))
        report("done", total, total)
    return [done_records[key] for key in sorted(done_records)]


def _stop(plan: BenchPlan, runs: list[dict], rounds: int, deadline: float | None) -> str | None:
    """Why a measurement's rounds end now, or None to run another: the planned rounds; with
    ``--until-stable PCT`` not before the interval of its round medians is within PCT (or ``max_rounds``, or the
    time budget, ends it). A failed round ends it at once."""
    if runs and runs[-1]["status"] != "ok":
        return "failed"
    if rounds < plan.rounds:
        return None
    if plan.until_stable is None:
        return "rounds"
    ci = relative_ci([statistics.median(r["times"]) for r in runs if r.get("times")])
    if ci is not None and ci * 100 <= plan.until_stable:
        return "stable"
    if rounds >= plan.max_rounds:
        return "max rounds"
    if deadline is not None and time.monotonic() > deadline:
        return "budget"
    return None


def _accuracy(slot: _Slot, result: dict) -> dict:
    """The image scores of a worker's result, with what the slot knows (image source, skipped, calibration)."""
    scores = {k: result.get(k) for k in ("images", "top1", "top5", "top1_agreement", "logit_cosine")}
    return {**scores, **slot.accuracy}


def _aggregate(runs: list[dict], slot: _Slot, threads: int) -> dict:
    """One record from the rounds of one measurement: pooled statistics, round-to-round spread, cold start."""
    art, plan = slot.artifact, slot.plan
    last = runs[-1]
    common = dict(
        export_s=art.export_s if art else last.get("export_s"), artifact_bytes=art.size if art else None,
        cached=art.cached if art else None, precision=last.get("precision"), explain=last.get("explain") or {},
        rounds=len(runs), error="; ".join(slot.notes) or None,
    )
    for i, r in enumerate(runs):
        if r["status"] != "ok":
            return dict(status=r["status"], error=f"round {i + 1}: {r.get('error')}",
                        parity_max_abs=r.get("parity_max_abs"), parity_ok=False if r["status"] == "parity-failed" else None,
                        **{k: v for k, v in common.items() if k != "error"})
    middle = lambda key: statistics.median(r[key] for r in runs) if all(r.get(key) is not None for r in runs) else None  # noqa: E731
    if not plan.timed:  # accuracy only (eval): cold start and memory, no latency
        return dict(status="ok", parity_max_abs=max(r["parity_max_abs"] for r in runs), parity_ok=True,
                    import_s=middle("import_s"), load_s=middle("load_s"), first_ms=middle("first_ms"),
                    rss_base_mb=middle("rss_base_mb"), peak_rss_mb=middle("peak_rss_mb"), **common)
    stats = summarize([t for r in runs for t in r["times"]], plan.noisy_cv)
    medians = [statistics.median(r["times"]) * 1e3 for r in runs]
    host = slot.sentinel.get(threads, [])
    host_spread = relative_range(host)
    ci = relative_ci(medians)
    return dict(
        sentinel_ms=statistics.median(host) if host else None, sentinel_spread=host_spread,
        host_varied=None if host_spread is None else host_spread > sentinel.HOST_VARIED,
        ci_pct=None if ci is None else 100 * ci, stop=slot.stopped.get(threads),
        status="ok", median_ms=stats.median_ms, mean_ms=stats.mean_ms, p10_ms=stats.p10_ms, p90_ms=stats.p90_ms,
        iqr_ms=stats.iqr_ms, cv=stats.cv, noisy=stats.noisy, runs=stats.runs,
        throughput=slot.batch / (stats.median_ms / 1e3), parity_max_abs=max(r["parity_max_abs"] for r in runs),
        parity_ok=True, round_spread=relative_range(medians),
        import_s=middle("import_s"), load_s=middle("load_s"), first_ms=middle("first_ms"),
        rss_base_mb=middle("rss_base_mb"), peak_rss_mb=middle("peak_rss_mb"), **common,
    )


@dataclass
class BenchOutcome:
    """What a stored run gives back: its records, the stored records int8 ratios look their fp32 record up in
    (None for an fp32-only run or without a store), and the store's path."""

    records: list[BenchRecord]
    history: pd.DataFrame | None
    store: str | None


def run_stored(plan: BenchPlan, store: str | os.PathLike | None = None, no_store: bool = False,
               progress: Progress | None = None) -> BenchOutcome:
    """:func:`run_bench` with the results store open (``store``, else the default; none with ``no_store``): the
    one runner of ``emobench bench`` and ``emobench eval``. Opening the store proves it writable before any
    work; every record is stored as it completes. Interrupted (SIGINT, SIGTERM: :class:`Interrupted`), it
    re-raises with ``stored`` (records this run stored) and ``store`` (its path; None without a store)."""
    with _interruptible():
        db = None if no_store else ResultStore(store)
        before = db.count() if db is not None else 0
        try:
            records = run_bench(plan, db, progress)
            history = db.records() if db is not None and plan.dtypes != ["fp32"] else None
            return BenchOutcome(records, history, None if db is None else str(db.path))
        except KeyboardInterrupt as err:  # Interrupted (SIGINT, SIGTERM) or a plain Ctrl-C: say what was kept
            err.stored = db.count() - before if db is not None else 0
            err.store = None if db is None else str(db.path)
            raise
        finally:
            if db is not None:
                db.close()
