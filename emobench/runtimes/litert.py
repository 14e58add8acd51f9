"""LiteRT (TFLite) through litert-torch: ``.tflite`` models run by the Interpreter with XNNPACK, and int8 by the
same PT2E flow with litert-torch's quantizer (a full-integer model: int8 in, int8 out, as deployed)."""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emobench.runtimes.base import FileBackend, Session, _outputs, explain_counts
from emobench.runtimes.pt2e import _pt2e


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

    form_preference = ("mobile-tokens", "mobile", "reference")

    def import_runtime(self) -> None:
        importlib.import_module("ai_edge_litert.interpreter")  # the converter is the parent's business

    def write(self, model, example, path):
        import litert_torch

        litert_torch.convert(model.eval(), (example,)).export(str(path))
        return None

    def write_int8(self, model, example, path, calibration):
        return write_litert(model, example, path, calibration)

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
            int8, floating = litert_split(ops, {i: np.dtype(d["dtype"]).name for i, d in tensors.items()})
            precision = "int8" if int8 else "fp32"
            explain = {**explain, "float": floating, "precisions": {"int8": sum(int8.values()), "fp32": sum(floating.values())},
                       "summary": explain["summary"] + f"; int8: {sum(int8.values())} operators, float: {sum(floating.values())}"}
        return Session(run, precision, explain)


def write_litert(model: nn.Module, example: torch.Tensor, path: Path, calibration: np.ndarray) -> dict | None:
    import litert_torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    converted = _pt2e(model, example, quantizer, calibration, fold=False)
    litert_torch.convert(converted, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
    return None  # the interpreter reports what runs in int8 (LiteRT.open)


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
