"""The runtimes emobench measures on, by name: one module each (its export in fp32 and int8, its session, its
explain and precision report), registered here. ``BACKENDS[name]`` is what ``emobench bench -B name`` runs."""

from __future__ import annotations

from emobench.runtimes.base import Artifact, Backend, FileBackend, Session, explain_counts, weights_fingerprint
from emobench.runtimes.cuda import CudaCompile, CudaEager, cuda_event_seconds
from emobench.runtimes.executorch import ExecuTorch, executorch_delegation
from emobench.runtimes.litert import LiteRT, litert_delegation
from emobench.runtimes.onnxruntime import OnnxRuntime
from emobench.runtimes.openvino import OpenVINO
from emobench.runtimes.parity import TOLERANCE
from emobench.runtimes.torch_eager import TorchChannelsLast, TorchCompile, TorchEager

BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        TorchEager(), TorchChannelsLast(), TorchCompile(), OnnxRuntime(), OpenVINO(), ExecuTorch(), LiteRT(),
        CudaEager(), CudaCompile(),
    )
}

__all__ = ["BACKENDS", "TOLERANCE", "Artifact", "Backend", "FileBackend", "Session", "explain_counts", "weights_fingerprint",
           "CudaCompile", "CudaEager", "cuda_event_seconds", "ExecuTorch", "executorch_delegation", "LiteRT",
           "litert_delegation", "OnnxRuntime", "OpenVINO", "TorchChannelsLast", "TorchCompile", "TorchEager"]
