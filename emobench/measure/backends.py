"""Inference backends for ``emobench bench``: one export step (cached on disk) and one runner per thread count.

Each backend converts the model once per (model, weights, input shape, backend version), stores the artifact in
the user's cache directory, and reloads it on the next run instead of exporting again. A backend whose package
is missing reports why and how to install it; it never crashes the sweep.
"""

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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

Runner = Callable[[torch.Tensor], torch.Tensor]

#: Default parity tolerance (max |difference| against eager fp32 torch) per compute dtype.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}


def cache_dir() -> Path:
    env = os.environ.get("EMOBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("emobench", appauthor=False)) / "artifacts"


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

    @property
    def size(self) -> int | None:
        """Bytes on disk, companion files (OpenVINO's .bin weights) included."""
        if self.path is None:
            return None
        files = [self.path, *(self.path.with_suffix(s) for s in self.companions)]
        return sum(f.stat().st_size for f in files if f.exists())


class Backend:
    """A way to run a model. Subclasses set the class attributes and implement ``export`` and ``runner``."""

    name: str = ""
    description: str = ""
    modules: tuple[str, ...] = ()  # import names that must be present
    distribution: str = "torch"  # whose version identifies the artifact
    install: str = ""  # the pip extra that installs it
    suffix: str | None = None  # artifact file suffix; None: nothing to cache
    dtypes: tuple[str, ...] = ("fp32",)
    device: str = "cpu"
    exports: bool = True  # False: nothing is converted, so there is no export time
    companions: tuple[str, ...] = ()  # suffixes of files written beside the artifact

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

    def artifact_path(self, key: str) -> Path | None:
        if self.suffix is None:
            return None
        return cache_dir() / self.name / f"{key}{self.suffix}"

    def prepare(self, model: nn.Module, example: torch.Tensor, key: str) -> Artifact:
        """Export (or load the cached export of) ``model`` for inputs shaped like ``example``."""
        path = self.artifact_path(key)
        meta = path.with_suffix(path.suffix + ".json") if path else None
        if path is not None and path.exists() and meta.exists():
            info = json.loads(meta.read_text())
            return Artifact(self.load(path), path, info.get("export_s"), cached=True, companions=self.companions)
        start = time.perf_counter()
        with _quiet():
            obj = self.export(model, example, path)
        export_s = time.perf_counter() - start if self.exports else None
        if path is not None:
            meta.write_text(json.dumps({"export_s": export_s, "version": self.version()}))
        return Artifact(obj, path, export_s, cached=False, companions=self.companions)

    def session(self, artifact: Artifact, threads: int, dtype: str) -> Runner:
        """``runner`` with the runtime's start-up chatter silenced."""
        with _quiet():
            return self.runner(artifact, threads, dtype)

    def export(self, model: nn.Module, example: torch.Tensor, path: Path | None) -> object:
        return model

    def load(self, path: Path) -> object:
        raise NotImplementedError

    def runner(self, artifact: Artifact, threads: int, dtype: str) -> Runner:
        raise NotImplementedError

    def sync(self) -> Callable[[], None] | None:
        return None

    def release(self) -> None:
        """Undo process-wide settings a runner made (called after each measurement)."""


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


def _atomic_path(path: Path) -> Path:
    """A temporary sibling with the same suffix (some exporters insist on it), renamed into place when done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


class TorchEager(Backend):
    name = "torch"
    description = "PyTorch eager on the CPU (fp32, or bf16 autocast)"
    exports = False
    dtypes = ("fp32", "bf16")

    _saved_threads: int | None = None

    def runner(self, artifact, threads, dtype):
        model = artifact.obj
        autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)
        # Set once for the measurement (release() restores it), not per call inside the timed loop.
        if self._saved_threads is None:
            self._saved_threads = torch.get_num_threads()
        torch.set_num_threads(threads)

        def run(x):
            with torch.inference_mode(), torch.autocast("cpu", autocast, enabled=autocast is not None):
                return model(x).float()

        return run

    def release(self) -> None:
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None


class TorchChannelsLast(TorchEager):
    name = "torch-cl"
    description = "PyTorch eager on the CPU, model and input in channels_last memory format"

    def export(self, model, example, path):
        return model.to(memory_format=torch.channels_last)

    def runner(self, artifact, threads, dtype):
        run = super().runner(artifact, threads, dtype)
        return lambda x: run(x.contiguous(memory_format=torch.channels_last))


class TorchCompile(TorchEager):
    name = "torch-compile"
    description = "torch.compile (inductor) on the CPU; export time = first-call compile"
    exports = True

    def export(self, model, example, path):
        compiled = torch.compile(model)
        with torch.inference_mode():
            compiled(example)  # compiles
        return compiled


class FileBackend(Backend):
    """A backend whose export is a file: written under a temporary name and renamed into place when complete,
    so an interrupted export never leaves a half-written artifact in the cache."""

    def export(self, model, example, path):
        tmp = _atomic_path(path)
        self.write(model, example, tmp)
        for suffix in self.companions:
            tmp.with_suffix(suffix).replace(path.with_suffix(suffix))
        tmp.replace(path)
        return path

    def write(self, model: nn.Module, example: torch.Tensor, path: Path) -> None:
        raise NotImplementedError

    def load(self, path):
        return path


class OnnxRuntime(FileBackend):
    name = "onnxruntime"
    description = "ONNX (torch.onnx.export, opset 18) on ONNX Runtime's CPU execution provider"
    modules = ("onnxruntime", "onnx", "onnxscript")
    distribution = "onnxruntime"
    install = "onnx"
    suffix = ".onnx"

    def write(self, model, example, path):
        torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=18, external_data=False)

    def runner(self, artifact, threads, dtype):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(artifact.path), opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


class OpenVINO(FileBackend):
    name = "openvino"
    description = "OpenVINO (ov.convert_model) on the CPU plugin"
    modules = ("openvino",)
    distribution = "openvino"
    install = "openvino"
    suffix = ".xml"
    companions = (".bin",)  # the weights

    def write(self, model, example, path):
        import openvino as ov

        ov.save_model(ov.convert_model(model, example_input=example), str(path), compress_to_fp16=False)

    def runner(self, artifact, threads, dtype):
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(str(artifact.path)), "CPU", {"INFERENCE_NUM_THREADS": threads})
        request = compiled.create_infer_request()
        return lambda x: torch.from_numpy(request.infer([x.numpy()])[compiled.output(0)].copy())


class ExecuTorch(FileBackend):
    name = "executorch"
    description = "ExecuTorch .pte with the XNNPACK delegate (the mobile runtime, run on this host)"
    modules = ("executorch",)
    distribution = "executorch"
    install = "executorch"
    suffix = ".pte"

    def write(self, model, example, path):
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        program = torch.export.export(model, (example,))
        path.write_bytes(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)

    def runner(self, artifact, threads, dtype):
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        # The threadpool is process-wide: remember its size so release() can put it back.
        if self._saved_threads is None:
            self._saved_threads = portable_lib._threadpool_get_thread_count()
        portable_lib._unsafe_reset_threadpool(threads)
        method = Runtime.get().load_program(str(artifact.path)).load_method("forward")
        return lambda x: method.execute([x])[0]

    _saved_threads: int | None = None

    def release(self) -> None:
        if self._saved_threads is not None:
            from executorch.extension.pybindings import portable_lib

            with _quiet():  # the runtime logs the reset from C++
                portable_lib._unsafe_reset_threadpool(self._saved_threads)
            self._saved_threads = None


class LiteRT(FileBackend):
    name = "litert"
    description = "LiteRT / TFLite (litert-torch) with the XNNPACK delegate (the Android runtime)"
    modules = ("litert_torch", "ai_edge_litert")
    distribution = "ai-edge-litert"
    install = "litert"
    suffix = ".tflite"

    def write(self, model, example, path):
        import litert_torch

        litert_torch.convert(model.eval(), (example,)).export(str(path))

    def runner(self, artifact, threads, dtype):
        from ai_edge_litert.interpreter import Interpreter

        with contextlib.redirect_stderr(io.StringIO()):
            interp = Interpreter(model_path=str(artifact.path), num_threads=threads)
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]

        def run(x):
            interp.set_tensor(inp, x.numpy())
            interp.invoke()
            return torch.from_numpy(interp.get_tensor(out).copy())

        return run


class CudaEager(Backend):
    name = "cuda"
    description = "PyTorch eager on a CUDA GPU (fp32, or fp16/bf16 autocast); timed with CUDA events"
    dtypes = ("fp32", "fp16", "bf16")
    device = "cuda"
    exports = False

    def unavailable(self):
        return None if torch.cuda.is_available() else "no CUDA device"

    def export(self, model, example, path):
        return model.to("cuda")

    def runner(self, artifact, threads, dtype):
        model = artifact.obj
        autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)

        def run(x):
            with torch.inference_mode(), torch.autocast("cuda", autocast, enabled=autocast is not None):
                return model(x).float()

        return run

    def sync(self):
        return torch.cuda.synchronize


class CudaCompile(CudaEager):
    name = "cuda-compile"
    description = "torch.compile (inductor) on a CUDA GPU"
    exports = True

    def export(self, model, example, path):
        compiled = torch.compile(model.to("cuda"))
        with torch.inference_mode():
            compiled(example.to("cuda"))
        return compiled


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        TorchEager(), TorchChannelsLast(), TorchCompile(), OnnxRuntime(), OpenVINO(), ExecuTorch(), LiteRT(),
        CudaEager(), CudaCompile(),
    )
}


def cuda_event_seconds(call: Callable[[], object]) -> float:
    """Time one call on the GPU with CUDA events (device time, not host time)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3
