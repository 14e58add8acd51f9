"""Plain vision transformers (DeiT, Touvron et al., ICML 2021) built from M² blocks, and their iRMB versions.

The paper's point: a Transformer layer *is* two M² blocks, an MHSA block (λ = 1, F = attention) followed by an
FFN block (λ = 4, F = identity). ``block = "irmb"`` replaces each such pair by one iRMB (λ = 4), as in the EMO
paper's Table 2. Tokens live on the 14×14 patch map; classification pools the map instead of a class token
(the only departure from DeiT: 384 parameters and one token fewer).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from emobench.nn.emo import check_image_input, validate_blocks
from emobench.nn.forms.folding import frozen
from emobench.nn.forms.fused import FusedM2Block, FusedPooledNormHead
from emobench.nn.layers import (MAX_BLOCKS, MAX_CHANNELS, MAX_CLASSES, MAX_IMAGE, MAX_SCORES, MAX_WINDOW, Channels, ClassifierHead,
                                Eps, Kernel, LayerNorm2d, Ratio, even_kernel_message, keeps_size)
from emobench.nn.m2 import AttentionConfig, M2Block, M2BlockConfig, WindowMode
from emobench.nn.registry import BlockOp, ConvOp, register_family


class ViTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    img_size: int = Field(224, ge=1, le=MAX_IMAGE)
    patch_size: int = Field(16, ge=1, le=MAX_IMAGE)
    in_chans: Channels = 3
    num_classes: int = Field(1000, ge=0, le=MAX_CLASSES)
    embed_dim: Channels = 192
    depth: int = Field(12, ge=1, le=MAX_BLOCKS)
    dim_head: Channels = 64
    mlp_ratio: Ratio = 4.0
    block: Literal["transformer", "irmb"] = "transformer"
    irmb_ratio: float = Field(4.0, gt=0, le=MAX_CHANNELS, allow_inf_nan=False,
                              description="λ of the iRMB that replaces a Transformer layer")
    irmb_kernel: Kernel = 3
    irmb_window: WindowMode = "global"
    irmb_window_size: int = Field(7, ge=1, le=MAX_WINDOW)
    attn_pre: bool = True
    norm_eps: Eps = 1e-6
    drop_path: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> "ViTConfig":
        if self.embed_dim % self.dim_head:
            raise ValueError(f"dim_head={self.dim_head} must divide embed_dim={self.embed_dim}")
        if self.img_size % self.patch_size:
            raise ValueError(f"patch_size={self.patch_size} must divide img_size={self.img_size}")
        blocks = self.depth * (2 if self.block == "transformer" else 1)
        if blocks > MAX_BLOCKS:
            raise ValueError(f"depth={self.depth} makes {blocks:,} blocks; at most {MAX_BLOCKS:,}")
        if not keeps_size(self.irmb_kernel):
            raise ValueError(even_kernel_message("irmb_kernel", self.irmb_kernel))
        tokens = self.grid**2
        scores = self.embed_dim // self.dim_head * tokens * tokens
        if scores > MAX_SCORES:
            raise ValueError(f"img_size / patch_size = {self.grid}: global attention over {tokens:,} tokens holds "
                             f"{scores:.3g} scores (heads x tokens²), more than 2^48: use a larger patch_size")
        validate_blocks(lambda: transformer_layer(self.embed_dim, self.dim_head, self.mlp_ratio, self.norm_eps, 0.0)
                        + [irmb_layer(self.embed_dim, self.dim_head, self.irmb_ratio, self.irmb_kernel, self.irmb_window,
                                      self.irmb_window_size, self.attn_pre, self.norm_eps, 0.0)])
        return self

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    def block_configs(self) -> list[M2BlockConfig]:
        """Every M² block in order: two per Transformer layer, or one iRMB per layer (the model and the reach
        analysis both read this)."""
        configs: list[M2BlockConfig] = []
        for rate in torch.linspace(0, self.drop_path, self.depth, device="cpu").tolist():
            if self.block == "transformer":
                configs += transformer_layer(self.embed_dim, self.dim_head, self.mlp_ratio, self.norm_eps, rate)
            else:
                configs.append(irmb_layer(self.embed_dim, self.dim_head, self.irmb_ratio, self.irmb_kernel, self.irmb_window,
                                          self.irmb_window_size, self.attn_pre, self.norm_eps, rate))
        return configs


def transformer_layer(dim: int, dim_head: int, mlp_ratio: float, eps: float, drop_path: float, sr_ratio: int = 1) -> list[M2BlockConfig]:
    """A Transformer layer as two M² blocks: MHSA (λ = 1) then FFN (λ = mlp_ratio), both pre-LN with residual.
    ``sr_ratio`` > 1 gives PVT's spatial-reduction attention."""
    mhsa = M2BlockConfig(dim_in=dim, dim_out=dim, exp_ratio=1.0, norm="ln", norm_eps=eps, act="none", dw_kernel=None,
                         proj_bias=True, drop_path=drop_path,
                         attention=AttentionConfig(window="global", dim_head=dim_head, attn_pre=False, sr_ratio=sr_ratio))
    ffn = M2BlockConfig(dim_in=dim, dim_out=dim, exp_ratio=mlp_ratio, norm="ln", norm_eps=eps, act="gelu", dw_kernel=None,
                        proj_bias=True, drop_path=drop_path)
    return [mhsa, ffn]


