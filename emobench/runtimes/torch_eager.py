"""Eager torch on the CPU: as built, channels-last, and ``torch.compile``d."""

from __future__ import annotations

import torch
from torch import nn

from emobench.runtimes.base import Backend, Session, explain_counts


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

    form_preference = ("fused", "reference")

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
