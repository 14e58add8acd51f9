"""EMO: Efficient MOdel built from iRMBs (Zhang et al., ICCV 2023; official code ``zhangzjn/EMO``).

Config → module → registered family. The module reproduces ``model/emo.py`` (class ``EMO``) with the same
state-dict keys, so official checkpoints load as they are; the variants themselves live in ``zoo/`` as data.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from emobench.errors import InputSizeError
from emobench.nn.layers import (MAX_BLOCKS, MAX_CHANNELS, MAX_CLASSES, MAX_INPUT_SIDE, MAX_MAP_ELEMENTS, MAX_WINDOW, ActName,
                                Channels, Eps, Kernel, LayerNorm2d, Ratio, even_kernel_message, keeps_size, same_padding)
from emobench.nn.registry import ALL_FORMS, BlockOp, ConvOp, register_family
from emobench.nn.m2 import AttentionConfig, M2Block, M2BlockConfig, WindowMode

StageNorm = Literal["bn", "ln"]


def validate_blocks(make_blocks) -> None:
    """Build a network config's block configs so that a bad combination is reported when the file is read."""
    try:
        make_blocks()
    except ValidationError as err:
        first = err.errors()[0]
        raise ValueError(f"a block would be invalid: {first['msg']}") from None


class EMOConfig(BaseModel):
    """The arguments of the official ``EMO`` class, plus the ablation switches of the M² block."""

    model_config = ConfigDict(extra="forbid")

    in_chans: int = Field(3, ge=1, le=MAX_CHANNELS)
    num_classes: int = Field(1000, ge=0, le=MAX_CLASSES, description="0 drops the classifier (forward returns pooled features)")
    depths: list[Annotated[int, Field(ge=1, le=MAX_BLOCKS)]] = Field(min_length=4, max_length=4)
    stem_dim: int = Field(24, ge=1, le=MAX_CHANNELS)
    embed_dims: list[Channels] = Field(min_length=4, max_length=4)
    exp_ratios: list[Ratio] = Field(min_length=4, max_length=4)
    norm_layers: list[StageNorm] = Field(["bn", "bn", "ln", "ln"], min_length=4, max_length=4)
    act_layers: list[ActName] = Field(["silu", "silu", "gelu", "gelu"], min_length=4, max_length=4)
    dw_kss: list[Kernel] = Field([3, 3, 5, 5], min_length=4, max_length=4)
    se_ratios: list[Annotated[float, Field(ge=0, le=MAX_CHANNELS, allow_inf_nan=False)]] = Field(
        [0.0, 0.0, 0.0, 0.0], min_length=4, max_length=4)
    dim_heads: list[Channels] = Field(min_length=4, max_length=4)
    window_sizes: list[Annotated[int, Field(le=MAX_WINDOW)]] = Field(
        [7, 7, 7, 7], min_length=4, max_length=4, description="a value <= 0: global attention in that stage")
    attn_ss: list[bool] = Field([False, False, True, True], min_length=4, max_length=4)
    qkv_bias: bool = True
    attn_pre: bool = True
    window: WindowMode = "grid"
    v_group: bool = False
    dw_conv: bool = Field(True, description="ablation: the depth-wise conv of the non-downsampling blocks")
    cascade: Literal["cascaded", "parallel"] = "cascaded"
    norm_eps: Eps = 1e-6
    attn_drop: float = Field(0.0, ge=0.0, lt=1.0)
    drop: float = Field(0.0, ge=0.0, lt=1.0)
    drop_path: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> "EMOConfig":
        # bounded before any block config is made (a depth of 10^8 would otherwise exhaust memory right here)
        if sum(self.depths) > MAX_BLOCKS:
            raise ValueError(f"depths: {sum(self.depths):,} blocks in all; at most {MAX_BLOCKS:,}")
        dims = [self.stem_dim, *self.embed_dims]
        for i in range(4):
            if self.attn_ss[i] and self.embed_dims[i] % self.dim_heads[i]:
                raise ValueError(f"dim_heads[{i}]={self.dim_heads[i]} must divide embed_dims[{i}]={self.embed_dims[i]}")
            for first, dim_in in ((True, dims[i]), (False, self.embed_dims[i])):  # the first block doubles λ
                mid = int(dim_in * self.exp_ratios[i] * (2 if first else 1))
                if not 1 <= mid <= MAX_CHANNELS:
                    raise ValueError(f"exp_ratios[{i}]={self.exp_ratios[i]} gives a stage-{i + 1} block "
                                     f"{mid:,} expanded channels ({dim_in} in); it must be from 1 to {MAX_CHANNELS:,}")
        # the stem's block and every non-first block of a stage run their depth-wise conv at stride 1
        for i, k in enumerate(self.dw_kss):
            if (i == 0 or (self.depths[i] > 1 and self.dw_conv)) and not keeps_size(k):
                raise ValueError(even_kernel_message(f"dw_kss[{i}]", k))
        validate_blocks(self.block_configs)
        return self

    def block_configs(self) -> list[list[M2BlockConfig]]:
        """The M² block of every stage (0 = stem block), exactly as the official constructor wires them."""
        rates = torch.linspace(0, self.drop_path, sum(self.depths), device="cpu").tolist()
        stem = M2BlockConfig(
            dim_in=self.stem_dim,
            dim_out=self.stem_dim,
            norm="none",
            skip=False,
            exp_ratio=1.0,
            expand=False,
            act=self.act_layers[0],
            dw_kernel=self.dw_kss[0],
            se_ratio=1.0,
            norm_eps=self.norm_eps,
            drop=self.drop,
        )
        stages: list[list[M2BlockConfig]] = [[stem]]
        dim_in, k = self.stem_dim, 0
        for i in range(4):
            blocks = []
            for j in range(self.depths[i]):
                first = j == 0
                attention = None
                if self.attn_ss[i] and not first:
                    attention = AttentionConfig(
                        window="global" if self.window_sizes[i] <= 0 else self.window,
                        window_size=max(self.window_sizes[i], 1),
                        dim_head=self.dim_heads[i],
                        attn_pre=self.attn_pre,
                        qk_bias=self.qkv_bias,
                        attn_drop=self.attn_drop,
                    )
                blocks.append(
                    M2BlockConfig(
                        dim_in=dim_in,
                        dim_out=self.embed_dims[i],
                        # The first block of a stage doubles the expansion (official code, not the paper).
                        exp_ratio=self.exp_ratios[i] * (2 if first else 1),
                        stride=2 if first else 1,
                        norm=self.norm_layers[i],
                        norm_eps=self.norm_eps,
                        act=self.act_layers[i],
                        expand_bias=self.qkv_bias,
                        v_group=self.v_group and attention is not None,
                        attention=attention,
                        dw_kernel=self.dw_kss[i] if (first or self.dw_conv) else None,
                        se_ratio=self.se_ratios[i],
                        skip=not first,
                        cascade=self.cascade if attention is not None and self.dw_conv else "cascaded",
                        drop=self.drop,
                        drop_path=rates[k],
                    )
                )
                dim_in, k = self.embed_dims[i], k + 1
            stages.append(blocks)
        return stages


