"""Pyramid Vision Transformer (PVT v1, Wang et al., ICCV 2021) built from M² blocks, and its iRMB version.

Four stages, each a patch embedding (stride-p conv + LayerNorm) with a learned position map, then Transformer
layers whose attention reads keys and values from a spatially reduced map (SRA: stride-r conv + LayerNorm).
In M² terms a layer is an MHSA block with ``sr_ratio`` (λ = 1) and an FFN block; ``block = "irmb"`` replaces the
pair by one iRMB (λ = 4) keeping the stage's spatial reduction. The last map is pooled instead of a class token.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from emobench.nn.emo import check_image_input, validate_blocks
from emobench.nn.forms.folding import frozen
from emobench.nn.forms.fused import FusedM2Block, FusedPooledNormHead
from emobench.nn.layers import (MAX_BLOCKS, MAX_CLASSES, MAX_IMAGE, MAX_KERNEL, MAX_SCORES, Channels, Eps, Kernel, LayerNorm2d,
                                Ratio, even_kernel_message, keeps_size)
from emobench.nn.m2 import M2Block, M2BlockConfig
from emobench.nn.registry import BlockOp, ConvOp, register_family
from emobench.nn.vit import PooledNormHead, irmb_layer, transformer_layer


class PVTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    img_size: int = Field(224, ge=1, le=MAX_IMAGE)
    in_chans: Channels = 3
    num_classes: int = Field(1000, ge=0, le=MAX_CLASSES)
    patch_sizes: list[Annotated[int, Field(ge=1, le=MAX_IMAGE)]] = Field([4, 2, 2, 2], min_length=4, max_length=4)
    embed_dims: list[Channels] = Field([64, 128, 320, 512], min_length=4, max_length=4)
    depths: list[Annotated[int, Field(ge=0, le=MAX_BLOCKS)]] = Field([2, 2, 2, 2], min_length=4, max_length=4)
    dim_head: Channels = 64
    mlp_ratios: list[Ratio] = Field([8.0, 8.0, 4.0, 4.0], min_length=4, max_length=4)
    sr_ratios: list[Annotated[int, Field(ge=1, le=MAX_KERNEL)]] = Field([8, 4, 2, 1], min_length=4, max_length=4)
    block: Literal["transformer", "irmb"] = "transformer"
    irmb_ratio: Ratio = 4.0
    irmb_kernel: Kernel = 3
    attn_pre: bool = True
    norm_eps: Eps = 1e-6
    drop_path: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> "PVTConfig":
        for d in self.embed_dims:
            if d % self.dim_head:
                raise ValueError(f"dim_head={self.dim_head} must divide every embed dim, not {d}")
        blocks = sum(self.depths) * (2 if self.block == "transformer" else 1)
        if blocks > MAX_BLOCKS:
            raise ValueError(f"depths: {blocks:,} blocks in all; at most {MAX_BLOCKS:,}")
        if not keeps_size(self.irmb_kernel):
            raise ValueError(even_kernel_message("irmb_kernel", self.irmb_kernel))
        size = self.img_size
        for i in range(4):
            size //= self.patch_sizes[i]  # each patch embedding: a stride-p conv without padding
            if size < 1 or (self.depths[i] and size < self.sr_ratios[i]):
                raise ValueError(f"patch_sizes={self.patch_sizes} leave stage {i + 1} a {size}x{size} map of "
                                 f"img_size={self.img_size}: it must be at least 1 and at least sr_ratios[{i}]="
                                 f"{self.sr_ratios[i]}")
            tokens = size * size
            scores = self.embed_dims[i] // self.dim_head * tokens * (size // self.sr_ratios[i]) ** 2
            if self.depths[i] and scores > MAX_SCORES:
                raise ValueError(f"stage {i + 1}: global attention over {tokens:,} tokens holds {scores:.3g} scores "
                                 f"(heads x queries x keys), more than 2^48: use larger patch_sizes or sr_ratios")
        validate_blocks(self.stage_configs)
        return self

    def stage_configs(self) -> list[list[M2BlockConfig]]:
        """The M² blocks of each of the four stages (the model and the reach analysis both read this)."""
        rates = iter(torch.linspace(0, self.drop_path, sum(self.depths), device="cpu").tolist())
        stages = []
        for i in range(4):
            d, configs = self.embed_dims[i], []
            for _ in range(self.depths[i]):
                rate = next(rates)
                if self.block == "transformer":
                    configs += transformer_layer(d, self.dim_head, self.mlp_ratios[i], self.norm_eps, rate, self.sr_ratios[i])
                else:
                    configs.append(irmb_layer(d, self.dim_head, self.irmb_ratio, self.irmb_kernel, "global", 7, self.attn_pre,
                                              self.norm_eps, rate, self.sr_ratios[i]))
            stages.append(configs)
        return stages


class PatchEmbed(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, patch: int, eps: float) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim_in, dim_out, patch, patch)
        self.norm = LayerNorm2d(dim_out, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class PVT(PooledNormHead, nn.Module):
    def __init__(self, cfg: PVTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_chans = cfg.in_chans
        self.num_classes = cfg.num_classes
        size, dim_in = cfg.img_size, cfg.in_chans
        self.embeds, self.stages = nn.ModuleList(), nn.ModuleList()
        self.pos_embeds = nn.ParameterList()
        for i, configs in enumerate(cfg.stage_configs()):
            d, size = cfg.embed_dims[i], size // cfg.patch_sizes[i]
            self.embeds.append(PatchEmbed(dim_in, d, cfg.patch_sizes[i], cfg.norm_eps))
            pos = nn.Parameter(torch.zeros(1, d, size, size))
            nn.init.trunc_normal_(pos, std=0.02)
            self.pos_embeds.append(pos)
            self.stages.append(nn.Sequential(*[M2Block(c) for c in configs]))
            dim_in = d
        self.norm = LayerNorm2d(dim_in, eps=cfg.norm_eps)
        self.num_features = dim_in
        self.head = nn.Linear(dim_in, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map (stride 32), before the final norm."""
        for embed, pos, stage in zip(self.embeds, self.pos_embeds, self.stages):
            x = stage(embed(x) + pos)
        return x

    def fused_form(self) -> "FusedPVT":
        return FusedPVT(self)


