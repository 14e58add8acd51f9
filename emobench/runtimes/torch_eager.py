"""Eager torch on the CPU: as built, channels-last, and ``torch.compile``d."""

from __future__ import annotations

import torch
from torch import nn

from emobench.runtimes.base import Backend, OpProfile, Session, explain_counts, median_per_call


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


_CALL = "emobench::call"
_SCOPE = "module::"


def profile_eager(model: nn.Module, run, x: torch.Tensor, runs: int, warmup: int) -> tuple[list[list], list[float]]:
    """torch.profiler over ``runs`` calls of ``run(x)``, every module's forward opened as a ``module::PATH``
    range (forward hooks, removed after): per call, its top-level aten operators (those not inside another
    operator) with their innermost module and inclusive time; and each call's wall time (ms)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    stack: list = []
    hooks = []
    for path, module in model.named_modules():
        def enter(mod, args, path=path):
            scope = record_function(_SCOPE + path)
            scope.__enter__()
            stack.append(scope)

        def leave(mod, args, out):
            stack.pop().__exit__(None, None, None)

        hooks += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        for _ in range(warmup):
            run(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                with record_function(_CALL):
                    run(x)
    finally:
        for h in hooks:
            h.remove()
    calls: dict[int, list] = {}
    walls = []
    for event in prof.events():  # in start order
        if event.name == _CALL:
            calls[event.id] = []
            walls.append(event.cpu_time_total / 1e3)
            continue
        if event.name.startswith(_SCOPE):
            continue
        parent, scope = event.cpu_parent, ""
        while parent is not None and parent.name.startswith(_SCOPE):
            scope = scope or parent.name[len(_SCOPE):]
            parent = parent.cpu_parent
        if parent is not None and parent.name == _CALL:  # a top-level operator of one call
            calls[parent.id].append((event.name, event.name, scope, event.cpu_time_total / 1e3))
    return list(calls.values()), walls


class TorchEager(Backend):
    name = "torch"
    description = "PyTorch eager on the CPU (fp32, or bf16 autocast)"
    exports = False
    dtypes = ("fp32", "bf16")
    summary = "eager ATen CPU kernels, operator by operator"
    profiler = "torch.profiler (CPU), operators under forward-hook module ranges"

    form_preference = ("fused", "reference")

    def open(self, artifact, threads, dtype):
        torch.set_num_threads(threads)  # the worker's own setting: nothing to restore
        return _eager_session(artifact.obj, "cpu", dtype, self.summary)

    def profile(self, artifact, threads, dtype, x, runs, warmup):
        import statistics

        session = self.open(artifact, threads, dtype)
        calls, walls = profile_eager(artifact.obj, session.run, x, runs, warmup)
        return OpProfile(self.profiler, median_per_call(calls), statistics.median(walls), runs)


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
    profiler = None  # generated kernels span modules: prefix differencing

    def profile(self, artifact, threads, dtype, x, runs, warmup):
        raise NotImplementedError("torch-compile's generated kernels span modules")

    def export(self, model, example, path):
        return _compiled(model, example), None
