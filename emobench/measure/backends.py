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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

Runner = Callable[[torch.Tensor], torch.Tensor]

#: emobench dtype → OpenVINO INFERENCE_PRECISION_HINT
_OPENVINO_DTYPES = {"fp32": "f32", "bf16": "bf16"}

#: Default parity tolerance (max |difference| against eager fp32 torch) per compute dtype.
#: int8 has none: its parity is top-1 agreement and logit cosine on images (emobench.measure.quantize).
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2, "int8": None}


def cache_dir() -> Path:
    """Where exports are cached: ``EMOBENCH_CACHE`` itself, or ``artifacts`` in emobench's user cache folder."""
    from ..zoo import cache_dir as emobench_cache_dir

    base = emobench_cache_dir()
    return base if os.environ.get("EMOBENCH_CACHE") else base / "artifacts"


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
        return cache_dir() / self.name / f"{key}{self.suffix}"

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


def _litert_output_order(interp) -> list[int]:
    """Output tensor indices in the model's order: the signature names them ``output_0``, ``output_1``, … (the
    flat list of output details is not guaranteed to follow it)."""
    signatures = interp.get_signature_list()
    if len(signatures) == 1:
        names = next(iter(signatures.values()))["outputs"]
        runner_outputs = interp._get_full_signature_list()[next(iter(signatures))]["outputs"]
        keyed = sorted(names, key=lambda n: int(n.rsplit("_", 1)[-1]) if n.rsplit("_", 1)[-1].isdigit() else n)
        return [runner_outputs[n] for n in keyed]
    return [d["index"] for d in interp.get_output_details()]