class MSPatchEmb(nn.Module):
    """The official stem convolution: Conv(k, stride 2, bias) → BN, no activation (keys ``convs.0.{0,1}``)."""

    def __init__(self, dim_in: int, dim_out: int, kernel_size: int, stride: int, norm_eps: float) -> None:
        super().__init__()
        padding = same_padding(kernel_size, stride)
        self.convs = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(dim_in, dim_out, kernel_size, stride, padding, bias=True),
                    nn.BatchNorm2d(dim_out, eps=norm_eps),
                )
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs[0](x)


class EMO(nn.Module):
    """EMO classifier (timm-style interface). ``forward`` returns logits; ``forward_stages`` every stage map."""

    #: output stride of stage0 … stage4
    reductions = (2, 4, 8, 16, 32)

    def __init__(self, cfg: EMOConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.in_chans = cfg.in_chans
        configs = cfg.block_configs()
        self.stage0 = nn.Sequential(
            MSPatchEmb(cfg.in_chans, cfg.stem_dim, cfg.dw_kss[0], 2, cfg.norm_eps), M2Block(configs[0][0])
        )
        for i in range(1, 5):
            setattr(self, f"stage{i}", nn.Sequential(*[M2Block(c) for c in configs[i]]))
        self.num_features = cfg.embed_dims[-1]
        self.norm = LayerNorm2d(self.num_features, eps=cfg.norm_eps)
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.feature_info = [
            {"module": f"stage{i}", "num_chs": c, "reduction": r}
            for i, (c, r) in enumerate(zip([cfg.stem_dim, *cfg.embed_dims], self.reductions))
        ]
        self._init_weights()

    def _init_weights(self) -> None:
        # Official init: trunc_normal(.02) for Linear, 1/0 for norms; convs keep PyTorch's default.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def stages(self) -> list[nn.Module]:
        return [getattr(self, f"stage{i}") for i in range(5)]

    def backbone_stages(self) -> list[tuple[nn.Module, int]]:
        """(stage, output channels) for a down-stream backbone (:class:`emobench.nn.dense.Backbone`)."""
        return [(stage, info["num_chs"]) for stage, info in zip(self.stages, self.feature_info)]

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of stage0 … stage4 (strides 2, 4, 8, 16, 32), NCHW."""
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map (stride 32), before the final norm."""
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(x).mean((2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


class EMOFeatures(nn.Module):
    """Dense-prediction wrapper: returns the stride 4/8/16/32 maps (stage1 … stage4) of an EMO."""

    def __init__(self, model: nn.Module, out_indices: tuple[int, ...] = (1, 2, 3, 4)) -> None:
        super().__init__()
        self.model = model
        self.out_indices = out_indices
        self.feature_info = [model.feature_info[i] for i in out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = self.model.forward_stages(x)
        return [outs[i] for i in self.out_indices]


def check_image_input(x, channels: int, min_side: int) -> None:
    """Raise :class:`InputSizeError` for a tensor (or shape) a network of this stride cannot take."""
    shape = tuple(x.shape) if hasattr(x, "shape") else tuple(x)
    if len(shape) != 4 or shape[1] != channels:
        raise InputSizeError(f"expected an input of shape (B, {channels}, H, W), got {shape}")
    if min(shape[-2:]) < min_side:
        raise InputSizeError(f"input {shape[-2]}x{shape[-1]} is smaller than the network's stride {min_side}")
    if max(shape[-2:]) > MAX_INPUT_SIDE or math.prod(shape) > MAX_MAP_ELEMENTS:
        raise InputSizeError(f"input {'x'.join(map(str, shape))} is too large: sides up to {MAX_INPUT_SIDE:,} and "
                             f"at most 2^56 elements (the layers' maps would overflow their element counts)")


def emo_layout(cfg: EMOConfig) -> list[ConvOp | BlockOp]:
    """The stem conv, the stem's block, then every stage's blocks, under the model's module names."""
    configs = cfg.block_configs()
    ops: list[ConvOp | BlockOp] = [ConvOp("stage0.0", "stage0", cfg.dw_kss[0], 2), BlockOp("stage0.1", "stage0", configs[0][0])]
    for i, stage in enumerate(configs[1:], start=1):
        ops += [BlockOp(f"stage{i}.{j}", f"stage{i}", c) for j, c in enumerate(stage)]
    return ops


@register_family("emo", EMOConfig, "EMO classifier: a stem and four stages of iRMBs",
                 check_input=lambda cfg, shape: check_image_input(shape, cfg.in_chans, 32), layout=emo_layout,
                 stages=lambda net: net.backbone_stages(), forms=ALL_FORMS)
def build_emo(cfg: EMOConfig) -> EMO:
    return EMO(cfg)