class FusedPVT(FusedPooledNormHead):
    """An eval-mode :class:`PVT` on channels-last tokens (fused M² blocks, folded head). Inference only."""

    def __init__(self, model: PVT) -> None:
        super().__init__()
        self.cfg, self.in_chans = model.cfg, model.in_chans
        self.num_classes, self.num_features = model.num_classes, model.num_features
        self.embeds = []  # (conv weight, bias, stride, LN weight, bias, eps, position map NHWC) per stage
        self.stages = nn.ModuleList()
        for i, (embed, pos, stage) in enumerate(zip(model.embeds, model.pos_embeds, model.stages)):
            ln = embed.norm.norm
            for name, t in (("proj_weight", embed.proj.weight), ("proj_bias", embed.proj.bias), ("ln_weight", ln.weight),
                            ("ln_bias", ln.bias), ("pos", pos.permute(0, 2, 3, 1))):
                setattr(self, f"embed{i}_{name}", frozen(t))
            self.embeds.append((embed.proj.stride, ln.eps))
            self.stages.append(nn.ModuleList(FusedM2Block(b) for b in stage))
        self.fold_head(model)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        for i, ((stride, eps), stage) in enumerate(zip(self.embeds, self.stages)):
            p = lambda name: getattr(self, f"embed{i}_{name}")  # noqa: E731
            x = F.conv2d(x, p("proj_weight"), p("proj_bias"), stride=stride).permute(0, 2, 3, 1)
            x = F.layer_norm(x, x.shape[-1:], p("ln_weight"), p("ln_bias"), eps) + p("pos")
            for block in stage:
                x = block(x)
            x = x.permute(0, 3, 1, 2)  # an NCHW view of channels-last memory for the next patch conv
        return x


def _check_pvt_input(cfg: PVTConfig, shape: tuple[int, ...]) -> None:
    from emobench.errors import InputSizeError

    check_image_input(shape, cfg.in_chans, 32)
    if tuple(shape[-2:]) != (cfg.img_size, cfg.img_size):
        raise InputSizeError(f"this PVT's position maps are fixed at {cfg.img_size}x{cfg.img_size}, got {shape[-2]}x{shape[-1]}")


def pvt_layout(cfg: PVTConfig) -> list[ConvOp | BlockOp]:
    ops: list[ConvOp | BlockOp] = []
    for i, stage in enumerate(cfg.stage_configs()):
        p = cfg.patch_sizes[i]
        ops.append(ConvOp(f"embeds.{i}", f"stage{i + 1}", p, p, padding=0))
        ops += [BlockOp(f"stages.{i}.{j}", f"stage{i + 1}", c) for j, c in enumerate(stage)]
    return ops


@register_family("pvt", PVTConfig, "Pyramid Vision Transformer from M² blocks (SRA attention), or with iRMBs",
                 check_input=_check_pvt_input, layout=pvt_layout, forms=("reference", "fused"))
def build_pvt(cfg: PVTConfig) -> PVT:
    return PVT(cfg)
