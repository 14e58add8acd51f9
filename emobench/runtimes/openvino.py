"""OpenVINO: ``openvino.convert_model``, a compiled CPU model, per-layer precisions from its runtime model, and
int8 by NNCF's ``nncf.quantize`` (default mixed preset)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emobench.runtimes.base import FileBackend, OpProfile, Session, _outputs, explain_counts, median_per_call
from emobench.runtimes.pt2e import _batches


#: emobench dtype → OpenVINO INFERENCE_PRECISION_HINT
_OPENVINO_DTYPES = {"fp32": "f32", "bf16": "bf16"}


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

    form_preference = ("cpu-ov", "reference", "mobile-tokens", "mobile")

    def write(self, model, example, path):
        import openvino as ov

        converted = ov.convert_model(model, example_input=example, input=[tuple(example.shape)])
        ov.save_model(converted, str(path), compress_to_fp16=False)
        return None

    def write_int8(self, model, example, path, calibration):
        return write_openvino(model, example, path, calibration)

    profiler = "OpenVINO per-layer performance counters (PERF_COUNT), layers → modules by their original layer names"

    def profile(self, artifact, threads, dtype, x, runs, warmup):
        import statistics
        import time

        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(str(artifact.path)), "CPU", {**self._config(threads, dtype), "PERF_COUNT": True})
        scopes, ops = openvino_layer_scopes(compiled)
        request = compiled.create_infer_request()
        inputs = [x.numpy()]
        for _ in range(warmup):
            request.infer(inputs)
        infos, walls = [], []
        for _ in range(runs):
            start = time.perf_counter()
            request.infer(inputs)
            walls.append((time.perf_counter() - start) * 1e3)
            infos.append({p.node_name: p for p in request.get_profiling_info()})
        # A layer may run in one call and be skipped in another (the plugin's dynamic choices): every layer that
        # ran in any call, in execution order, with 0 ms in the calls that skipped it
        ran = [name for name in infos[-1] if any(_executed(info.get(name)) for info in infos)]
        calls = [[(name, ops.get(name, info[name].node_type), scopes.get(name, ""),
                   info[name].real_time.total_seconds() * 1e3 if _executed(info.get(name)) else 0.0)
                  for name in ran] for info in infos]
        return OpProfile(self.profiler, median_per_call(calls), statistics.median(walls), runs)

    @staticmethod
    def _config(threads: int, dtype: str) -> dict:
        # The CPU plugin computes in bf16 by default on CPUs with AVX512_BF16/AMX: fp32 must be asked for.
        # int8: the quantized layers run in int8 whatever the hint; the rest computes in fp32, as asked
        return {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": _OPENVINO_DTYPES.get(dtype, "f32"),
                "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}

    def open(self, artifact, threads, dtype):
        import openvino as ov

        core = ov.Core()
        if dtype == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise RuntimeError("this CPU has no bf16 support in OpenVINO")
        compiled = core.compile_model(core.read_model(str(artifact.path)), "CPU", self._config(threads, dtype))
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


def _executed(info) -> bool:
    return info is not None and str(info.status).rsplit(".", 1)[-1] == "EXECUTED"


def _module_of(layer: str) -> str | None:
    """``__module.blocks.6.ln/aten::mean/ReduceMean`` → ``blocks.6.ln``; a top-level ``aten::…`` layer → '';
    a name OpenVINO's own passes gave (``MatMul_6195``, no '/') → None."""
    if "/" not in layer:
        return None
    head = layer.split("/", 1)[0]
    return head.removeprefix("__module.") if head.startswith("__module.") else ""


def openvino_layer_scopes(compiled) -> tuple[dict[str, str], dict[str, str]]:
    """Each executed layer of a compiled model → (the torch module path it came from, its operator). The path is
    the most common among the original layers fused into it (the PyTorch frontend names them
    ``__module.PATH/aten::op/Type``); a Reorder the plugin inserted has none and takes its consumer's (its name
    ends with the consumer's). The operator is the layer type, except that a Subgraph holding a Softmax is the
    fused attention (``MHA``) and an element-wise layer from one original operation is that operation."""
    from collections import Counter

    original = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        names = str(info["originalLayersNames"].astype(str)) if "originalLayersNames" in info else ""
        original[op.get_friendly_name()] = ([n for n in names.split(",") if n], str(info["layerType"].astype(str)))
    scopes, ops = {}, {}
    for layer, (names, layer_type) in original.items():
        modules = Counter(m for m in map(_module_of, names) if m is not None)
        if modules:
            scopes[layer] = modules.most_common(1)[0][0]
        types = {n.rsplit("/", 1)[-1].rstrip("_0123456789") for n in names}
        if layer_type == "Subgraph" and any(t.startswith("Softmax") for t in types):
            ops[layer] = "MHA"
        elif layer_type in ("Eltwise", "Subgraph") and len(types) == 1:
            ops[layer] = types.pop()
        else:
            ops[layer] = layer_type
    for layer in original:
        if layer not in scopes:  # a Reorder: its name holds its neighbours' (``x_abcd_acdb_<consumer>``, ``<producer>_…_fake``)
            consumer = next((c for c in sorted(scopes, key=len, reverse=True) if c != layer and layer.endswith("_" + c)), None)
            named = re.search(r"__module\.([^/]+)/", layer)
            if consumer is not None:
                scopes[layer] = scopes[consumer]
            elif named:
                scopes[layer] = named.group(1)
    return scopes, ops


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
