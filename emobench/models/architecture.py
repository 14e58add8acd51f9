"""What a zoo model is made of: the block-by-block layout (widths, strides, attention) at a given input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from emobench.zoo.catalog import ZooEntry

if TYPE_CHECKING:  # torch loads only when a layout is built: `zoo list` imports this module without it
    from torch import nn

    from emobench.nn.m2 import M2Block


def _attention_label(block: M2Block, h: int, w: int) -> str:
    """e.g. ``grid 7x7 x4 pre``, ``global post``, ``grid 7x7 x9 pad 5/5 pre`` (pad = bottom/right tokens)."""
    from emobench.nn.m2 import window_grid

    att = block.cfg.attention
    if att is None:
        return "off"
    wh, ww, pb, pr = window_grid(h, w, att)
    n = ((h + pb) // wh) * ((w + pr) // ww)
    kind = "global" if n == 1 else f"{att.window} {wh}x{ww} x{n}"
    pad = f" pad {pb}/{pr}" if pb or pr else ""
    return f"{kind}{pad} {'pre' if att.attn_pre else 'post'}"


def block_table(entry: ZooEntry, resolution: tuple[int, int] | None = None) -> pd.DataFrame:
    """One row per M² block: path, widths (in → mid → out), depth-wise kernel and stride, pre-norm/activation,
    attention (window layout at this input), heads, residual, output map and parameters, for an input of the
    entry's size (or ``resolution``)."""
    import torch
    from torch import nn

    from emobench.models.build import input_shape
    from emobench.nn.m2 import M2Block

    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)
    shape = input_shape(entry, resolution)
    with torch.device("meta"):
        model = _build(entry)
    # Rows: every M² block, plus the layers outside blocks (stem conv, final norm, classifier).
    parts: list[tuple[str, nn.Module]] = [("", model)] if isinstance(model, M2Block) else []
    for name, m in model.named_modules() if not parts else ():
        if any(name.startswith(p + ".") for p, _ in parts) or isinstance(m, containers):
            continue
        if isinstance(m, M2Block) or (name and any(True for _ in m.parameters(recurse=True))):
            parts.append((name, m))
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, o, name=name: shapes.__setitem__(name, (_first_shape(i), _first_shape(o))))
        for name, m in parts
    ]
    with torch.no_grad():
        model.eval()(torch.empty(shape, device="meta"))
    for h in hooks:
        h.remove()
    rows = []
    for name, m in parts:
        if name not in shapes:  # a container (ModuleList, ParameterList) that is never called itself
            continue
        (i_shape, out) = shapes[name]
        params = sum(p.numel() for p in m.parameters())
        if not isinstance(m, M2Block):
            rows.append({"block": name, "in→mid→out": f"{i_shape[1]}→{out[1]}", "dw": "", "norm/act": "",
                         "attention": type(m).__name__, "heads": 0, "skip": False,
                         **_map_size(out), "params": params})
            continue
        cfg = m.cfg
        hi, wi = i_shape[-2:]
        rows.append(
            {
                "block": name or "(block)",
                "in→mid→out": f"{cfg.dim_in}→{cfg.dim_mid}→{cfg.dim_out}",
                "dw": f"{cfg.dw_kernel}x{cfg.dw_kernel} s{cfg.stride}" if cfg.dw_kernel else "off",
                "norm/act": f"{cfg.norm}/{cfg.act}",
                "attention": _attention_label(m, hi, wi),
                "heads": cfg.num_heads,
                "skip": cfg.has_skip,
                **_map_size(out),
                "params": params,
            }
        )
    covered = {id(p) for name, m in parts if name in shapes for p in m.parameters()}
    other = [(n, p) for n, p in model.named_parameters() if id(p) not in covered]
    if other:  # parameters used outside any called module, e.g. position embeddings
        rows.append({"block": ", ".join(sorted({n.rsplit(".", 1)[0] if n.rsplit(".", 1)[-1].isdigit() else n for n, _ in other})),
                     "in→mid→out": "", "dw": "", "norm/act": "", "attention": "parameters", "heads": 0, "skip": False,
                     "output H": None, "output W": None, "params": sum(p.numel() for _, p in other)})
    df = pd.DataFrame(rows)
    for col in ("output H", "output W"):  # whole numbers, None where a row has no (N, C, H, W) map (never 9.0)
        df[col] = pd.Series([None if v is None or pd.isna(v) else int(v) for v in df[col]], index=df.index, dtype=object)
    return df


def _map_size(shape: tuple[int, ...]) -> dict[str, int | None]:
    """The output map's height and width, from an (N, C, H, W) shape; None for any other (logits, tokens)."""
    if len(shape) != 4:
        return {"output H": None, "output W": None}
    return {"output H": int(shape[2]), "output W": int(shape[3])}


def _first_shape(value) -> tuple[int, ...]:
    """Shape of the first tensor in a module's input or output (necks and heads pass lists of level maps)."""
    while isinstance(value, (tuple, list)):
        value = value[0]
    return tuple(value.shape)


def _build(entry: ZooEntry) -> nn.Module:
    from emobench.nn import FAMILIES

    return FAMILIES[entry.family].build(entry.config)


def zoo_table(names: list[str]) -> pd.DataFrame:
    """name, family, parameters and summary of each zoo entry (see :func:`emobench.zoo.catalog.zoo_listing`, which
    needs no torch import when the counts are cached)."""
    from emobench.zoo.catalog import zoo_listing

    return zoo_listing(names)


@dataclass
class EntryLayout:
    """``emobench zoo show``: an entry's layout at one input, with what the entry says of itself."""

    entry: ZooEntry
    input: tuple[int, int, int]  #: C, H, W
    blocks: pd.DataFrame  #: :func:`block_table`

    @property
    def meta(self) -> dict:
        return {
            "name": self.entry.name, "family": self.entry.family, "summary": self.entry.summary,
            "source": self.entry.source, "file": str(self.entry.path), "extends": self.entry.extends,
            "input": list(self.input), "config": self.entry.config.model_dump(mode="json"),
            # a single block's table covers every parameter; a network's has stem and head rows too
            "params": int(self.blocks["params"].sum()) if self.entry.family == "m2" else None,
        }

    def header(self) -> list[str]:
        """What the screen shows above the table: summary, source, file, config."""
        e = self.entry
        origin = f"file: {e.path}" + (f" (extends {e.extends})" if e.extends else "")
        settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in self.meta["config"].items())
        return [f"{e.name} ({e.family}): {e.summary}", f"source: {e.source}", origin, f"config: {settings}"]


def describe(model, resolution: tuple[int, int] | None = None) -> EntryLayout:
    """The layout of a zoo model (a reference naming a zoo entry, ``@HxW`` winning over ``resolution``)."""
    from emobench.errors import EmobenchError
    from emobench.models.references import resolve

    ref = resolve(model)
    if ref.entry is None:
        raise EmobenchError(f"zoo show describes zoo entries; for {ref.text} use 'emobench profile {ref.text} --depth 2' "
                            f"(its layers, parameters and MACs)")
    res = ref.size or resolution
    c, h, w = ref.entry.input_size
    if res:
        h, w = res
    return EntryLayout(ref.entry, (c, h, w), block_table(ref.entry, res))