def _atomic_path(path: Path) -> Path:
    """A temporary sibling with the same suffix (some exporters insist on it), renamed into place when done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def _torch_precision(dtype: str) -> str:
    """What eager torch computes fp32 matmuls in: reduced-precision matmul settings are reported, not hidden."""
    if dtype != "fp32":
        return dtype
    setting = torch.get_float32_matmul_precision()
    return "fp32" if setting == "highest" else f"fp32 (matmul precision '{setting}')"


def _eager_session(model: nn.Module, device: str, dtype: str, summary: str) -> Session:
    """Eager torch on ``device``: fp32, or bf16/fp16 through autocast; outputs back in fp32."""
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)

    def run(x):
        with torch.inference_mode(), torch.autocast(device, autocast, enabled=autocast is not None):
            out = model(x)
            return tuple(o.float() for o in out) if isinstance(out, (tuple, list)) else out.float()

    return Session(run, _torch_precision(dtype), explain_counts(summary))


def _compiled(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """``torch.compile`` and one call, so the compile happens here (timed as the export), not in the timing."""
    compiled = torch.compile(model)
    with torch.inference_mode():
        compiled(example)
    return compiled


class TorchEager(Backend):
    name = "torch"
    description = "PyTorch eager on the CPU (fp32, or bf16 autocast)"
    exports = False
    dtypes = ("fp32", "bf16")
    summary = "eager ATen CPU kernels, operator by operator"

    def open(self, artifact, threads, dtype):
        torch.set_num_threads(threads)  # the worker's own setting: nothing to restore
        return _eager_session(artifact.obj, "cpu", dtype, self.summary)


class TorchChannelsLast(TorchEager):
    name = "torch-cl"
    description = "PyTorch eager on the CPU, model and input in channels_last memory format"
    summary = "eager ATen CPU kernels on channels_last tensors"

    def export(self, model, example, path):
        return model.to(memory_format=torch.channels_last), None

    def open(self, artifact, threads, dtype):
        session = super().open(artifact, threads, dtype)
        run = session.run
        session.run = lambda x: run(x.contiguous(memory_format=torch.channels_last))
        return session


class TorchCompile(TorchEager):
    name = "torch-compile"
    description = "torch.compile (inductor) on the CPU; export time = first-call compile"
    exports = True
    summary = "inductor-generated C++/OpenMP kernels"

    def export(self, model, example, path):
        return _compiled(model, example), None


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
        from .quantize import WRITERS

        if self.name not in WRITERS:
            raise NotImplementedError(f"{self.name} has no int8 export")
        return self.export(model, example, path, lambda m, x, p: WRITERS[self.name](m, x, p, calibration))

    def load(self, path):
        return path


def _onnx_op_counts(path: str) -> Counter:
    import onnx

    return Counter(node.op_type for node in onnx.load(path, load_external_data=False).graph.node)


class OnnxRuntime(FileBackend):
    name = "onnxruntime"
    description = "ONNX (torch.onnx.export, opset 18) on ONNX Runtime's CPU execution provider"
    modules = ("onnxruntime", "onnx", "onnxscript")
    distribution = "onnxruntime"
    install = "onnx"
    suffix = ".onnx"
    dtypes = ("fp32", "int8")

    def import_runtime(self) -> None:
        importlib.import_module("onnxruntime")  # the exporter (onnx, onnxscript) is the parent's business

    def write(self, model, example, path):
        torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=18, external_data=False)
        return None

    def _options(self, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        return opts

    def open(self, artifact, threads, dtype):
        import onnxruntime as ort

        session = ort.InferenceSession(str(artifact.path), self._options(threads), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        run = lambda x: _outputs(session.run(None, {name: x.numpy()}))  # noqa: E731
        from .quantize import onnx_quantized

        precision = "int8" if dtype == "int8" and onnx_quantized(str(artifact.path)) else "fp32"
        return Session(run, precision, lambda: self._explain(artifact, threads))

    def _explain(self, artifact: Artifact, threads: int) -> dict:
        """The graph ONNX Runtime runs after its optimisations (fusions), by operator."""
        import tempfile

        import onnxruntime as ort

        exported = _onnx_op_counts(str(artifact.path))
        with tempfile.TemporaryDirectory() as tmp:
            opts = self._options(threads)
            opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            ort.InferenceSession(str(artifact.path), opts, providers=["CPUExecutionProvider"])
            optimized = _onnx_op_counts(opts.optimized_model_filepath)
        summary = (f"CPU execution provider runs every node: {sum(exported.values())} exported nodes, "
                   f"{sum(optimized.values())} after graph optimisation")
        if "QuantizeLinear" in exported:  # a QDQ model: what ONNX Runtime fused into int8 kernels, what stayed float
            from .quantize import onnx_split

            int8, floating = onnx_split(optimized)
            report = explain_counts(summary + f"; int8: {sum(int8.values())} operators, float: {sum(floating.values())}",
                                    accelerated=optimized, precisions={"int8": sum(int8.values()), "fp32": sum(floating.values())})
            return {**report, "float": floating}
        return explain_counts(summary, accelerated=optimized)


def _openvino_dtype(ov_type) -> str:
    name = str(getattr(ov_type, "get_type_name", lambda: ov_type)())
    return {"f32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16", "f16": "fp16", "float16": "fp16",
            "i8": "int8", "u8": "int8"}.get(name, name)


#: OpenVINO layer types whose runtime precision is the model's compute precision
_OPENVINO_COMPUTE = {"Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Eltwise", "Softmax", "MVN", "RMS"}


class OpenVINO(FileBackend):
    name = "openvino"
    description = "OpenVINO (ov.convert_model, static input shape) on the CPU plugin, latency hint"
    modules = ("openvino",)
    distribution = "openvino"
    install = "openvino"
    suffix = ".xml"
    companions = (".bin",)  # the weights
    dtypes = ("fp32", "bf16", "int8")

    def write(self, model, example, path):
        import openvino as ov

        converted = ov.convert_model(model, example_input=example, input=[tuple(example.shape)])
        ov.save_model(converted, str(path), compress_to_fp16=False)
        return None

    def open(self, artifact, threads, dtype):
        import openvino as ov

        core = ov.Core()
        if dtype == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise RuntimeError("this CPU has no bf16 support in OpenVINO")
        # The CPU plugin computes in bf16 by default on CPUs with AVX512_BF16/AMX: fp32 must be asked for.
        # int8: the quantized layers run in int8 whatever the hint; the rest computes in fp32, as asked
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": _OPENVINO_DTYPES.get(dtype, "f32"),
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        compiled = core.compile_model(core.read_model(str(artifact.path)), "CPU", config)
        request = compiled.create_infer_request()
        layers = [(op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["runtimePrecision"].astype(str))
                  for op in compiled.get_runtime_model().get_ordered_ops()]
        executed = sorted({_openvino_dtype(p) for t, p in layers if t in _OPENVINO_COMPUTE})
        precision = "+".join(executed) or _openvino_dtype(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if dtype == "int8" and "int8" in executed:  # int8 asked and run; float layers are listed in the report
            precision = "int8"
        compute = [(t, _openvino_dtype(p)) for t, p in layers if t not in ("Const", "Input", "Output")]
        explain = explain_counts(
            f"CPU plugin, inference precision {_openvino_dtype(compiled.get_property('INFERENCE_PRECISION_HINT'))}; "
            f"{len(compute)} executed layers", accelerated=Counter(t for t, _ in compute),
            precisions=Counter(p for _, p in compute),
        )
        if dtype == "int8":
            explain["float"] = dict(sorted(Counter(t for t, p in compute if t in _OPENVINO_COMPUTE and p != "int8").items()))
        outs = compiled.outputs

        def run(x):
            result = request.infer([x.numpy()])
            return _outputs([result[o] for o in outs])

        return Session(run, precision, explain)


def _clean_op(name: str) -> str:
    for prefix in ("aten_", "aten."):
        name = name.removeprefix(prefix)
    return name.removesuffix("_default").removesuffix(".default")


#: ExecuTorch graph nodes that compute nothing (tuple unpacking) and the summary row of its report
_EXECUTORCH_STRUCTURAL = {"getitem", "Total"}


def executorch_delegation(graph_module) -> dict:
    """Delegated and portable (fallback) operators of a lowered ExecuTorch program, and its delegate count."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    rows = [r for r in info.get_operator_delegation_dataframe().itertuples() if r.op_type not in _EXECUTORCH_STRUCTURAL]
    accelerated = {_clean_op(r.op_type): int(r.occurrences_in_delegated_graphs) for r in rows if r.occurrences_in_delegated_graphs}
    fallback = {_clean_op(r.op_type): int(r.occurrences_in_non_delegated_graphs) for r in rows if r.occurrences_in_non_delegated_graphs}
    summary = (f"XNNPACK delegate: {sum(accelerated.values())} operators in {info.num_delegated_subgraphs} "
               f"subgraph(s); {sum(fallback.values())} on portable kernels")
    return explain_counts(summary, accelerated, fallback, subgraphs=info.num_delegated_subgraphs)


