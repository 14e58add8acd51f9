"""ONNX Runtime: the ``torch.onnx`` export, a CPU session, its graph optimisations explained, and static int8
(``quantize_static`` to QDQ, uint8 activations, int8 per-channel weights, after ``quant_pre_process``)."""

from __future__ import annotations

import contextlib
import importlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emobench.runtimes.base import Artifact, FileBackend, OpProfile, Session, _outputs, explain_counts, median_per_call
from emobench.runtimes.pt2e import _batches


_TORCHLIB_REGISTRIES: dict = {}


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path | str) -> None:
    """``torch.onnx.export`` (dynamo, opset 18, one file), with its registry of torchlib functions built once
    per process: the exporter rebuilds it on every call (about 1 s of parsing onnxscript sources here, more than
    exporting a block takes), and emobench exports many small cuts. Each export gets its own copy."""
    with _registry_built_once():
        torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=18, external_data=False)


@contextlib.contextmanager
def _registry_built_once():
    try:
        from torch.onnx._internal.exporter import _registration
        build = _registration.ONNXRegistry.__dict__["from_torchlib"]
    except (ImportError, AttributeError, KeyError):  # another torch: its exporter as it is
        yield
        return
    cls = _registration.ONNXRegistry

    def from_torchlib(_cls, opset_version=18):
        if opset_version not in _TORCHLIB_REGISTRIES:
            _TORCHLIB_REGISTRIES[opset_version] = build.__func__(cls, opset_version=opset_version)
        built = _TORCHLIB_REGISTRIES[opset_version]
        copy = cls()
        copy._opset_version = built._opset_version
        copy.functions = {op: list(metas) for op, metas in built.functions.items()}
        return copy

    cls.from_torchlib = classmethod(from_torchlib)
    try:
        yield
    finally:
        cls.from_torchlib = build


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

    form_preference = ("cpu-ort", "reference", "mobile-tokens", "fused")

    def import_runtime(self) -> None:
        importlib.import_module("onnxruntime")  # the exporter (onnx, onnxscript) is the parent's business

    def write(self, model, example, path):
        export_onnx(model, example, path)
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

    def write_int8(self, model, example, path, calibration):
        return write_onnx(model, example, path, calibration)

    def open(self, artifact, threads, dtype):
        import onnxruntime as ort

        session = ort.InferenceSession(str(artifact.path), self._options(threads), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        run = lambda x: _outputs(session.run(None, {name: x.numpy()}))  # noqa: E731
        precision = "int8" if dtype == "int8" and onnx_quantized(str(artifact.path)) else "fp32"
        return Session(run, precision, lambda: self._explain(artifact, threads))

    profiler = "ONNX Runtime session profiler (node events), nodes → modules by the exporter's name scopes"

    def profile(self, artifact, threads, dtype, x, runs, warmup):
        import json
        import statistics
        import tempfile
        import time

        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            opts = self._options(threads)
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(tmp) / "profile")
            opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")  # the graph the profile names
            session = ort.InferenceSession(str(artifact.path), opts, providers=["CPUExecutionProvider"])
            feed = {session.get_inputs()[0].name: x.numpy()}
            for _ in range(warmup):
                session.run(None, feed)
            walls = []
            for _ in range(runs):
                start = time.perf_counter()
                session.run(None, feed)
                walls.append((time.perf_counter() - start) * 1e3)
            events = json.loads(Path(session.end_profiling()).read_text())
            scopes = onnx_node_scopes(str(artifact.path), opts.optimized_model_filepath)
        spans = [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e["name"] == "model_run"][-runs:]
        calls: list[list] = [[] for _ in spans]
        suffix = "_kernel_time"
        for e in sorted((e for e in events if e.get("cat") == "Node" and e["name"].endswith(suffix)), key=lambda e: e["ts"]):
            i = next((i for i, (a, b) in enumerate(spans) if a <= e["ts"] <= b), None)
            if i is not None:
                name = e["name"][: -len(suffix)]
                calls[i].append((name, e["args"].get("op_name", "?"), scopes.get(name, ""), e["dur"] / 1e3))
        return OpProfile(self.profiler, median_per_call(calls), statistics.median(walls), runs)

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
            int8, floating = onnx_split(optimized)
            report = explain_counts(summary + f"; int8: {sum(int8.values())} operators, float: {sum(floating.values())}",
                                    accelerated=optimized, precisions={"int8": sum(int8.values()), "fp32": sum(floating.values())})
            return {**report, "float": floating}
        return explain_counts(summary, accelerated=optimized)


