"""Maximum path length (MPL): how many layers a signal needs to connect the two farthest positions.

The paper's closed forms (asymptotic) beside the exact value from boolean reachability: per axis, a homogeneous
stack of one block's relation is iterated until every position reaches every other one, or until nothing
changes any more (then the MPL is infinite). Counting: ``blocks`` (the paper's sense: one iRMB = 1) or
``layers`` (every spatial operator inside a block = 1).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from emobench.errors import EmobenchError
from emobench.nn.layers import MAX_KERNEL, MAX_WINDOW, keeps_size
from emobench.nn.m2 import M2BlockConfig
from emobench.zoo.catalog import ZooEntry, get_entry
from emobench.analysis import reach
from emobench.analysis.reach import BlockOps


def block_kind(cfg: M2BlockConfig) -> str:
    """Which row of the paper's module table a block instantiates."""
    att = cfg.attention
    if att is None:
        return "DW-Conv" if cfg.dw_kernel else "MLP"
    if cfg.dw_kernel is None:
        return "MHSA" if att.window == "global" else "W-MHSA"
    return "iRMB"


def paper_mpl(cfg: M2BlockConfig, width: int) -> float:
    """The paper's asymptotic MPL (module table): MHSA O(1); W-MHSA O(∞); (DW-)Conv O(2W/(k−1));
    iRMB O(2W/(k−1+2w)). NaN where the paper gives none."""
    kind = block_kind(cfg)
    k = cfg.dw_kernel or 1
    if kind == "MHSA":
        return 1.0
    if kind == "W-MHSA":
        return math.inf
    if kind == "DW-Conv":
        return 2 * width / (k - 1) if k > 1 else math.inf
    if kind == "iRMB":
        w = cfg.attention.window_size if cfg.attention.window != "global" else width
        return 2 * width / (k - 1 + 2 * w)
    return math.nan


def _steps(cfg: M2BlockConfig, count: str, se_as_global: bool):
    """The per-axis relation of one counted step: the whole block, or each spatial layer in turn."""
    ops = BlockOps(cfg, se_as_global)
    if cfg.stride != 1 or cfg.dim_in != cfg.dim_out:
        raise EmobenchError("path lengths are defined for size-preserving blocks (stride 1)")
    if count == "blocks":
        return [ops.relation]
    if count == "layers":
        # Each spatial operator is a step; the block's residual lets a path skip any of them.
        return [lambda n, i=i: reach.union_with_identity(ops.layers(n)[i]) for i in range(len(ops.layers(7)))]
    raise EmobenchError(f"count must be 'blocks' or 'layers', got '{count}'")


def axis_distances(cfg: M2BlockConfig | list[M2BlockConfig], n: int, count: str = "blocks", se_as_global: bool = False) -> np.ndarray:
    """Per-axis shortest path lengths (outputs × inputs) for a stack of this block at width ``n``; a list of
    blocks stacks them in turn (e.g. W-MSA, SW-MSA, W-MSA, …)."""
    cfgs = cfg if isinstance(cfg, list) else [cfg]
    steps = [s for c in cfgs for s in _steps(c, count, se_as_global)]
    if not steps:
        return np.where(reach.identity(n), 0.0, np.inf)
    if len(steps) == 1:
        return reach.distances(steps[0], n)
    return cycle_distances([s(n) for s in steps])


def cycle_distances(relations: list[np.ndarray]) -> np.ndarray:
    """Distances through a stack that applies ``relations`` in turn (each reflexive): the index of the first
    layer after which a pair is connected; ∞ when a whole cycle changes nothing."""
    n = relations[0].shape[0]
    dist = np.where(reach.identity(n), 0.0, np.inf)
    current = reach.identity(n)
    layer, unchanged = 0, 0
    while not current.all() and unchanged < len(relations):
        nxt = reach.compose(relations[layer % len(relations)], current)
        layer += 1
        unchanged = unchanged + 1 if np.array_equal(nxt, current) else 0
        dist[nxt & ~current] = layer
        current = nxt
    return dist


def block_mpl(cfg: M2BlockConfig | list[M2BlockConfig], height: int, width: int | None = None, count: str = "blocks", se_as_global: bool = False) -> tuple[float, float]:
    """(MPL, mean path length) of a homogeneous stack of ``cfg`` on an H × W map."""
    width = width or height
    rows = axis_distances(cfg, height, count, se_as_global)
    cols = rows if width == height else axis_distances(cfg, width, count, se_as_global)
    return reach.path_lengths(rows, cols)