class ExecuTorch(FileBackend):
    name = "executorch"
    description = "ExecuTorch .pte with the XNNPACK delegate (the mobile runtime, run on this host)"
    modules = ("executorch",)
    distribution = "executorch"
    install = "executorch"
    suffix = ".pte"
    dtypes = ("fp32", "int8")

    def import_runtime(self) -> None:
        importlib.import_module("executorch.runtime")
        importlib.import_module("executorch.extension.pybindings.portable_lib")

    def write(self, model, example, path):
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        program = torch.export.export(model, (example,))
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        explain = executorch_delegation(edge.exported_program().graph_module)
        path.write_bytes(edge.to_executorch().buffer)
        return explain

    def open(self, artifact, threads, dtype):
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        portable_lib._unsafe_reset_threadpool(threads)  # process-wide, and this process is the worker's own
        method = Runtime.get().load_program(str(artifact.path)).load_method("forward")
        explain = artifact.explain or explain_counts("no delegation report (artifact exported by an older emobench)")
        precision = "int8" if (explain.get("precisions") or {}).get("int8") else "fp32"
        return Session(lambda x: _outputs(method.execute([x])), precision, explain)


def litert_delegation(ops: list[dict]) -> dict:
    """Which nodes of a TFLite graph its delegate took, from the interpreter's node list.

    The interpreter lists the original nodes and one ``DELEGATE`` node per partition. A partition's nodes are
    those reached walking back from its outputs to its inputs; a node no partition reaches runs on a built-in
    kernel."""
    producer = {int(t): i for i, op in enumerate(ops) if op["op_name"] != "DELEGATE" for t in op["outputs"]}
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    taken: set[int] = set()
    for d in delegates:
        stop = {int(t) for t in d["inputs"]}
        stack = [int(t) for t in d["outputs"]]
        while stack:
            t = stack.pop()
            i = producer.get(t)
            if t in stop or i is None or i in taken:
                continue
            taken.add(i)
            stack.extend(int(u) for u in ops[i]["inputs"])
    nodes = [(i, op["op_name"]) for i, op in enumerate(ops) if op["op_name"] != "DELEGATE"]
    accelerated = Counter(name for i, name in nodes if i in taken)
    fallback = Counter(name for i, name in nodes if i not in taken)
    summary = (f"XNNPACK delegate: {sum(accelerated.values())} of {len(nodes)} nodes in {len(delegates)} "
               f"partition(s); {sum(fallback.values())} on built-in kernels")
    return explain_counts(summary, accelerated, fallback, subgraphs=len(delegates))


