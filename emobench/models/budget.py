"""What a model needs before anything is allocated: a lower bound of one inference's memory from a meta-device
build and forward pass, checked against what the machine has, so an impossible size is one clear error instead
of a crash or a swap storm. Every run calls it on the models it was given, once."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from emobench.errors import InputSizeError
from emobench.measure.memory import meta_footprint
from emobench.models.build import build_entry
from emobench.models.references import ResolvedModel
from emobench.zoo.catalog import ZooEntry


@dataclass(frozen=True)
class MemoryNeed:
    """What one inference of a model needs at least, estimated without allocating (see :func:`memory_need`)."""

    params: int  #: parameter count
    weight_bytes: int  #: parameters and buffers
    input_bytes: int
    largest_op_bytes: int  #: the largest single operation's live inputs and outputs (the input included)
    largest_op: str
    method: str

    @property
    def total(self) -> int:
        return self.weight_bytes + max(self.largest_op_bytes, self.input_bytes)


def _meta_model(target: ZooEntry | ResolvedModel) -> nn.Module:
    """``target`` built on torch's meta device."""
    import torch

    if isinstance(target, ZooEntry):
        with torch.device("meta"):
            return build_entry(target)
    return target.meta_module()


def _label(target) -> str:
    return target.name if isinstance(target, ZooEntry) else target.text


def memory_need(entry, shape: tuple[int, ...], bytes_per_element: int = 4) -> MemoryNeed:
    """A lower bound of the memory one ``model(x)`` takes for an input of ``shape``: the model built on torch's
    ``meta`` device (shapes only) gives the parameter and buffer bytes, and a meta forward pass the largest
    single operation (its inputs and outputs must be live together). Nothing is allocated, whatever the sizes.
    ``entry`` is a zoo entry or a model reference (:mod:`emobench.models.references`)."""
    input_bytes = math.prod(shape) * bytes_per_element
    model = _meta_model(entry)
    tensors = [*model.parameters(), *model.buffers()]
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(t.numel() for t in tensors) * bytes_per_element
    try:
        largest, op = meta_footprint(model.eval(), tuple(shape))
        method = "meta-device build and forward pass"
    except Exception as err:  # noqa: BLE001 - e.g. a shape whose element count overflows: the input is the floor
        largest, op, method = input_bytes, "", f"meta-device build; input only ({type(err).__name__} in the meta forward)"
    return MemoryNeed(params, weight_bytes, input_bytes, largest, op, method)


def available_memory() -> int:
    """Bytes the machine can give a new allocation now (psutil: free + reclaimable, without swapping)."""
    import psutil

    return psutil.virtual_memory().available


def _gib(n: int) -> str:
    return f"{n / 2**30:,.3g} GiB"


def check_fits(entry, shape: tuple[int, ...], copies: int = 1, what: str = "", run: bool = True) -> MemoryNeed:
    """Raise :class:`InputSizeError` (before anything is allocated) when ``copies`` inferences of ``entry`` on an
    input of ``shape`` cannot fit in the memory available now (with ``run=False``: its weights alone); else
    return the estimate."""
    need = memory_need(entry, shape)
    have = available_memory()
    total = (need.total if run else need.weight_bytes) * copies
    if total > have:
        biggest = f"the largest operation ({need.largest_op}) {_gib(need.largest_op_bytes)}" if need.largest_op \
            else f"the input {_gib(need.input_bytes)}"
        raise InputSizeError(
            f"{_label(entry)} at {'x'.join(map(str, shape))}{' ' + what if what else ''} needs at least {_gib(total)} "
            f"(weights {_gib(need.weight_bytes)}, {biggest}{f', x{copies}' if copies > 1 else ''}) but "
            f"{_gib(have)} of memory is available: use a smaller input, batch or model")
    return need


def check_reach_fits(axes: list[int], what: str) -> None:
    """Reach analysis (rf, mpl) holds boolean n×n relations per axis: refuse sizes whose relations cannot fit.
    ``axes`` are the map's sides (H, W) analysed together."""
    # measured: `rf emo_tiny -r N` peaks near 11 N² bytes above the interpreter (N = 4000 and 8000), i.e. about
    # 6 relation-sized arrays live per axis while layers are composed
    need = sum(n * n for n in axes) * 6
    have = available_memory()
    if need > have:
        raise InputSizeError(f"{what}: the reach relations need about {_gib(need)} (n x n booleans per axis, "
                             f"n up to {max(axes):,}) but {_gib(have)} of memory is available: use a smaller size")