def mpl_table(blocks: list[str], widths: list[int], count: str = "blocks", overrides: dict | None = None) -> pd.DataFrame:
    """MPL of zoo blocks at each width: exact, mean, and the paper's asymptotic value."""
    rows = []
    for name in blocks:
        cfgs = []
        for part in name.split("+"):  # "wmhsa+swmhsa": the two blocks in turn
            entry = get_entry(part)
            if entry.family != "m2":
                raise EmobenchError(f"'{part}' is a network; `emobench mpl --model {part}` gives its per-stage MPL")
            cfgs.append(entry.with_overrides(**overrides).config if overrides else entry.config)
        cfg = cfgs[0]
        for w in widths:
            if w < 1:
                raise EmobenchError(f"widths must be >= 1, got {w}")
            exact, mean = block_mpl(cfgs if len(cfgs) > 1 else cfg, w, count=count)
            rows.append({"block": name, "kind": "+".join(block_kind(c) for c in cfgs), "W": w, "MPL": exact,
                         "mean path": mean, "paper (asymptotic)": paper_mpl(cfg, w) if len(cfgs) == 1 else math.nan,
                         "k": cfg.dw_kernel or 0, "w": cfg.attention.window_size if cfg.attention else 0})
    return pd.DataFrame(rows)


COUNTS = ("blocks", "layers")


def check_count(count: str) -> None:
    """``blocks`` (the paper's sense: one block = 1 step) or ``layers`` (each spatial operation = 1)."""
    if count not in COUNTS:
        raise EmobenchError(f"--count takes blocks or layers, got '{count}'")


def stage_table(entry: ZooEntry, resolution: tuple[int, int] | None = None, count: str = "blocks", se_as_global: bool = False):
    """Per stage of a network at a real resolution: the MPL and mean path length of its repeated block at the
    stage's map size, and how many of those blocks the stage has; with the network's receptive-field result
    (where the centre output and every output become global)."""
    from emobench.analysis.rf import entry_receptive_field
    from emobench.models.budget import check_reach_fits

    check_count(count)
    if entry.family != "emo":
        raise EmobenchError(f"'{entry.name}' is not an EMO network: per-stage MPL covers the emo family (blocks: use --blocks)")
    check_reach_fits(list(resolution or entry.input_size[1:]), entry.name)
    rf_result = entry_receptive_field(entry, resolution, se_as_global)
    rf = rf_result.table
    rows = []
    for i, stage in enumerate(entry.config.block_configs()[1:], start=1):
        first = rf[rf["layer"] == f"stage{i}.0"].iloc[0]
        h, w = int(first["output H"]), int(first["output W"])
        repeated = stage[1:]
        if not repeated:
            continue
        exact, mean = block_mpl(repeated[0], h, w, count, se_as_global)
        rows.append({"stage": f"stage{i}", "map H": h, "map W": w, "blocks": len(repeated), "kind": block_kind(repeated[0]),
                     "MPL": exact, "mean path": mean, "connects within stage": exact <= len(repeated)})
    return pd.DataFrame(rows), rf_result


def mpl_sweep(blocks: list[str], widths: list[int], count: str = "blocks", kernel: int | None = None,
              window: int | None = None) -> pd.DataFrame:
    """:func:`mpl_table` with the depth-wise ``kernel`` and attention ``window`` overridden, each only in the
    blocks that have that part (a kernel for MHSA, or a window for DW-Conv, would make a different block)."""
    from emobench.models.budget import check_reach_fits

    check_count(count)
    blocks = [b.strip() for b in blocks if b.strip()]
    if not blocks:
        raise EmobenchError("--blocks names no block (e.g. --blocks irmb,mhsa)")
    if kernel is not None and not (1 <= kernel <= MAX_KERNEL and keeps_size(kernel)):
        raise EmobenchError(f"kernel must be an odd number from 1 to {MAX_KERNEL} (the depth-wise conv pads 'same', "
                            f"which keeps the map size only for an odd kernel), got {kernel}")
    if window is not None and not 1 <= window <= MAX_WINDOW:
        raise EmobenchError(f"window must be from 1 to {MAX_WINDOW}, got {window}")
    if widths and min(widths) < 1:
        raise EmobenchError(f"widths must be >= 1, got {min(widths)}")
    if widths:
        check_reach_fits([max(widths)] * 2, f"--width {max(widths)}")  # one width at a time, both axes
    overrides: dict = {}
    if kernel is not None:
        overrides["dw_kernel"] = kernel
    if window is not None:
        overrides["attention"] = {"window_size": window}
    if not overrides:
        return mpl_table(blocks, widths, count)
    frames = []
    for name in blocks:
        entries = [get_entry(part) for part in name.split("+")]
        for entry in entries:
            if entry.family != "m2":
                raise EmobenchError(f"'{entry.name}' is a network; `emobench mpl --model {entry.name}` gives its per-stage MPL")
        cfgs = [entry.config for entry in entries]
        own = {k: v for k, v in overrides.items()
               if (k != "dw_kernel" or all(c.dw_kernel for c in cfgs)) and (k != "attention" or all(c.attention for c in cfgs))}
        frames.append(mpl_table([name], widths, count, own or None))
    return pd.concat(frames, ignore_index=True)