def irmb_layer(dim: int, dim_head: int, ratio: float, kernel: int, window: WindowMode, window_size: int, attn_pre: bool,
               eps: float, drop_path: float, sr_ratio: int = 1) -> M2BlockConfig:
    """The iRMB that replaces a Transformer layer (EMO's settings: LN, GELU, DW conv + skip, no proj bias)."""
    return M2BlockConfig(dim_in=dim, dim_out=dim, exp_ratio=ratio, norm="ln", norm_eps=eps, act="gelu", dw_kernel=kernel,
                         drop_path=drop_path,
                         attention=AttentionConfig(window=window, window_size=window_size, dim_head=dim_head,
                                                   attn_pre=attn_pre, sr_ratio=sr_ratio))


class PooledNormHead(ClassifierHead):
    """The head of ViT and PVT: LayerNorm over channels, global average pool, classifier."""

    norm: LayerNorm2d

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(x).mean((2, 3))
        return x if pre_logits else self.head(x)


class ViT(PooledNormHead, nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_chans = cfg.in_chans
        self.num_classes = cfg.num_classes
        self.grid = cfg.grid
        d = cfg.embed_dim
        self.patch_embed = nn.Conv2d(cfg.in_chans, d, cfg.patch_size, cfg.patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, d, self.grid, self.grid))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*[M2Block(c) for c in cfg.block_configs()])
        self.norm = LayerNorm2d(d, eps=cfg.norm_eps)
        self.num_features = d
        self.head = nn.Linear(d, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's map, before the final norm."""
        return self.blocks(self.patch_embed(x) + self.pos_embed)

    def fused_form(self) -> "FusedViT":
        return FusedViT(self)


class FusedViT(FusedPooledNormHead):
    """An eval-mode :class:`ViT` on channels-last tokens (fused M² blocks, folded head). Inference only."""

    def __init__(self, model: ViT) -> None:
        super().__init__()
        self.cfg, self.in_chans = model.cfg, model.in_chans
        self.num_classes, self.num_features = model.num_classes, model.num_features
        conv = model.patch_embed
        self.patch_weight, self.patch_bias, self.patch_stride = frozen(conv.weight), frozen(conv.bias), conv.stride
        self.pos_embed = frozen(model.pos_embed.permute(0, 2, 3, 1))
        self.blocks = nn.ModuleList(FusedM2Block(b) for b in model.blocks)
        self.fold_head(model)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.conv2d(x, self.patch_weight, self.patch_bias, stride=self.patch_stride).permute(0, 2, 3, 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x.permute(0, 3, 1, 2)


def _check_vit_input(cfg: ViTConfig, shape: tuple[int, ...]) -> None:
    from emobench.errors import InputSizeError

    check_image_input(shape, cfg.in_chans, cfg.patch_size)
    if tuple(shape[-2:]) != (cfg.img_size, cfg.img_size):
        raise InputSizeError(f"this ViT's position embedding is fixed at {cfg.img_size}x{cfg.img_size}, got {shape[-2]}x{shape[-1]}")


def vit_layout(cfg: ViTConfig) -> list[ConvOp | BlockOp]:
    # patch embedding: a p×p stride-p conv without padding; adding the position map is pointwise
    return ([ConvOp("patch_embed", "embed", cfg.patch_size, cfg.patch_size, padding=0)]
            + [BlockOp(f"blocks.{i}", "blocks", c) for i, c in enumerate(cfg.block_configs())])


@register_family("vit", ViTConfig, "plain ViT/DeiT from MHSA + FFN M² blocks, or with iRMBs", check_input=_check_vit_input,
                 layout=vit_layout, forms=("reference", "fused"))
def build_vit(cfg: ViTConfig) -> ViT:
    return ViT(cfg)
