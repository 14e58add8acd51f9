"""Theoretical receptive field of a network, layer by layer, from exact per-axis reach.

Per unit (a stem conv, an M² block, a plain conv or pool): the output size, the jump (effective stride), the
bounding box of the input pixels the centre output depends on (clipped to the image), the unclipped size from
the Araujo et al. (Distill 2019) recurrence while the network is still translation-equivariant (window attention
ends that), the coverage (fraction of input pixels that reach the centre output: a dilated grid gives a large
box but a sparse one), and whether the centre output, or every output, sees the whole image.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from emobench.errors import EmobenchError
from emobench.nn.layers import same_padding
from emobench.nn.registry import FAMILIES, BlockOp, ConvOp
from emobench.zoo.catalog import ZooEntry
from emobench.analysis import reach
from emobench.analysis.reach import BlockOps, Relation


@dataclass(frozen=True)
class Unit:
    """One layer of the analysis: its per-axis relation, and its kernel for the recurrence (None when the
    unit is not translation-equivariant, e.g. window attention)."""

    name: str
    stage: str
    op: str
    relation: Callable[[int], Relation]
    kernel: int | None = 1
    stride: int = 1
    padding: int = 0


def conv_unit(name: str, kernel: int, stride: int = 1, padding: int | None = None, dilation: int = 1, stage: str = "") -> Unit:
    k_eff = (kernel - 1) * dilation + 1
    pad = same_padding(kernel, stride, dilation) if padding is None else padding
    return Unit(name, stage, f"conv {kernel}x{kernel} s{stride}" + (f" d{dilation}" if dilation > 1 else ""),
                lambda n: reach.conv(n, kernel, stride, dilation, pad), k_eff, stride, pad)


def residual_unit(name: str, inner: list[Unit], stage: str = "") -> Unit:
    """x + f(x): the union of the identity and the inner chain (stride 1, same size)."""

    def relation(n: int) -> Relation:
        d = reach.identity(n)
        for u in inner:
            d = reach.compose(u.relation(d.shape[0]), d)
        return reach.union_with_identity(d)

    equivariant = all(u.kernel is not None for u in inner)
    extent = 1 + sum(u.kernel - 1 for u in inner) if equivariant else None
    return Unit(name, stage, "residual(" + ", ".join(u.op for u in inner) + ")", relation, extent, 1, (extent - 1) // 2 if extent else 0)


def block_unit(name: str, stage: str, cfg, se_as_global: bool) -> Unit:
    ops = BlockOps(cfg, se_as_global)
    att = cfg.attention
    parts = []
    if att is not None:
        parts.append(("global attn" if att.window == "global" else f"{att.window} {att.window_size}x{att.window_size} attn")
                     + (f" (K/V reduced {att.sr_ratio}x)" if att.sr_ratio > 1 else ""))
    if cfg.dw_kernel:
        parts.append(f"dw {cfg.dw_kernel}x{cfg.dw_kernel} s{cfg.stride}")
    if cfg.se_ratio > 0:
        parts.append("SE (global)" if se_as_global else "SE")
    equivariant = att is None and not (cfg.se_ratio > 0 and se_as_global)
    k = ((cfg.dw_kernel - 1) * cfg.dw_dilation + 1) if cfg.dw_kernel else 1
    pad = same_padding(k, cfg.stride)
    op = " → ".join(parts) or "pointwise"
    if cfg.has_skip:
        op = f"residual({op})"
    return Unit(name, stage, op, ops.relation, k if equivariant else None, cfg.stride, pad)


def op_unit(op: ConvOp | BlockOp, entry: ZooEntry, se_as_global: bool) -> Unit:
    """The reach unit of one operation of a family's layout (:attr:`emobench.nn.registry.Family.layout`)."""
    if isinstance(op, ConvOp):
        return conv_unit(op.name, op.kernel, op.stride, op.padding, op.dilation, stage=op.stage)
    return block_unit(op.name or entry.name, op.stage, op.config, se_as_global)


def has_exact_reach(family: str) -> bool:
    """Whether the family describes its layout, so its receptive field is exact (else empirical)."""
    return family in FAMILIES and FAMILIES[family].layout is not None


def units_for(entry: ZooEntry, se_as_global: bool = False) -> list[Unit]:
    """The entry's network as reach units; a family without a layout is refused, never approximated."""
    if not has_exact_reach(entry.family):
        exact = sorted(name for name in FAMILIES if has_exact_reach(name))
        raise EmobenchError(f"reach analysis has no units for the '{entry.family}' family ({entry.name}); "
                            f"it covers {', '.join(exact)}")
    return [op_unit(op, entry, se_as_global) for op in FAMILIES[entry.family].layout(entry.config)]