class LiteRT(FileBackend):
    name = "litert"
    description = "LiteRT / TFLite (litert-torch) with the XNNPACK delegate (the Android runtime)"
    modules = ("litert_torch", "ai_edge_litert")
    distribution = "ai-edge-litert"
    install = "litert"
    suffix = ".tflite"
    dtypes = ("fp32", "int8")

    def import_runtime(self) -> None:
        importlib.import_module("ai_edge_litert.interpreter")  # the converter is the parent's business

    def write(self, model, example, path):
        import litert_torch

        litert_torch.convert(model.eval(), (example,)).export(str(path))
        return None

    def open(self, artifact, threads, dtype):
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(artifact.path), num_threads=threads)
        interp.allocate_tensors()
        detail = interp.get_input_details()[0]
        inp = detail["index"]
        outs = _litert_output_order(interp)
        # a full-integer model takes and returns int8: quantize the input, dequantize the outputs (as an app does)
        tensors = {d["index"]: d for d in interp.get_tensor_details()}
        in_scale, in_zero = detail["quantization"] if detail["dtype"] != np.float32 else (None, None)

        def real(index):
            value = interp.get_tensor(index)
            scale, zero = tensors[index]["quantization"]
            return value if value.dtype == np.float32 or not scale else (value.astype(np.float32) - zero) * scale

        def run(x):
            value = x.numpy()
            if in_scale:
                info = np.iinfo(detail["dtype"])
                value = np.clip(np.round(value / in_scale + in_zero), info.min, info.max).astype(detail["dtype"])
            interp.set_tensor(inp, value)
            interp.invoke()
            return _outputs([real(o) for o in outs])

        ops = interp._get_ops_details()
        explain = litert_delegation(ops)
        precision = "fp32"
        if dtype == "int8":
            from .quantize import litert_split

            int8, floating = litert_split(ops, {i: np.dtype(d["dtype"]).name for i, d in tensors.items()})
            precision = "int8" if int8 else "fp32"
            explain = {**explain, "float": floating, "precisions": {"int8": sum(int8.values()), "fp32": sum(floating.values())},
                       "summary": explain["summary"] + f"; int8: {sum(int8.values())} operators, float: {sum(floating.values())}"}
        return Session(run, precision, explain)


class CudaEager(Backend):
    name = "cuda"
    description = "PyTorch eager on a CUDA GPU (fp32, or fp16/bf16 autocast); timed with CUDA events"
    dtypes = ("fp32", "fp16", "bf16")
    device = "cuda"
    exports = False
    summary = "eager ATen CUDA kernels"

    def unavailable(self):
        return None if torch.cuda.is_available() else "no CUDA device"

    def export(self, model, example, path):
        return model.to("cuda"), None

    def open(self, artifact, threads, dtype):
        if dtype == "fp32":
            # cuDNN convolutions default to TF32 on Ampere and newer: fp32 means fp32.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        return _eager_session(artifact.obj, "cuda", dtype, self.summary)

    def sync(self):
        return torch.cuda.synchronize


class CudaCompile(CudaEager):
    name = "cuda-compile"
    description = "torch.compile (inductor) on a CUDA GPU"
    exports = True
    summary = "inductor-generated Triton kernels"

    def export(self, model, example, path):
        return _compiled(model.to("cuda"), example.to("cuda")), None


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
