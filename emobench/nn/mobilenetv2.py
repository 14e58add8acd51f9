"""MobileNetV2 (Sandler et al., CVPR 2018) built from the IRB instantiation of the M² block.

Config → module → registered family. The layout follows the paper's Table 2 (and torchvision's
``mobilenet_v2``): a 3×3 stride-2 stem, inverted residual stages ``[t, c, n, s]``, a 1×1 conv to 1280 (scaled
up with the width multiplier above 1), global pooling, dropout and the classifier.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from .emo import check_image_input
from .layers import ConvNormAct
from .m2 import M2Block, M2BlockConfig
from .registry import register_family

#: t (expansion), c (channels), n (blocks), s (stride of the first block), from the paper's Table 2.
DEFAULT_STAGES = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never more than 10 % below the request (the reference rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class MobileNetV2Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: float = Field(1.0, gt=0)
    stages: list[list[int]] = Field(default_factory=lambda: [list(s) for s in DEFAULT_STAGES])
    in_chans: int = 3
    num_classes: int = Field(1000, ge=0)
    drop: float = Field(0.2, ge=0, lt=1)
    norm_eps: float = 1e-5

    @model_validator(mode="after")
    def _check(self) -> "MobileNetV2Config":
        for row in self.stages:
            if len(row) != 4 or min(row) < 1 or row[3] > 2:
                raise ValueError(f"stages: each row is [t, c, n, s] with positive values and s <= 2, got {row}")
        return self


class MobileNetV2(nn.Module):
    def __init__(self, cfg: MobileNetV2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_chans = cfg.in_chans
        stem = make_divisible(32 * cfg.width)
        self.stem = ConvNormAct(cfg.in_chans, stem, 3, stride=2, norm="bn", act="relu6", norm_eps=cfg.norm_eps)
        blocks, dim = [], stem
        for t, c, n, s in cfg.stages:
            out = make_divisible(c * cfg.width)
            for i in range(n):
                blocks.append(
                    M2Block(
                        M2BlockConfig(
                            dim_in=dim, dim_out=out, exp_ratio=float(t), expand=t != 1, stride=s if i == 0 else 1,
                            norm="none", norm_eps=cfg.norm_eps, act="relu6", expand_bias=False, expand_norm=t != 1,
                            dw_kernel=3, dw_act="relu6", local_skip=False, proj_norm=True,
                        )
                    )
                )
                dim = out
        self.blocks = nn.Sequential(*blocks)
        self.num_features = make_divisible(1280 * max(1.0, cfg.width))
        self.head_conv = ConvNormAct(dim, self.num_features, 1, norm="bn", act="relu6", norm_eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.drop)
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()


    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_conv(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.forward_features(x).mean((2, 3))))


@register_family("mobilenetv2", MobileNetV2Config, "MobileNetV2: a stem and stages of IRB (inverted residual) M² blocks",
                 check_input=lambda cfg, shape: check_image_input(shape, cfg.in_chans, 32))
def build_mobilenetv2(cfg: MobileNetV2Config) -> MobileNetV2:
    return MobileNetV2(cfg)
