"""int8 exports for the mobile runtimes: each runtime's own post-training static quantization, calibrated on
real images (``--calibration DIR``) or on seeded random inputs (flagged as such in the record).

- executorch: PT2E (``torch.export`` → ``prepare_pt2e`` with the XNNPACK quantizer, symmetric per-channel
  weights, per-tensor activations → calibrate → ``convert_pt2e``), lowered to the XNNPACK delegate.
- litert: the same PT2E flow with litert-torch's quantizer, converted by ``litert_torch.convert``; the model
  takes and returns int8 tensors (a full-integer model, as deployed), so the runner quantizes the input and
  dequantizes the outputs with the tensors' own scale and zero point.
- onnxruntime: ``onnxruntime.quantization.quantize_static`` to a QDQ model (uint8 activations, int8
  per-channel weights: ONNX Runtime's recommended CPU setting), after its ``quant_pre_process``.
- openvino: NNCF's ``nncf.quantize`` (default mixed preset) on the converted model.

Each export also reports which compute operators stayed in float (see the backends' explain reports).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: calibration inputs used when no --calibration folder is given (seeded normal noise, flagged in the record)
RANDOM_CALIBRATION = 32
#: images sampled from a --calibration folder (the runtimes' own examples use a few hundred at most)
CALIBRATION_IMAGES = 100

#: int8 parity: a record below either is ``parity-failed`` (see docs/benchmarking.md)
MIN_TOP1_AGREEMENT = 0.9
MIN_LOGIT_COSINE = 0.98


def random_calibration(shape: tuple[int, ...], count: int = RANDOM_CALIBRATION, seed: int = 2) -> np.ndarray:
    """``count`` seeded standard-normal inputs of one image's shape (C, H, W)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn((count, *shape), generator=g).numpy()