#: how each path computes the receptive field (the ``method`` column)
EXACT_METHOD = "exact reach (per-axis relations of the zoo family's units)"
EMPIRICAL_METHOD = ("gradient support (float64, random non-zero weights, union over 2 random inputs; "
                    "the centre output and the four corners)")
#: the empirical path takes one backward pass per output tensor, position and input: a default input larger
#: than this per side is scaled down to it (the output says so; ``-r`` chooses another)
EMPIRICAL_MAX_SIDE = 256


#: the columns of :attr:`RFResult.table` (display labels; keys and units: ``emobench.report.views.COLUMNS["rf"]``)
TABLE_COLUMNS = ["layer", "stage", "op", "output H", "output W", "jump", "rf H", "rf W", "rf unclipped H",
                 "rf unclipped W", "start", "coverage", "centre global", "all global", "method"]
#: the whole-number columns: sizes, jumps and receptive fields in pixels (None where a row has none)
INT_COLUMNS = ["output H", "output W", "jump", "rf H", "rf W", "rf unclipped H", "rf unclipped W"]


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Whole numbers stay whole: an int column with a missing value would otherwise turn float (9.0 in JSON);
    such a column holds Python ints and None instead."""
    for col in INT_COLUMNS:
        if df[col].isna().any():
            df[col] = pd.Series([None if pd.isna(v) else int(v) for v in df[col]], index=df.index, dtype=object)
        else:
            df[col] = df[col].astype("int64")
    for col in ("centre global", "all global"):
        if df[col].isna().any():
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


@dataclass
class RFResult:
    table: pd.DataFrame
    input_size: tuple[int, int]
    first_centre_global: str | None
    first_all_global: str | None
    method: str = EXACT_METHOD
    note: str = ""

    @property
    def caption(self) -> str:
        where = "first at output" if self.method == EMPIRICAL_METHOD else "from"
        text = (f"centre output global {where} {self.first_centre_global or 'never'}; "
                f"every output global {where} {self.first_all_global or 'never'}; method: {self.method}")
        return text + (f"; {self.note}" if self.note else "")

    @property
    def meta(self) -> dict:
        h, w = self.input_size
        return {"caption": self.caption, "input": [h, w], "first_centre_global": self.first_centre_global,
                "first_all_global": self.first_all_global, "method": self.method, "note": self.note}


def receptive_field(units: list[Unit], size: tuple[int, int]) -> RFResult:
    """Walk the units over an input of ``size`` (H, W), composing the per-axis relations."""
    composed = [reach.identity(n) for n in size]
    rf_unclipped: int | None = 1
    jump = 1
    start = 0.5  # pixel-centre convention
    rows = []
    first_centre = first_all = None
    for u in units:
        try:
            composed = [reach.compose(u.relation(r.shape[0]), r) for r in composed]
        except EmobenchError as err:
            raise EmobenchError(f"{u.name}: {err}") from None
        if u.kernel is not None and rf_unclipped is not None:
            rf_unclipped += (u.kernel - 1) * jump
            start += ((u.kernel - 1) / 2 - u.padding) * jump
        else:
            rf_unclipped = None
        jump *= u.stride
        centre_rows = [r[r.shape[0] // 2] for r in composed]
        boxes = [int(np.flatnonzero(c)[-1] - np.flatnonzero(c)[0] + 1) for c in centre_rows]
        coverage = float(np.prod([c.mean() for c in centre_rows]))
        centre_global = all(c.all() for c in centre_rows)
        all_global = all(r.all() for r in composed)
        if centre_global and first_centre is None:
            first_centre = u.name
        if all_global and first_all is None:
            first_all = u.name
        rows.append(
            {
                "layer": u.name,
                "stage": u.stage,
                "op": u.op,
                "output H": composed[0].shape[0],
                "output W": composed[1].shape[0],
                "jump": jump,
                "rf H": boxes[0],
                "rf W": boxes[1],
                "rf unclipped H": rf_unclipped,  # the recurrence's kernels are square: the same on both axes
                "rf unclipped W": rf_unclipped,
                "start": start if rf_unclipped is not None else None,
                "coverage": coverage,
                "centre global": centre_global,
                "all global": all_global,
                "method": EXACT_METHOD,
            }
        )
    return RFResult(_typed(pd.DataFrame(rows, columns=TABLE_COLUMNS)), size, first_centre, first_all)


def entry_receptive_field(entry: ZooEntry, resolution: tuple[int, int] | None = None, se_as_global: bool = False) -> RFResult:
    from emobench.models.build import check_input

    size = resolution or tuple(entry.input_size[1:])
    if min(size) < 1:
        raise EmobenchError(f"resolution must be positive, got {size}")
    units = units_for(entry, se_as_global)
    check_input(entry, (1, entry.input_size[0], *size))  # the family's own limits (stride, fixed position maps)
    return receptive_field(units, size)


def reach_mask(units: list[Unit], size: tuple[int, int], position: tuple[int, int]) -> np.ndarray:
    """The 2-D set of input pixels that output ``position`` depends on (H_in × W_in bool)."""
    composed = [reach.identity(n) for n in size]
    for u in units:
        composed = [reach.compose(u.relation(r.shape[0]), r) for r in composed]
    return np.outer(composed[0][position[0]], composed[1][position[1]])


@torch.no_grad()
def _randomise(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=m.running_var.dtype) + 0.5)
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g, dtype=m.running_mean.dtype))
    return model


def gradient_support(model: nn.Module, input_shape: tuple[int, ...], position: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Input pixels with a non-zero gradient of one output position, in a float64 copy of ``model`` with random
    non-zero weights: the empirical counterpart of :func:`reach_mask`."""
    from emobench.models.forward import model_failures, model_label

    m = _randomise(copy.deepcopy(model).double().eval(), seed)
    x = torch.randn(input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1), requires_grad=True)
    with torch.enable_grad(), model_failures(model_label(model), x, "forward or backward pass"):
        out = m.forward_features(x) if hasattr(m, "forward_features") else m(x)
        out[0, :, position[0], position[1]].sum().backward()
    return (x.grad[0].abs().sum(0) > 0).numpy()


