"""ONNX Runtime: the ``torch.onnx`` export, a CPU session, its graph optimisations explained, and static int8
(``quantize_static`` to QDQ, uint8 activations, int8 per-channel weights, after ``quant_pre_process``)."""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emobench.runtimes.base import Artifact, FileBackend, Session, _outputs, explain_counts
from emobench.runtimes.pt2e import _batches


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

    def write_int8(self, model, example, path, calibration):
        return write_onnx(model, example, path, calibration)

    def open(self, artifact, threads, dtype):
        import onnxruntime as ort

        session = ort.InferenceSession(str(artifact.path), self._options(threads), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        run = lambda x: _outputs(session.run(None, {name: x.numpy()}))  # noqa: E731
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
            int8, floating = onnx_split(optimized)
            report = explain_counts(summary + f"; int8: {sum(int8.values())} operators, float: {sum(floating.values())}",
                                    accelerated=optimized, precisions={"int8": sum(int8.values()), "fp32": sum(floating.values())})
            return {**report, "float": floating}
        return explain_counts(summary, accelerated=optimized)


def write_onnx(model: nn.Module, example: torch.Tensor, path: Path, calibration: np.ndarray) -> dict | None:
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        torch.onnx.export(model, (example,), str(fp32), dynamo=True, opset_version=18, external_data=False)
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
