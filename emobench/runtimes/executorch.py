"""ExecuTorch with the XNNPACK delegate: lowered ``.pte`` programs, what was delegated, and int8 by PT2E with
the XNNPACK quantizer (symmetric per-channel weights, per-tensor activations)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emobench.runtimes.base import FileBackend, Session, _clean_op, _outputs, explain_counts
from emobench.runtimes.pt2e import _pt2e, _with_precisions, pt2e_precisions


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

    form_preference = ("mobile", "official", "fused", "reference")

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

    def write_int8(self, model, example, path, calibration):
        return write_executorch(model, example, path, calibration)

    def open(self, artifact, threads, dtype):
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        portable_lib._unsafe_reset_threadpool(threads)  # process-wide, and this process is the worker's own
        method = Runtime.get().load_program(str(artifact.path)).load_method("forward")
        explain = artifact.explain or explain_counts("no delegation report (artifact exported by an older emobench)")
        precision = "int8" if (explain.get("precisions") or {}).get("int8") else "fp32"
        return Session(lambda x: _outputs(method.execute([x])), precision, explain)


def write_executorch(model: nn.Module, example: torch.Tensor, path: Path, calibration: np.ndarray) -> dict:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from executorch.exir import to_edge_transform_and_lower


    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    converted = _pt2e(model, example, quantizer, calibration)
    split = pt2e_precisions(converted)
    edge = to_edge_transform_and_lower(torch.export.export(converted, (example,)), partitioner=[XnnpackPartitioner()])
    explain = executorch_delegation(edge.exported_program().graph_module)
    path.write_bytes(edge.to_executorch().buffer)
    return _with_precisions(explain, split)
