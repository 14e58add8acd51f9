"""Building zoo models: ``create_model`` (timm-style) and the input a model expects."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from torch import nn

from .checkpoint import load_checkpoint
from .errors import InputSizeError
from .nn import FAMILIES, EMOFeatures, fuse
from .zoo import ZooEntry, get_entry


def create_model(
    name: str,
    *,
    checkpoint: str | os.PathLike | None = None,
    fused: bool = False,
    features_only: bool = False,
    **overrides: Any,
) -> nn.Module:
    """Build a zoo model.

    Args:
        name: a zoo entry (``emobench.list_models()``).
        checkpoint: weights to load (official ``net.pth`` layouts or ``.safetensors``; see :func:`load_checkpoint`).
        fused: return the fast inference form (eval only; see :mod:`emobench.nn.fused`).
        features_only: return the stride 4/8/16/32 maps (EMO family) instead of logits.
        **overrides: fields of the family config, e.g. ``num_classes=10``, ``window="contiguous"``, ``drop_path=0.1``.

    The model carries ``zoo_entry`` (the resolved entry) and ``default_input_size`` (C, H, W).
    """
    entry = get_entry(name).with_overrides(**overrides)
    model = FAMILIES[entry.family].build(entry.config)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    if fused:
        model = fuse(model)
    if features_only:
        if not hasattr(model, "forward_stages"):
            raise InputSizeError(f"'{name}' has no stages: features_only needs an EMO network")
        model = EMOFeatures(model)
    model.zoo_entry = entry
    model.default_input_size = entry.input_size
    return model


def build_reference(name: str, checkpoint: str | os.PathLike | None = None,
                    zoo_dirs: list[str] | None = None) -> nn.Module:
    """The model a measurement runs (``name`` is any model reference, :mod:`emobench.references`): the reference form in eval mode, with ``checkpoint`` loaded or with fixed
    weights (seed 0, the caller's RNG untouched), so every process that builds it gets the same parameters and
    cached exports stay valid."""
    import torch

    from .zoo import extra_zoo_dirs

    from .references import build_model

    with extra_zoo_dirs(zoo_dirs), torch.random.fork_rng():
        torch.manual_seed(0)
        return build_model(name, checkpoint)


def input_shape(entry: ZooEntry, resolution: tuple[int, int] | None = None, batch: int = 1) -> tuple[int, ...]:
    """The input shape for a zoo entry at ``resolution`` (H, W; default: the entry's own)."""
    if batch < 1:
        raise InputSizeError(f"batch must be >= 1, got {batch}")
    c, h, w = entry.input_size
    if resolution is not None:
        h, w = resolution
    shape = (batch, c, h, w)
    check_input(entry, shape)
    return shape


def check_input(entry: ZooEntry, shape: tuple[int, ...]) -> None:
    """Raise :class:`InputSizeError` for an input shape the entry's model cannot take."""
    check = FAMILIES[entry.family].check_input
    if check is not None:
        check(entry.config, tuple(shape))


def parse_resolution(text: str) -> tuple[int, int]:
    """``"224"`` → (224, 224); ``"192x320"`` → (192, 320) (H×W)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise InputSizeError(f"resolution must look like 224 or 192x320 (H x W, positive), got '{text}'")
    return values[0], values[1]


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


def _meta_model(target) -> nn.Module:
    """``target`` (a zoo entry or a model reference) built on torch's meta device."""
    import torch

    entry = getattr(target, "entry", None) if not isinstance(target, ZooEntry) else target
    if entry is None:
        return target._meta_build().to("meta")  # a factory that could not build on meta built on the CPU
    with torch.device("meta"):
        return FAMILIES[entry.family].build(entry.config)


def _label(target) -> str:
    return target.name if isinstance(target, ZooEntry) else target.text


def memory_need(entry, shape: tuple[int, ...], bytes_per_element: int = 4) -> MemoryNeed:
    """A lower bound of the memory one ``model(x)`` takes for an input of ``shape``: the model built on torch's
    ``meta`` device (shapes only) gives the parameter and buffer bytes, and a meta forward pass the largest
    single operation (its inputs and outputs must be live together). Nothing is allocated, whatever the sizes.
    ``entry`` is a zoo entry or a model reference (:mod:`emobench.references`)."""
    from .measure.memory import meta_footprint

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
