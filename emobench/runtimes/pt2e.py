"""int8 by PT2E (``torch.export`` → ``prepare_pt2e`` → calibrate → ``convert_pt2e``), shared by ExecuTorch and
LiteRT, and which compute operators of the converted graph run in int8."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torch import nn


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
