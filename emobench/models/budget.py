"""What a model needs before anything is allocated: a lower bound of one inference's memory from a meta-device
build and forward pass, checked against what the machine has, so an impossible size is one clear error instead
of a crash or a swap storm. Every run calls it on the models it was given, once."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from emobench.errors import InputSizeError
from emobench.measure.memory import meta_footprint
from emobench.paths import read_cache, source_fingerprint, update_cache
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


def block_params(cfg) -> int:
    """Parameters of one M² block (an :class:`~emobench.nn.m2.M2BlockConfig`) in closed form, as
    :class:`~emobench.nn.m2.M2Block` builds it."""
    din, mid, dout = cfg.dim_in, cfg.dim_mid, cfg.dim_out
    n = 2 * din if cfg.norm != "none" else 0
    if cfg.attention is not None:
        n += 2 * din * din + (2 * din if cfg.attention.qk_bias else 0)
        sr = cfg.attention.sr_ratio
        n += (din * din * sr * sr + 3 * din) if sr > 1 else 0  # the reduction conv (bias) and its LayerNorm
    if cfg.expand:
        n += din * mid // (cfg.num_heads if cfg.v_group else 1) + (mid if cfg.expand_bias else 0)
        n += 2 * mid if cfg.expand_norm else 0
    if cfg.dw_kernel is not None:
        n += mid * cfg.dw_kernel**2 + 2 * mid
    if cfg.se_ratio > 0:
        rd = round(mid * cfg.se_ratio)
        n += 2 * mid * rd + rd + mid
    return n + mid * dout + (dout if cfg.proj_bias else 0) + (2 * dout if cfg.proj_norm else 0)


def config_estimate(entry: ZooEntry) -> tuple[int, int]:
    """(M² blocks, parameters) of a zoo entry from its configuration alone, nothing built: the blocks of its
    family's layout in closed form (:func:`block_params`) and the classifier on the last block's width; a
    down-stream model counts its backbone. The parameters are a lower bound (stems, necks and heads not counted)."""
    from emobench.nn import FAMILIES
    from emobench.nn.registry import BlockOp

    cfg = entry.config
    bound = getattr(cfg, "_bound", None)  # a down-stream model's resolved backbone
    if bound is not None:
        cfg, family = bound.config, bound.family
    else:
        family = entry.family
    layout = FAMILIES[family].layout
    blocks = [op.config for op in layout(cfg) if isinstance(op, BlockOp)] if layout is not None else []
    params = sum(block_params(b) for b in blocks)
    if blocks and bound is None:
        params += getattr(cfg, "num_classes", 0) * blocks[-1].dim_out
    return len(blocks), params


def check_config_fits(target, shape: tuple[int, ...], bytes_per_element: int = 4) -> None:
    """Refuse, before any module is built (even on the meta device, whose building is not free either), a zoo
    model whose configuration alone says it cannot be held: more blocks than a network may have, or weights
    (:func:`config_estimate`) beyond the memory available now."""
    from emobench.nn.layers import MAX_BLOCKS

    entry = target if isinstance(target, ZooEntry) else getattr(target, "entry", None)
    if entry is None:  # a factory or timm model: nothing to estimate before building it
        return
    blocks, params = config_estimate(entry)
    if blocks > MAX_BLOCKS:
        raise InputSizeError(f"{_label(target)} has {blocks:,} blocks; emobench builds at most {MAX_BLOCKS:,}")
    weights, have = params * bytes_per_element, available_memory()
    if weights > have:
        raise InputSizeError(
            f"{_label(target)} at {'x'.join(map(str, shape))} needs at least {_gib(weights)} (weights alone, "
            f"{params:,} parameters from its configuration, before building) but {_gib(have)} of memory is "
            f"available: use a smaller model")


def memory_need(entry, shape: tuple[int, ...], bytes_per_element: int = 4) -> MemoryNeed:
    """A lower bound of the memory one ``model(x)`` takes for an input of ``shape``: the model built on torch's
    ``meta`` device (shapes only) gives the parameter and buffer bytes, and a meta forward pass the largest
    single operation (its inputs and outputs must be live together). Nothing is allocated, whatever the sizes.
    ``entry`` is a zoo entry or a model reference (:mod:`emobench.models.references`)."""
    input_bytes = math.prod(shape) * bytes_per_element
    check_config_fits(entry, shape, bytes_per_element)
    key = _footprint_key(entry, shape, bytes_per_element)
    cached = read_cache(FOOTPRINT_CACHE).get(key) if key else None
    if isinstance(cached, list) and len(cached) == 5:  # the same configuration, input and model code
        params, weight_bytes, largest, op, method = cached
        return MemoryNeed(params, weight_bytes, input_bytes, largest, op, method + " (cached)")
    model = _meta_model(entry)
    tensors = [*model.parameters(), *model.buffers()]
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(t.numel() for t in tensors) * bytes_per_element
    try:
        largest, op = meta_footprint(model.eval(), tuple(shape))
        method = "meta-device build and forward pass"
    except Exception as err:  # noqa: BLE001 - e.g. a shape whose element count overflows: the input is the floor
        largest, op, method = input_bytes, "", f"meta-device build; input only ({type(err).__name__} in the meta forward)"
        key = None  # not worth keeping
    if key:
        update_cache(FOOTPRINT_CACHE, {key: [params, weight_bytes, largest, op, method]})
    return MemoryNeed(params, weight_bytes, input_bytes, largest, op, method)


#: meta-device footprints by configuration, input shape and model code (a meta forward costs a second or two)
FOOTPRINT_CACHE = "footprints.json"


def _footprint_key(target, shape: tuple[int, ...], bytes_per_element: int) -> str | None:
    """What a footprint depends on, for a zoo model (a factory's code is not hashed here: never cached)."""
    import hashlib
    import json

    entry = target if isinstance(target, ZooEntry) else getattr(target, "entry", None)
    if entry is None:
        return None
    blob = json.dumps({"family": entry.family, "config": entry.config.model_dump(mode="json"), "shape": list(shape),
                       "bytes": bytes_per_element}, sort_keys=True, default=str)
    return hashlib.sha256((blob + source_fingerprint("nn", "measure")).encode()).hexdigest()


#: optimizer state tensors per parameter element
OPTIMIZER_STATES = {"adamw": 2, "sgd": 1}


def check_train_fits(target, shape: tuple[int, ...], optimizer: str = "adamw") -> int:
    """Raise :class:`InputSizeError` (before anything real is allocated) when a training step of ``target`` at
    ``shape`` cannot fit: weights, gradients and optimizer state (closed form) plus the activations autograd would
    save for backward, counted on a meta-device forward. Returns the estimate in bytes."""
    from emobench.measure.training import saved_bytes_estimate

    check_config_fits(target, shape)
    model = _meta_model(target)
    weights = sum(t.numel() for t in (*model.parameters(), *model.buffers())) * 4
    params = sum(p.numel() for p in model.parameters()) * 4
    static = weights + params * (1 + OPTIMIZER_STATES[optimizer])
    try:
        saved = saved_bytes_estimate(model, tuple(shape))
    except Exception:  # noqa: BLE001 - a meta forward some model cannot take: the weights are the floor
        saved = 0
    need, have = static + saved + math.prod(shape) * 4, available_memory()
    if need > have:
        raise InputSizeError(
            f"{_label(target)} at {'x'.join(map(str, shape))} needs at least {_gib(need)} to train a step (weights, "
            f"gradients and {optimizer} state {_gib(static)}, activations saved for backward {_gib(saved)}) but "
            f"{_gib(have)} of memory is available: use a smaller batch or input, or --checkpointing")
    return need


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