def _name_scope(node) -> str:
    """The torch module path the dynamo exporter recorded for a node ('' at the top level): its name scopes
    are ``['', 'blocks', 'blocks.5', 'conv2d_17']``, the last one the node itself."""
    import ast

    meta = {p.key: p.value for p in node.metadata_props}
    try:
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
    except (ValueError, SyntaxError):
        return ""
    return scopes[-2] if len(scopes) > 1 else ""


def onnx_node_scopes(exported: str, optimized: str) -> dict[str, str]:
    """Every node of ONNX Runtime's optimised graph → the torch module path it came from. A node keeps its
    exported name, or that name with a fusion suffix (``…/FusedConvFusion``); NCHWc convolutions are named
    after the value they compute (``conv2d_3_nchwc``); any other node inherits from the value it writes or,
    failing that, from what it reads (layout reorders, split Q/K)."""
    import re

    import onnx

    by_node, by_value = {}, {}
    for node in onnx.load(exported, load_external_data=False).graph.node:
        by_node[node.name] = by_value_scope = _name_scope(node)
        for value in node.output:
            by_value[value] = by_value_scope
    graph = onnx.load(optimized, load_external_data=False).graph
    scopes: dict[str, str] = {}
    for node in graph.node:
        base = re.sub(r"/[A-Za-z]*Fusion/?.*$", "", node.name)
        stem = node.name.removesuffix("_nchwc")
        for candidate in (node.name, base):
            if candidate in by_node:
                scopes[node.name] = by_node[candidate]
                break
        else:
            if stem != node.name and stem in by_value:
                scopes[node.name] = by_value[stem]
            elif any(v in by_value for v in node.output):
                scopes[node.name] = by_value[next(v for v in node.output if v in by_value)]
    producer = {v: n.name for n in graph.node for v in n.output}
    for _ in range(len(graph.node)):  # neighbours' scopes, until nothing changes
        changed = False
        for node in graph.node:
            if node.name in scopes:
                continue
            for value in node.input:
                source = by_value.get(value, scopes.get(producer.get(value, "")))
                if source is not None:
                    scopes[node.name] = source
                    changed = True
                    break
        if not changed:
            break
    return scopes


def write_onnx(model: nn.Module, example: torch.Tensor, path: Path, calibration: np.ndarray) -> dict | None:
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        export_onnx(model, example, fp32)
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        name = onnx.load(str(pre), load_external_data=False).graph.input[0].name
        feeds = iter([{name: x.numpy()} for x in _batches(calibration, example.shape[0])])

        class Reader(CalibrationDataReader):
            def get_next(self):
                return next(feeds, None)

        reader = Reader()
        quantize_static(str(pre), str(path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return None


#: ONNX operators that compute in int8 in ONNX Runtime (QDQ groups it fused) and the bookkeeping around them
_ONNX_INT8 = ("QLinear", "ConvInteger", "MatMulInteger", "DynamicQuantize", "QGemm", "QAttention", "QOrdered")


_ONNX_BOOKKEEPING = {"QuantizeLinear", "DequantizeLinear", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice",
                     "Concat", "Split", "Flatten", "Identity", "Shape", "Gather", "Constant", "Cast", "Pad"}


def onnx_split(optimized: Counter) -> tuple[dict, dict]:
    """(int8 operators, float compute operators) of the graph ONNX Runtime runs after its optimisations."""
    int8 = {op: n for op, n in optimized.items() if op.startswith(_ONNX_INT8)}
    floating = {op: n for op, n in optimized.items() if op not in int8 and op not in _ONNX_BOOKKEEPING}
    return int8, floating


def onnx_quantized(path: str) -> bool:
    import onnx

    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type.startswith(_ONNX_INT8)
               for n in onnx.load(path, load_external_data=False).graph.node)
