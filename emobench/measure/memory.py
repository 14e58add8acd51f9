"""Peak memory of one inference.

CPU: live bytes of every tensor storage created during the forward pass, tracked at the aten dispatch level
(a storage counts from the op that creates it until its last reference dies). Parameters and the input are
excluded; kernel-internal scratch buffers (oneDNN workspaces, attention temporaries) are invisible at this level.
CUDA: ``torch.cuda.max_memory_allocated`` around the same forward pass, minus what was allocated before it.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from emobench.measure.dispatch import DispatchMode


class LiveTensorBytes(DispatchMode):
    """Tracks the live and peak bytes of the storages that operations create while the mode is active."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()
        #: the ids (``_cdata``) of every storage an operation created while active (what a training step's
        #: saved tensors are checked against: parameters and the input were not created here)
        self.created: set[int] = set()

    def _release(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(r.alias_info is not None for r in func._schema.returns):
            return out  # a view or an in-place op creates no storage (a view of a parameter is not an activation)
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            self.created.add(storage._cdata)
            key = storage.data_ptr()
            if key in self._tracked or storage.nbytes() == 0:
                continue  # a view of a storage already counted
            self._tracked.add(key)
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._release, key, storage.nbytes())
        return out


def cpu_peak_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Peak live bytes of tensors created by one ``model(x)`` (the output included)."""
    tracker = LiveTensorBytes()
    with torch.inference_mode(), tracker:
        out = model(x)
    del out
    return tracker.peak


def cuda_peak_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Peak bytes the CUDA caching allocator handed out during one ``model(x)``, above what was live before.

    ``model`` and ``x`` must already be on the GPU."""
    if not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available")
    device = x.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.inference_mode():
        out = model(x)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del out
    return peak


class _MetaFootprint(DispatchMode):
    """On meta tensors (shapes only, nothing allocated): the largest bytes one operation holds at once, its
    tensor inputs (parameters and buffers excluded) plus the new tensors it returns."""

    def __init__(self, static: set[int]) -> None:
        super().__init__()
        self.static = static
        self.largest = 0
        self.op = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # a view or in-place op returns an alias: it creates no memory of its own
        creates = all(r.alias_info is None for r in func._schema.returns)
        seen: set[int] = set()
        held = 0
        for t in tree_leaves((args, kwargs, out if creates else ())):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            if storage._cdata in seen or storage._cdata in self.static:
                continue
            seen.add(storage._cdata)
            held += storage.nbytes()
        if held > self.largest:
            self.largest, self.op = held, str(func.overloadpacket.__name__)
        return out


def meta_footprint(model: nn.Module, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> tuple[int, str]:
    """The bytes the largest single operation of ``model(x)`` needs live (inputs and outputs), and its name, for
    ``x`` of ``shape``, found on the meta device: a lower bound of the peak memory of one inference, computed
    without allocating anything. ``model`` must be on the meta device."""
    static = {t.untyped_storage()._cdata for t in (*model.parameters(), *model.buffers())}
    tracker = _MetaFootprint(static)
    with torch.no_grad(), tracker:
        model(torch.empty(shape, dtype=dtype, device="meta"))
    return tracker.largest, tracker.op
