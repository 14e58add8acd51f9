"""MobileNetV2 (Sandler et al., CVPR 2018) built from the IRB instantiation of the M² block.

Config → module → registered family. The layout follows the paper's Table 2 (and torchvision's
``mobilenet_v2``): a 3×3 stride-2 stem, inverted residual stages ``[t, c, n, s]``, a 1×1 conv to 1280 (scaled
up with the width multiplier above 1), global pooling, dropout and the classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from emobench.nn.emo import check_image_input, validate_blocks
from emobench.nn.forms.folding import conv_of, frozen, linear_of
from emobench.nn.forms.fused import FusedM2Block, token_linear
from emobench.nn.layers import MAX_BLOCKS, MAX_CHANNELS, MAX_CLASSES, MAX_DILATION, ClassifierHead, ConvNormAct, Eps
from emobench.nn.m2 import M2Block, M2BlockConfig
from emobench.nn.registry import BlockOp, ConvOp, register_family

#: t (expansion), c (channels), n (blocks), s (stride of the first block), from the paper's Table 2.
DEFAULT_STAGES = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never more than 10 % below the request (the reference rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class MobileNetV2Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: float = Field(1.0, gt=0, le=MAX_CHANNELS, allow_inf_nan=False)
    stages: list[list[int]] = Field(default_factory=lambda: [list(s) for s in DEFAULT_STAGES], min_length=1,
                                    max_length=MAX_BLOCKS)
    in_chans: int = Field(3, ge=1, le=MAX_CHANNELS)
    num_classes: int = Field(1000, ge=0, le=MAX_CLASSES)
    drop: float = Field(0.2, ge=0, lt=1)
    norm_eps: Eps = 1e-5
    dilations: list[int] | None = Field(None, description="depth-wise dilation per stage row (mmseg's dilated "
                                        "backbones, e.g. d8: strides 1,2,2,1,1,1,1 and dilations 1,1,1,2,2,4,4)")

    @model_validator(mode="after")
    def _check(self) -> "MobileNetV2Config":
        for row in self.stages:
            if len(row) != 4 or min(row) < 1 or row[3] > 2:
                raise ValueError(f"stages: each row is [t, c, n, s] with positive values and s <= 2, got {row}")
            if row[0] > MAX_CHANNELS or row[1] > MAX_CHANNELS or row[2] > MAX_BLOCKS:
                raise ValueError(f"stages: a row [t, c, n, s] takes t and c up to {MAX_CHANNELS:,} and n up to "
                                 f"{MAX_BLOCKS:,}, got {row}")
        if sum(row[2] for row in self.stages) > MAX_BLOCKS:
            raise ValueError(f"stages: {sum(row[2] for row in self.stages):,} blocks in all; at most {MAX_BLOCKS:,}")
        if self.dilations is not None and (len(self.dilations) != len(self.stages) or min(self.dilations) < 1
                                           or max(self.dilations) > MAX_DILATION):
            raise ValueError(f"dilations: one value from 1 to {MAX_DILATION} per stage row ({len(self.stages)}), "
                             f"got {self.dilations}")
        widest = max(make_divisible(32 * self.width), make_divisible(1280 * max(1.0, self.width)),
                     *(make_divisible(row[1] * self.width) for row in self.stages))
        if widest > MAX_CHANNELS:
            raise ValueError(f"width={self.width} makes a layer {widest:,} channels wide; at most {MAX_CHANNELS:,}")
        validate_blocks(self.block_configs)
        return self

    @property
    def stem_dim(self) -> int:
        return make_divisible(32 * self.width)

    def block_configs(self) -> list[M2BlockConfig]:
        """The IRB M² block of every layer, in order (the model and the reach analysis both read this)."""
        blocks, dim = [], self.stem_dim
        dilations = self.dilations or [1] * len(self.stages)
        for (t, c, n, s), dilation in zip(self.stages, dilations):
            out = make_divisible(c * self.width)
            for i in range(n):
                blocks.append(
                    M2BlockConfig(
                        dim_in=dim, dim_out=out, exp_ratio=float(t), expand=t != 1, stride=s if i == 0 else 1,
                        norm="none", norm_eps=self.norm_eps, act="relu6", expand_bias=False, expand_norm=t != 1,
                        dw_kernel=3, dw_dilation=dilation, dw_act="relu6", local_skip=False, proj_norm=True,
                    )
                )
                dim = out
        return blocks


class MobileNetV2(ClassifierHead, nn.Module):
    def __init__(self, cfg: MobileNetV2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_chans = cfg.in_chans
        self.num_classes = cfg.num_classes
        self.stem = ConvNormAct(cfg.in_chans, cfg.stem_dim, 3, stride=2, norm="bn", act="relu6", norm_eps=cfg.norm_eps)
        configs = cfg.block_configs()
        self.blocks = nn.Sequential(*[M2Block(c) for c in configs])
        self.num_features = make_divisible(1280 * max(1.0, cfg.width))
        self.head_conv = ConvNormAct(configs[-1].dim_out, self.num_features, 1, norm="bn", act="relu6", norm_eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.drop)
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 1×1 head conv's map (stride 32), before pooling."""
        return self.head_conv(self.blocks(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # timm's order: pool, dropout, then the classifier (pre-logits are the pooled features after dropout).
        x = self.drop(x.mean((2, 3)))
        return x if pre_logits else self.head(x)

    def backbone_stages(self) -> list[tuple[nn.Module, int]]:
        """(stage, output channels) for a down-stream backbone (:class:`emobench.nn.dense.Backbone`): the stem,
        one stage per row of ``stages`` and the 1×1 head conv. Index i is mmdet/mmseg's ``out_indices`` i − 1."""
        out, start = [(self.stem, self.cfg.stem_dim)], 0
        for _, c, n, _ in self.cfg.stages:
            out.append((self.blocks[start:start + n], make_divisible(c * self.cfg.width)))
            start += n
        return out + [(self.head_conv, self.num_features)]

    def fused_form(self) -> "FusedMobileNetV2":
        return FusedMobileNetV2(self)


class FusedMobileNetV2(nn.Module):
    """An eval-mode :class:`MobileNetV2` on channels-last tokens: every BatchNorm folded into its conv, the 1×1
    convs as matrix products (see :mod:`emobench.nn.forms.fused`). Same outputs; inference only."""

    def __init__(self, model: MobileNetV2) -> None:
        super().__init__()
        self.cfg, self.in_chans = model.cfg, model.in_chans
        self.num_classes, self.num_features = model.num_classes, model.num_features
        conv = model.stem.conv
        w, b = conv_of(model.stem)
        self.stem_weight, self.stem_bias = frozen(w), frozen(b)
        self.stem_args = dict(stride=conv.stride, padding=conv.padding)
        self.blocks = nn.ModuleList(FusedM2Block(b) for b in model.blocks)
        w, b = linear_of(model.head_conv)
        self.head_conv_weight, self.head_conv_bias = frozen(w), frozen(b)
        self.head_weight = self.head_bias = None
        if isinstance(model.head, nn.Linear):
            self.head_weight, self.head_bias = frozen(model.head.weight), frozen(model.head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.relu6(F.conv2d(x, self.stem_weight, self.stem_bias, **self.stem_args)).permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        return F.relu6(token_linear(x, self.head_conv_weight, self.head_conv_bias)).permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))
        return x if pre_logits or self.head_weight is None else F.linear(x, self.head_weight, self.head_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def mobilenetv2_layout(cfg: MobileNetV2Config) -> list[ConvOp | BlockOp]:
    # the 1×1 head conv is pointwise (the identity for reach)
    return ([ConvOp("stem", "stem", 3, 2)] + [BlockOp(f"blocks.{i}", "blocks", c) for i, c in enumerate(cfg.block_configs())]
            + [ConvOp("head_conv", "head", 1)])


@register_family("mobilenetv2", MobileNetV2Config, "MobileNetV2: a stem and stages of IRB (inverted residual) M² blocks",
                 check_input=lambda cfg, shape: check_image_input(shape, cfg.in_chans, 32), layout=mobilenetv2_layout,
                 stages=lambda net: net.backbone_stages(), forms=("reference", "fused"))
def build_mobilenetv2(cfg: MobileNetV2Config) -> MobileNetV2:
    return MobileNetV2(cfg)