# --- the empirical path: any module -----------------------------------------------------------------------


def output_maps(out, prefix: str = "", names: list[str] | None = None) -> list[tuple[str, torch.Tensor]]:
    """The tensors a model returns, named by where they sit (``out``, ``0``, ``1.boxes``, …): a tensor, or a
    (nested) tuple, list or dict of them. ``names`` (a model's ``output_names()``, e.g. ``cls_0``, ``reg_0``)
    replace the positions of a flat tuple of the same length."""
    if names is not None and isinstance(out, (tuple, list)) and len(names) == len(out) and \
            all(isinstance(o, torch.Tensor) for o in out):
        return list(zip(names, out))
    if isinstance(out, torch.Tensor):
        return [(prefix or "out", out)]
    items = out.items() if isinstance(out, dict) else enumerate(out) if isinstance(out, (tuple, list)) else []
    maps = []
    for key, value in items:
        maps += output_maps(value, f"{prefix}.{key}" if prefix else str(key))
    return maps


def output_names(model: nn.Module) -> list[str] | None:
    """The model's own names for its outputs (the down-stream models': ``cls_0`` … ``reg_0`` …), if it has them."""
    return model.output_names() if callable(getattr(model, "output_names", None)) else None


@torch.no_grad()
def _jitter(model: nn.Module, seed: int) -> nn.Module:
    """The model's own initialisation plus small noise: no weight is exactly zero (a zero-initialised layer
    scale or residual branch would hide a path), activations stay in range (unlike N(0, 1) weights in a deep
    network)."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
        p.add_(noise * (0.02 + 0.1 * p.abs().mean()))
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=m.running_var.dtype) + 0.5)
    return model


def _box(mask: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return 0, 0
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def empirical_receptive_field(model: nn.Module, input_shape: tuple[int, ...], seed: int = 0, samples: int = 2,
                              note: str = "") -> RFResult:
    """The receptive field of every spatial output tensor of ``model`` (of ``forward_features`` where the model
    has one) from gradient support: in a float64
    copy with jittered weights, the input pixels whose gradient of one output position (summed over channels)
    is non-zero for at least one of ``samples`` random inputs. Per output tensor: the centre's bounding box
    (clipped to the image) and coverage, and whether the centre and the four corners each see the whole
    image (``all global``: every output, judged by those five). Outputs that are not (B, C, H, W) maps get a
    row saying so."""
    from emobench.models.forward import forward, model_failures, model_label

    label = model_label(model)
    m = _jitter(copy.deepcopy(model).double().eval(), seed)
    c, h, w = input_shape[-3:]
    supports: dict[str, dict[str, np.ndarray]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for sample in range(samples):
        x = torch.randn((1, c, h, w), dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1 + sample),
                        requires_grad=True)
        with torch.enable_grad():
            # the feature map where the model has one (timm's and the zoo's classifiers), not the logits
            maps = output_maps(forward(m.forward_features if hasattr(m, "forward_features") else m, x, label),
                               "forward_features" if hasattr(m, "forward_features") else "",
                               None if hasattr(m, "forward_features") else output_names(m))
            for name, out in maps:
                shapes[name] = tuple(out.shape)
                if out.dim() != 4 or not out.dtype.is_floating_point:
                    continue
                oh, ow = out.shape[-2:]
                positions = {"centre": (oh // 2, ow // 2), "top-left": (0, 0), "top-right": (0, ow - 1),
                             "bottom-left": (oh - 1, 0), "bottom-right": (oh - 1, ow - 1)}
                for where, (i, j) in positions.items():
                    with model_failures(label, x, "backward pass"):
                        (grad,) = torch.autograd.grad(out[0, :, i, j].sum(), x, retain_graph=True, allow_unused=True)
                    seen = np.zeros((h, w), dtype=bool) if grad is None else (grad[0].abs().sum(0) > 0).numpy()
                    supports.setdefault(name, {})
                    supports[name][where] = supports[name].get(where, False) | seen
    rows, first_centre, first_all = [], None, None
    for name, shape in shapes.items():
        if name not in supports:
            rows.append({"layer": name, "stage": "output", "op": f"not a spatial map ({'x'.join(map(str, shape))})",
                         "method": EMPIRICAL_METHOD})  # no size, jump or receptive field: null
            continue
        oh, ow = shape[-2:]
        centre = supports[name]["centre"]
        box = _box(centre)
        centre_global = bool(centre.all())
        all_global = all(bool(v.all()) for v in supports[name].values())
        if centre_global and first_centre is None:
            first_centre = name
        if all_global and first_all is None:
            first_all = name
        jump = h // oh if oh and h % oh == 0 and w % ow == 0 and h // oh == w // ow else None
        rows.append({"layer": name, "stage": "output", "op": "gradient support", "output H": oh, "output W": ow,
                     "jump": jump, "rf H": box[0], "rf W": box[1], "coverage": float(centre.mean()),
                     "centre global": centre_global, "all global": all_global, "method": EMPIRICAL_METHOD})
    return RFResult(_typed(pd.DataFrame(rows, columns=TABLE_COLUMNS)), (h, w), first_centre, first_all,
                    EMPIRICAL_METHOD, note)


def empirical_size(default: tuple[int, int], limit: int = EMPIRICAL_MAX_SIDE) -> tuple[tuple[int, int], str]:
    """The input the empirical path uses when none is asked for: the default, or (sides above ``limit``) the
    default scaled to ``limit`` on its longer side, rounded down to a multiple of 32 (the usual total stride)."""
    h, w = default
    if max(h, w) <= limit:
        return (h, w), ""
    scale = limit / max(h, w)
    small = (max(32, int(h * scale) // 32 * 32), max(32, int(w * scale) // 32 * 32))
    return small, (f"input {small[0]}x{small[1]} instead of the default {h}x{w} (one backward pass per output, "
                   f"position and input; give -r for another)")


def model_receptive_field(model, resolution: tuple[int, int] | None = None, se_as_global: bool = False) -> RFResult:
    """The receptive field of any model: the exact per-layer analysis for zoo entries of a family with reach
    units (its family's ``layout``), the empirical per-output analysis for everything else (other zoo families such
    as the detectors and segmenters, timm, torchvision, factories, in-memory modules). ``model`` is a
    reference (:mod:`emobench.models.references`) or an ``nn.Module``."""
    from emobench.models.references import module_input_size, resolve

    if isinstance(model, nn.Module):
        module = model
        c, h, w = module_input_size(module)[0]
        size, note = ((resolution, "") if resolution else empirical_size((h, w)))
        return empirical_receptive_field(module, (1, c, *size), note=note)
    from emobench.models.budget import check_fits, check_reach_fits

    ref = resolve(model)
    entry = ref.entry
    if entry is not None and has_exact_reach(entry.family):
        size = ref.size or resolution or entry.input_size[1:]
        check_reach_fits(list(size), f"{ref.text} at {'x'.join(map(str, size))}")
        return entry_receptive_field(entry, ref.size or resolution, se_as_global)
    shape = ref.input_shape(resolution)
    check_fits(ref, shape, copies=4, what="(float64, forward and backward)")  # the empirical path's passes
    note = ""
    if ref.size is None and resolution is None:
        size, note = empirical_size(shape[2:])
        if note:
            shape = ref.input_shape(size)
    module = ref.build(seed=0)
    return empirical_receptive_field(module, shape, note=note)
