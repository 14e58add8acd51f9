"""The paper's module comparison (params, FLOPs, MPL of MHSA, W-MHSA, Conv, DW-Conv, iRMB on a C×W×W map):
closed forms beside the same modules built and counted."""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

from emobench.errors import EmobenchError
from emobench.measure.counters import count_emobench
from emobench.nn.m2 import AttentionConfig, M2Block, M2BlockConfig
from emobench.analysis import reach
from emobench.analysis.mpl import block_mpl, paper_mpl


def _counted(module: nn.Module, c: int, w: int) -> tuple[int, int]:
    result, _ = count_emobench(module.eval(), torch.zeros(1, c, w, w))
    return sum(p.numel() for p in module.parameters()), 2 * result.macs


def irmb_heads(channels: int) -> tuple[int, int]:
    """(heads, channels per head) of the table's iRMB: heads of 16 channels where C allows, else one head of C."""
    dim_head = 16 if channels % 16 == 0 else channels
    return channels // dim_head, dim_head


#: the table's ranges: every module is built and run for real (the Conv row holds C²k² weights, MHSA a W²×W²
#: attention map), so these keep one table within a few hundred MB and seconds
MAX_TABLE_CHANNELS = 512
MAX_TABLE_WIDTH = 64
MAX_TABLE_KERNEL = 15
MAX_TABLE_MID = 4096


def check_module_sizes(channels: int, width: int, window: int, kernel: int, expansion: float) -> None:
    """One :class:`EmobenchError`, with the allowed range, for a number :func:`module_table` cannot take."""
    if not 1 <= channels <= MAX_TABLE_CHANNELS:
        raise EmobenchError(f"channels must be from 1 to {MAX_TABLE_CHANNELS}, got {channels}")
    if not 1 <= width <= MAX_TABLE_WIDTH:
        raise EmobenchError(f"width must be from 1 to {MAX_TABLE_WIDTH}, got {width}")
    if window < 1:
        raise EmobenchError(f"window must be from 1 to the width {width}, got {window}")
    if window > width:
        raise EmobenchError(f"the window w={window} is larger than the map W={width}: the closed forms assume w <= W")
    if not (1 <= kernel <= MAX_TABLE_KERNEL and kernel % 2):
        raise EmobenchError(f"kernel must be an odd number from 1 to {MAX_TABLE_KERNEL} (the iRMB's depth-wise conv "
                            f"pads 'same'), got {kernel}")
    mid = int(channels * expansion) if math.isfinite(expansion) and 0 < expansion <= MAX_TABLE_MID else 0
    if not 1 <= mid <= MAX_TABLE_MID:
        raise EmobenchError(f"expansion must be a finite ratio > 0 giving the iRMB from 1 to {MAX_TABLE_MID} expanded "
                            f"channels (int(C x expansion), C = {channels}), got {expansion}")


def module_table(channels: int = 64, width: int = 14, window: int = 7, kernel: int = 3, expansion: float = 4.0) -> pd.DataFrame:
    """Rows MHSA, W-MHSA, Conv, DW-Conv, iRMB. FLOPs = 2 × MACs (the paper's table counts multiply and add);
    the closed forms also count softmax and scaling (3L² and 3Ll), which no counter does."""
    check_module_sizes(channels, width, window, kernel, expansion)
    c, w_, k = channels, width, kernel
    L, l = w_ * w_, window * window

    def attention_block(mode: str) -> M2BlockConfig:
        return M2BlockConfig(dim_in=c, dim_out=c, exp_ratio=1.0, norm="none", act="none", dw_kernel=None, proj_bias=True,
                             attention=AttentionConfig(window=mode, window_size=window, dim_head=c, attn_pre=False))

    irmb = M2BlockConfig(dim_in=c, dim_out=c, exp_ratio=expansion, norm="ln", act="gelu", dw_kernel=k,
                         attention=AttentionConfig(window="grid", window_size=window, dim_head=irmb_heads(c)[1]))
    rows = [
        ("MHSA", M2Block(attention_block("global")), 4 * (c + 1) * c, 8 * c * c * L + 4 * c * L * L + 3 * L * L, attention_block("global")),
        ("W-MHSA", M2Block(attention_block("contiguous")), 4 * (c + 1) * c, 8 * c * c * L + 4 * c * L * l + 3 * L * l, attention_block("contiguous")),
        ("Conv", nn.Conv2d(c, c, k, padding=k // 2, bias=True), (c * k * k + 1) * c, 2 * c * k * k * L * c, None),
        ("DW-Conv", nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=True), (k * k + 1) * c, 2 * k * k * L * c, None),
        ("iRMB (grid, as released)", M2Block(irmb), None, None, irmb),
    ]
    out = []
    for name, module, params_formula, flops_formula, cfg in rows:
        params, flops = _counted(module, c, w_)
        if cfg is not None:
            exact, _ = block_mpl(cfg, w_)
            paper = paper_mpl(cfg, w_)
        else:
            exact = float(reach.distances(lambda n: reach.conv(n, k), w_).max())
            paper = 2 * w_ / (k - 1) if k > 1 else math.inf
        out.append({"module": name, "params (formula)": params_formula, "params (built)": params,
                    "FLOPs (formula)": flops_formula, "FLOPs (counted)": flops,
                    "MPL (exact)": exact, "MPL (paper)": paper})
    return pd.DataFrame(out)
