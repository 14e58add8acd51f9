"""Eager and compiled torch on a CUDA GPU, timed with CUDA events."""

from __future__ import annotations

from typing import Callable

import torch

from emobench.runtimes.base import Backend
from emobench.runtimes.torch_eager import _compiled, _eager_session


class CudaEager(Backend):
    name = "cuda"
    description = "PyTorch eager on a CUDA GPU (fp32, or fp16/bf16 autocast); timed with CUDA events"
    dtypes = ("fp32", "fp16", "bf16")
    device = "cuda"
    exports = False
    summary = "eager ATen CUDA kernels"

    form_preference = ("fused", "reference")

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


def cuda_event_seconds(call: Callable[[], object]) -> float:
    """Time one call on the GPU with CUDA events (device time, not host time)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3
