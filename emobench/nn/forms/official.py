"""The ``official`` formulation: the official EMO code's operator sequence on emobench's parameters.

``zhangzjn/EMO`` ``model/emo.py`` runs every 1×1 projection as an NCHW convolution, partitions windows with
einops ``rearrange`` (here the same reshape/permute pairs), multiplies attention explicitly
(``q @ kᵀ · scale → softmax → @ x``) and applies ``LayerNorm2d`` by permuting to NHWC and back. Exporters
lower that sequence as they lower the official code, so this form is the fair comparator for every runtime:
``emobench bench --form official`` measures what a user of the official repository would get, and the other
formulations are judged by their ratio to it. Same parameters as the reference form (shared, not copied).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emobench.nn.emo import EMO
from emobench.nn.forms.fused import stage_outputs, staged_blocks
from emobench.nn.m2 import M2Block


class OfficialBlock(nn.Module):
    """``iRMB.forward`` of the official code, step by step, on an :class:`M2Block`'s sub-modules."""

    def __init__(self, block: M2Block) -> None:
        super().__init__()
        cfg = block.cfg
        self.block = block
        att = cfg.attention
        self.window = 0 if att is None or att.window == "global" else att.window_size
        self.num_heads = cfg.num_heads
        self.dim_head = att.dim_head if att else 0

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        blk = self.block
        b, c, h, w = x.shape
        wh, ww = (self.window, self.window) if self.window else (h, w)
        pad_r, pad_b = (ww - w % ww) % ww, (wh - h % wh) % wh
        x = F.pad(x, (0, pad_r, 0, pad_b, 0, 0))
        n1, n2 = (h + pad_b) // wh, (w + pad_r) // ww
        # 'b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1'
        x = x.reshape(b, c, wh, n1, ww, n2).permute(0, 3, 5, 1, 2, 4).reshape(b * n1 * n2, c, wh, ww).contiguous()
        g, heads, d, n = x.shape[0], self.num_heads, self.dim_head, wh * ww
        qk = blk.qk(x)
        # 'b (qk heads dim_head) h w -> qk b heads (h w) dim_head'
        qk = qk.reshape(g, 2, heads, d, n).permute(1, 0, 2, 4, 3).contiguous()
        q, k = qk[0], qk[1]
        attn = ((q @ k.transpose(-2, -1)) * d**-0.5).softmax(dim=-1)
        # attn_pre: 'b (heads dim_head) h w -> b heads (h w) dim_head', attend, back, then the V projection
        xh = x.reshape(g, heads, c // heads, n).transpose(-2, -1).contiguous()
        out = (attn @ xh).transpose(-2, -1).reshape(g, c, wh, ww).contiguous()
        out = blk.v(out)
        cm = out.shape[1]
        # '(b n1 n2) c h1 w1 -> b c (h1 n1) (w1 n2)'
        out = out.reshape(b, n1, n2, cm, wh, ww).permute(0, 3, 4, 1, 5, 2).reshape(b, cm, wh * n1, ww * n2).contiguous()
        if pad_r or pad_b:
            out = out[:, :, :h, :w].contiguous()
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blk, cfg = self.block, self.block.cfg
        shortcut = x
        x = blk.norm(x)
        if cfg.attention is not None:
            x = self._attend(x)
        elif cfg.expand:
            x = blk.v(x)
        x = x + blk._local(x) if cfg.has_skip and cfg.local_skip and cfg.dw_kernel is not None else blk._local(x)
        x = blk.proj(x)
        return shortcut + x if cfg.has_skip else x


class OfficialEMO(nn.Module):
    """``EMO.forward`` of the official code: stages, ``LayerNorm2d``, einops mean, head."""

    def __init__(self, model: EMO) -> None:
        super().__init__()
        self.stem = model.stage0[0]
        self.blocks, self.stage_ends = staged_blocks(model.stages, OfficialBlock)
        self.norm, self.head = model.norm, model.head

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of stage0 … stage4 (the official ``forward_features`` list), NCHW."""
        return stage_outputs(self.blocks, self.stage_ends, self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        x = self.norm(x)
        return self.head(x.mean((2, 3)))


def supports_official(model: nn.Module) -> str | None:
    """None when the official code can express ``model``; else why not."""
    if not isinstance(model, EMO):
        return f"{type(model).__name__} is not an EMO network"
    for block in (b for b in model.modules() if isinstance(b, M2Block)):
        cfg = block.cfg
        att = cfg.attention
        if cfg.cascade != "cascaded":
            return "the official code has no parallel cascade"
        if att is not None and (att.window not in ("grid", "global") or not att.attn_pre or att.sr_ratio > 1):
            return "the official code computes grid/global windows with attn_pre only"
    return None


def officialize(model: EMO) -> OfficialEMO:
    return OfficialEMO(model).eval()
