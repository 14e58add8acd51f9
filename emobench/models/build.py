"""Building zoo models: ``create_model`` (timm-style) and the input a model expects."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from emobench.models.checkpoint import load_checkpoint
from emobench.errors import InputSizeError
from emobench.nn import FAMILIES, EMOFeatures, fuse
from emobench.zoo.catalog import ZooEntry, get_entry


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
        fused: return the fast inference form (eval only; see :mod:`emobench.nn.forms.fused`).
        features_only: return the stride 4/8/16/32 maps (EMO family) instead of logits.
        **overrides: fields of the family config, e.g. ``num_classes=10``, ``window="contiguous"``, ``drop_path=0.1``.

    The model carries ``zoo_entry`` (the resolved entry) and ``default_input_size`` (C, H, W).
    """
    entry = get_entry(name).with_overrides(**overrides)
    model = build_entry(entry)
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


def build_entry(entry: ZooEntry) -> nn.Module:
    """The module of a zoo entry (its family's builder on its validated config), carrying ``zoo_entry`` and
    ``default_input_size``."""
    model = FAMILIES[entry.family].build(entry.config)
    model.zoo_entry = entry
    model.default_input_size = entry.input_size
    return model


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


def parse_resolution(text: str, what: str = "resolution") -> tuple[int, int]:
    """``"224"`` → (224, 224); ``"192x320"`` → (192, 320) (H×W): the one parser of input sizes (``-r`` and
    a reference's ``@HxW``); anything else is one :class:`InputSizeError` naming ``what``."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise InputSizeError(f"{what} must look like 256 or 192x320 (H x W) and sizes must be positive, got '{text}'")
    return values[0], values[1]