def _batches(calibration: np.ndarray, batch: int):
    """Calibration inputs at the export's static batch size (a short last batch is dropped, unless it is the only one)."""
    n = len(calibration)
    if n < batch:  # fewer images than one batch: repeat them
        reps = np.concatenate([calibration] * (batch // max(n, 1) + 1))[:batch]
        yield torch.from_numpy(np.ascontiguousarray(reps, dtype=np.float32))
        return
    for start in range(0, n - n % batch, batch):
        yield torch.from_numpy(np.ascontiguousarray(calibration[start:start + batch], dtype=np.float32))


def _pt2e(model: nn.Module, example: torch.Tensor, quantizer, calibration: np.ndarray, fold: bool = True):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = torch.export.export(model, (example,)).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for x in _batches(calibration, example.shape[0]):
            prepared(x)
    return convert_pt2e(prepared, fold_quantize=fold)


#: PT2E graph nodes that are quantization bookkeeping or structure, not computation
_PT2E_BOOKKEEPING = ("quantize_per", "dequantize_per", "choose_qparams", "getitem", "view", "reshape", "permute",
                     "transpose", "unsqueeze", "squeeze", "flatten", "clone", "contiguous", "expand", "slice",
                     "select", "split", "chunk", "cat", "unflatten", "pad", "_assert", "sym_size", "dropout", "unbind",
                     "alias", "detach", "identity")


def _op_name(node) -> str:
    name = getattr(node.target, "__name__", str(node.target))
    return name.split(".")[0].removeprefix("aten_")


def pt2e_precisions(graph_module) -> dict:
    """Compute operators of a converted PT2E graph by precision. An operator runs in int8 when its inputs come
    from dequantize nodes and its output goes to a quantize node (dq → op → q), directly or through a chain of
    single-use operators the delegate fuses (dq → conv → relu → q); one whose output stays float (dq →
    softmax → …) or whose inputs are float computes in float."""
    def is_op(node, prefix: str) -> bool:
        return node.op == "call_function" and _op_name(node).startswith(prefix)

    def activations(node) -> list:
        return [a for a in node.all_input_nodes if a.op in ("call_function", "placeholder")]

    def starts_quantized(node) -> bool:
        inputs = activations(node)
        if inputs and all(is_op(a, "dequantize_per") for a in inputs):
            return True
        return len(inputs) == 1 and inputs[0].op == "call_function" and len(inputs[0].users) == 1 \
            and not is_op(inputs[0], "quantize_per") and starts_quantized(inputs[0])

    def ends_quantized(node) -> bool:
        users = list(node.users)
        if users and all(is_op(u, "quantize_per") for u in users):
            return True
        return len(users) == 1 and users[0].op == "call_function" and activations(users[0]) == [node] \
            and ends_quantized(users[0])

    int8, floating = Counter(), Counter()
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or any(_op_name(node).startswith(b) for b in _PT2E_BOOKKEEPING):
            continue
        quantized = starts_quantized(node) and ends_quantized(node)
        (int8 if quantized else floating)[_op_name(node)] += 1
    return {"int8": dict(sorted(int8.items())), "float": dict(sorted(floating.items()))}


def _with_precisions(explain: dict, split: dict) -> dict:
    explain = dict(explain)
    explain["precisions"] = {"int8": sum(split["int8"].values()), "fp32": sum(split["float"].values())}
    explain["float"] = split["float"]
    explain["summary"] += f"; int8: {explain['precisions']['int8']} compute operators, float: {explain['precisions']['fp32']}"
    return explain


def write_executorch(model: nn.Module, example: torch.Tensor, path: Path, calibration: np.ndarray) -> dict:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from executorch.exir import to_edge_transform_and_lower

    from .backends import executorch_delegation

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    converted = _pt2e(model, example, quantizer, calibration)
    split = pt2e_precisions(converted)
    edge = to_edge_transform_and_lower(torch.export.export(converted, (example,)), partitioner=[XnnpackPartitioner()])
    explain = executorch_delegation(edge.exported_program().graph_module)
    path.write_bytes(edge.to_executorch().buffer)
    return _with_precisions(explain, split)


def write_litert(model: nn.Module, example: torch.Tensor, path: Path, calibration: np.ndarray) -> dict | None:
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    converted = _pt2e(model, example, quantizer, calibration, fold=False)
    litert_torch.convert(converted, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
    return None  # the interpreter reports what runs in int8 (LiteRT.open)


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


def write_openvino(model: nn.Module, example: torch.Tensor, path: Path, calibration: np.ndarray) -> dict | None:
    try:
        import nncf
    except ModuleNotFoundError:
        raise RuntimeError("OpenVINO's int8 export needs nncf (pip install 'emobench[openvino]')") from None
    import openvino as ov

    converted = ov.convert_model(model, example_input=example, input=[tuple(example.shape)])
    data = nncf.Dataset([x.numpy() for x in _batches(calibration, example.shape[0])])
    quantized = nncf.quantize(converted, data, subset_size=len(calibration))
    ov.save_model(quantized, str(path), compress_to_fp16=False)
    return None


WRITERS = {"executorch": write_executorch, "litert": write_litert, "onnxruntime": write_onnx, "openvino": write_openvino}


# --- what stayed in float, per runtime ---------------------------------------------------------------------

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


#: TFLite operators that are quantization bookkeeping or data movement
_TFLITE_BOOKKEEPING = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "TRANSPOSE", "SLICE", "STRIDED_SLICE", "CONCATENATION",
                       "PAD", "SQUEEZE", "EXPAND_DIMS", "GATHER", "SPLIT", "DELEGATE"}


def litert_split(ops: list[dict], tensor_types: dict[int, str]) -> tuple[dict, dict]:
    """(int8 operators, float compute operators) of a TFLite graph, by the type of each node's first input."""
    int8, floating = Counter(), Counter()
    for op in ops:
        if op["op_name"] in _TFLITE_BOOKKEEPING or not len(op["inputs"]):
            continue
        first = tensor_types.get(int(op["inputs"][0]), "")
        (int8 if first in ("int8", "uint8", "int16") else floating)[op["op_name"]] += 1
    return dict(sorted(int8.items())), dict(sorted(floating.items()))
