"""The Meta Mobile (M²) block of EMO (Zhang et al., ICCV 2023) and its instantiations.

One block: pre-norm → expansion MLP_e (ratio λ) → efficient operator F → shrink MLP_s → residual.
IRB, MHSA, FFN and iRMB are configurations of :class:`M2Block`; with EMO's settings it is the official
``iRMB`` (``zhangzjn/EMO`` ``model/emo.py``) parameter for parameter, under the same state-dict keys.

F is an optional window attention (``attention``) cascaded with an optional depth-wise conv (``dw_kernel``).
With ``attn_pre`` the attention mixes the un-expanded normalised input and MLP_e runs after it (what every
released EMO uses); otherwise MLP_e runs first and attention mixes the expanded values (the paper's order).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from emobench.nn.layers import (MAX_CHANNELS, MAX_DILATION, MAX_KERNEL, MAX_MAP_ELEMENTS, MAX_WINDOW, ActName, ConvNormAct,
                                DropPath, NormName, SqueezeExcite, even_kernel_message, keeps_size, make_norm)
from emobench.nn.registry import BlockOp, register_family

WindowMode = Literal["grid", "contiguous", "shifted", "global"]


class AttentionConfig(BaseModel):
    """Window multi-head self-attention (EW-MHSA). Q and K come from the un-expanded normalised input."""

    model_config = ConfigDict(extra="forbid")

    window: WindowMode = Field(
        "grid",
        description="grid: the official dilated partition; contiguous: local windows; shifted: local windows after "
        "a cyclic shift by half a window (Swin's SW-MSA, no mask); global",
    )
    window_size: int = Field(7, ge=1, le=MAX_WINDOW, description="window side in tokens (ignored for global)")
    dim_head: int = Field(64, ge=1, le=MAX_CHANNELS, description="channels per head of Q/K; heads = dim_in // dim_head")
    attn_pre: bool = Field(True, description="attend over the un-expanded input, then expand (official default)")
    qk_bias: bool = True
    attn_drop: float = Field(0.0, ge=0.0, lt=1.0)
    sr_ratio: int = Field(
        1, ge=1, le=MAX_KERNEL, description="spatial reduction (PVT's SRA): K/V from a stride-r conv + LayerNorm of the input; global windows only"
    )

    @model_validator(mode="after")
    def _check_sr(self) -> "AttentionConfig":
        if self.sr_ratio > 1 and self.window != "global":
            raise ValueError("sr_ratio > 1 (spatial-reduction attention) needs window = 'global'")
        return self


class M2BlockConfig(BaseModel):
    """Every switch of the M² block. Defaults are the official iRMB constructor's where it has one."""

    model_config = ConfigDict(extra="forbid")

    dim_in: int = Field(ge=1, le=MAX_CHANNELS)
    dim_out: int = Field(ge=1, le=MAX_CHANNELS)
    exp_ratio: float = Field(1.0, gt=0.0, le=MAX_CHANNELS, allow_inf_nan=False, description="λ: dim_mid = int(dim_in * exp_ratio)")
    stride: int = Field(1, ge=1, le=2)
    norm: NormName = Field("bn", description="pre-norm on the block input")
    norm_eps: float = Field(1e-6, gt=0.0, allow_inf_nan=False)
    act: ActName = Field("relu", description="activation after MLP_e (and inside SE)")
    expand: bool = Field(True, description="MLP_e present (the official v_proj)")
    expand_bias: bool = Field(True, description="bias of MLP_e (the official qkv_bias; Q/K take attention.qk_bias)")
    expand_norm: bool = Field(False, description="BatchNorm after MLP_e (MobileNetV2 style)")
    v_group: bool = Field(False, description="MLP_e grouped per attention head")
    attention: AttentionConfig | None = Field(None, description="window attention; false switches it off")
    dw_kernel: int | None = Field(3, ge=1, le=MAX_KERNEL, description="depth-wise conv kernel; 0 switches the conv off")
    dw_dilation: int = Field(1, ge=1, le=MAX_DILATION)
    dw_act: ActName = Field("silu", description="activation after the depth-wise conv's BatchNorm")
    local_skip: bool = Field(True, description="x + DW(x) inside F when the block has a residual")
    se_ratio: float = Field(0.0, ge=0.0, le=MAX_CHANNELS, allow_inf_nan=False)
    proj_bias: bool = False
    proj_norm: bool = Field(False, description="BatchNorm after MLP_s (MobileNetV2 style)")
    skip: bool = Field(True, description="block residual, used when stride 1 and dim_in == dim_out")
    cascade: Literal["cascaded", "parallel"] = Field(
        "cascaded", description="parallel: attention and DW-conv both read the expanded input and are summed"
    )
    drop: float = Field(0.0, ge=0.0, lt=1.0)
    drop_path: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("attention", mode="before")
    @classmethod
    def _attention_off(cls, value: object) -> object:
        # TOML has no null: `attention = false` switches attention off.
        return None if value is False else value

    @field_validator("dw_kernel", mode="before")
    @classmethod
    def _dw_off(cls, value: object) -> object:
        return None if value == 0 else value

    @property
    def dim_mid(self) -> int:
        return int(self.dim_in * self.exp_ratio) if self.expand else self.dim_in

    @property
    def num_heads(self) -> int:
        return self.dim_in // self.attention.dim_head if self.attention else 0

    @property
    def has_skip(self) -> bool:
        return self.skip and self.stride == 1 and self.dim_in == self.dim_out

    @model_validator(mode="after")
    def _check(self) -> "M2BlockConfig":
        if self.expand and not 1 <= self.dim_mid <= MAX_CHANNELS:
            raise ValueError(f"exp_ratio={self.exp_ratio}: dim_mid = int(dim_in * exp_ratio) = {self.dim_mid} channels; "
                             f"it must be from 1 to {MAX_CHANNELS:,}")
        if self.se_ratio > 0 and not 1 <= round(self.dim_mid * self.se_ratio) <= MAX_CHANNELS:
            raise ValueError(f"se_ratio={self.se_ratio}: the squeeze has round(dim_mid * se_ratio) = "
                             f"{round(self.dim_mid * self.se_ratio)} channels; it must be from 1 to {MAX_CHANNELS:,}")
        if self.dw_kernel is not None and self.stride == 1 and not keeps_size(self.dw_kernel, self.dw_dilation):
            raise ValueError(even_kernel_message("dw_kernel", self.dw_kernel, self.dw_dilation))
        if self.attention is not None:
            if self.dim_in % self.attention.dim_head:
                raise ValueError(
                    f"attention.dim_head={self.attention.dim_head} must divide dim_in={self.dim_in}"
                )
            if self.expand_norm:
                raise ValueError("expand_norm (BatchNorm after MLP_e) is not combined with attention")
            if not self.attention.attn_pre and self.dim_mid % self.num_heads:
                raise ValueError(
                    f"attn_pre=false splits dim_mid={self.dim_mid} into {self.num_heads} heads: it must divide"
                )
            if self.v_group and self.dim_mid % self.num_heads:
                raise ValueError("v_group needs dim_mid divisible by the number of heads")
        if self.v_group and self.attention is None:
            raise ValueError("v_group groups MLP_e per attention head: it needs attention")
        if self.cascade == "parallel":
            if self.attention is not None and self.attention.sr_ratio > 1:
                raise ValueError("cascade='parallel' does not combine with spatial-reduction attention")
            if self.attention is None or self.dw_kernel is None:
                raise ValueError("cascade='parallel' needs both attention and dw_kernel")
            if self.attention.attn_pre:
                raise ValueError("cascade='parallel' shares one expansion: set attention.attn_pre=false")
        if self.stride != 1 and self.dw_kernel is None:
            raise ValueError("a stride-2 block downsamples in its depth-wise conv: dw_kernel is required")
        if not self.expand and self.expand_norm:
            raise ValueError("expand_norm needs expand")
        return self


def window_grid(height: int, width: int, attention: AttentionConfig) -> tuple[int, int, int, int]:
    """(window_h, window_w, pad_bottom, pad_right) for a map; padding is right/bottom only, never masked."""
    if attention.window == "global":
        return height, width, 0, 0
    ws = attention.window_size
    return ws, ws, (ws - height % ws) % ws, (ws - width % ws) % ws


def partition(x: torch.Tensor, wh: int, ww: int, mode: WindowMode) -> torch.Tensor:
    """NHWC (B, Hp, Wp, C) → windows (B·nh·nw, wh·ww, C); at most 6-D on the way.

    ``grid`` is the official einops pattern ``b c (h1 n1) (w1 n2)``: window (i, j) holds rows i, i+nh, …,
    a dilated grid over the whole map. ``contiguous`` (and ``shifted``, after its roll) holds rows
    i·wh … i·wh+wh-1 (Swin-style local windows).
    """
    b, hp, wp, c = x.shape
    nh, nw = hp // wh, wp // ww
    if nh == 1 and nw == 1:
        return x.reshape(b, wh * ww, c)
    if mode == "grid":
        x = x.reshape(b, wh, nh, ww, nw, c).permute(0, 2, 4, 1, 3, 5)
    else:
        x = x.reshape(b, nh, wh, nw, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b * nh * nw, wh * ww, c)


def unpartition(x: torch.Tensor, batch: int, hp: int, wp: int, wh: int, ww: int, mode: WindowMode) -> torch.Tensor:
    """Inverse of :func:`partition`: (B·nh·nw, wh·ww, C) → (B, Hp, Wp, C)."""
    nh, nw, c = hp // wh, wp // ww, x.shape[-1]
    if nh == 1 and nw == 1:
        return x.reshape(batch, hp, wp, c)
    if mode == "grid":
        x = x.reshape(batch, nh, nw, wh, ww, c).permute(0, 3, 1, 4, 2, 5)
    else:
        x = x.reshape(batch, nh, nw, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, hp, wp, c)


def pointwise(module: "ConvNormAct", tokens: torch.Tensor) -> torch.Tensor:
    """A 1×1 ConvNormAct (no norm) applied to channels-last tokens as a matrix product on its own weight."""
    conv = module.conv
    weight = conv.weight.flatten(1)
    if conv.groups == 1:
        out = F.linear(tokens, weight, conv.bias)
    else:
        g, lead = conv.groups, tokens.shape[:-1]
        t = tokens.reshape(-1, g, tokens.shape[-1] // g).transpose(0, 1)
        w = weight.reshape(g, -1, weight.shape[1]).transpose(1, 2)
        out = (t @ w).transpose(0, 1).reshape(*lead, weight.shape[0])
        if conv.bias is not None:
            out = out + conv.bias
    return module.act(out)


def window_attention(
    x: torch.Tensor,
    attention: AttentionConfig,
    num_heads: int,
    qk_weight: torch.Tensor,
    qk_bias: torch.Tensor | None,
    expand: Callable[[torch.Tensor], torch.Tensor] | None,
    values: torch.Tensor | None = None,
    sdpa: bool = False,
    attn_drop: float = 0.0,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """EW-MHSA on an NHWC map ``x`` (the normalised block input); returns an NHWC map.

    Q and K are the projection (``qk_weight``, ``qk_bias``: first all Q heads, then all K heads) of the
    (zero-padded, partitioned) tokens of ``x``; with ``reduce`` (spatial-reduction attention, global window), K
    and the values come from the reduced tokens ``reduce(x)`` instead. The values are
    - ``attn_pre``: the tokens of ``x`` itself, and ``expand`` (MLP_e) runs after the attention;
    - otherwise ``expand`` of the padded tokens (the official post-attn), or a given ``values`` map
      (zero-padded; the parallel arrangement, whose DW-conv branch reads the same expanded map).
    ``sdpa`` computes the same function with ``F.scaled_dot_product_attention``.
    """
    b, h, w, c = x.shape
    wh, ww, pad_b, pad_r = window_grid(h, w, attention)
    if pad_b or pad_r:
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        if values is not None:
            values = F.pad(values, (0, 0, 0, pad_r, 0, pad_b))
    hp, wp = h + pad_b, w + pad_r
    shift = (wh // 2, ww // 2) if attention.window == "shifted" else None
    if shift:
        x = torch.roll(x, (-shift[0], -shift[1]), dims=(1, 2))
        if values is not None:
            values = torch.roll(values, (-shift[0], -shift[1]), dims=(1, 2))
    tokens = partition(x, wh, ww, attention.window)  # (G, N, C)
    g, n, _ = tokens.shape
    d = attention.dim_head
    kv_tokens = tokens
    if reduce is not None:
        kv_tokens = reduce(x)  # (B, N_r, C)
        q = F.linear(tokens, qk_weight[:c], None if qk_bias is None else qk_bias[:c])
        k = F.linear(kv_tokens, qk_weight[c:], None if qk_bias is None else qk_bias[c:])
        q = q.reshape(g, n, num_heads, d).transpose(1, 2)
        k = k.reshape(g, kv_tokens.shape[1], num_heads, d).transpose(1, 2)
    else:
        q, k = F.linear(tokens, qk_weight, qk_bias).reshape(g, n, 2, num_heads, d).permute(2, 0, 3, 1, 4).unbind(0)
    pre = attention.attn_pre and values is None
    if values is not None:
        v = partition(values, wh, ww, attention.window)
    elif pre or expand is None:
        v = kv_tokens
    else:
        v = expand(kv_tokens)
    width = v.shape[-1]
    v = v.reshape(g, v.shape[1], num_heads, width // num_heads).transpose(1, 2)
    if sdpa:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=attn_drop, scale=d**-0.5)
    else:
        attn = ((q @ k.transpose(-2, -1)) * d**-0.5).softmax(dim=-1)
        out = F.dropout(attn, attn_drop) @ v
    out = out.transpose(1, 2).reshape(g, n, width)
    if pre and expand is not None:
        out = expand(out)
    out = unpartition(out, b, hp, wp, wh, ww, attention.window)
    if shift:
        out = torch.roll(out, shift, dims=(1, 2))
    return out[:, :h, :w] if pad_b or pad_r else out


class M2Block(nn.Module):
    """The Meta Mobile block; with EMO's settings, the official ``iRMB`` (same parameters and keys).

    This is the reference formulation (NCHW convolutions, explicit attention matmuls, as the official code
    and the fvcore counts of the paper); :func:`emobench.nn.forms.fused.fuse` derives the fast inference form.
    """

    #: compute the window attention with ``F.scaled_dot_product_attention`` (same function, fused kernel)
    sdpa: bool = False

    def __init__(self, cfg: M2BlockConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim_mid = cfg.dim_mid
        self.norm = make_norm(cfg.norm, cfg.dim_in, cfg.norm_eps)
        if cfg.attention is not None:
            self.num_heads = cfg.num_heads
            self.qk = ConvNormAct(cfg.dim_in, 2 * cfg.dim_in, bias=cfg.attention.qk_bias)
            sr = cfg.attention.sr_ratio
            if sr > 1:
                self.sr = nn.Conv2d(cfg.dim_in, cfg.dim_in, sr, sr)
                self.sr_norm = nn.LayerNorm(cfg.dim_in, eps=cfg.norm_eps)
        if cfg.expand:
            self.v = ConvNormAct(
                cfg.dim_in,
                dim_mid,
                groups=cfg.num_heads if cfg.v_group else 1,
                bias=cfg.expand_bias,
                norm="bn" if cfg.expand_norm else "none",
                act=cfg.act,
                norm_eps=cfg.norm_eps,
            )
        if cfg.dw_kernel is not None:
            self.conv_local = ConvNormAct(
                dim_mid,
                dim_mid,
                cfg.dw_kernel,
                stride=cfg.stride,
                dilation=cfg.dw_dilation,
                groups=dim_mid,
                norm="bn",
                act=cfg.dw_act,
                norm_eps=cfg.norm_eps,
            )
        self.se = SqueezeExcite(dim_mid, cfg.se_ratio, cfg.act) if cfg.se_ratio > 0 else nn.Identity()
        self.proj_drop = nn.Dropout(cfg.drop)
        self.proj = ConvNormAct(
            dim_mid, cfg.dim_out, bias=cfg.proj_bias, norm="bn" if cfg.proj_norm else "none", norm_eps=cfg.norm_eps
        )
        self.drop_path = DropPath(cfg.drop_path)

    def _expand_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return pointwise(self.v, tokens)

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        """PVT's spatial reduction of an NHWC map: stride-r conv, then LayerNorm, as (B, N_r, C) tokens."""
        r = self.sr(x.permute(0, 3, 1, 2))
        return self.sr_norm(r.flatten(2).transpose(1, 2))

    def _attend(self, x: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        out = window_attention(
            x.permute(0, 2, 3, 1),
            cfg.attention,
            self.num_heads,
            self.qk.conv.weight.flatten(1),
            self.qk.conv.bias,
            self._expand_tokens if cfg.expand else None,
            values=None if values is None else values.permute(0, 2, 3, 1),
            sdpa=self.sdpa,
            attn_drop=cfg.attention.attn_drop if self.training else 0.0,
            reduce=self._reduce if cfg.attention.sr_ratio > 1 else None,
        )
        return out.permute(0, 3, 1, 2)

    def _local(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.conv_local(x) if self.cfg.dw_kernel is not None else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        shortcut = x
        x = self.norm(x)
        if cfg.cascade == "parallel":
            e = self.v(x) if cfg.expand else x
            x = self._attend(x, values=e) + self._local(e)
        else:
            if cfg.attention is not None:
                x = self._attend(x)
            elif cfg.expand:
                x = self.v(x)
            local_skip = cfg.has_skip and cfg.local_skip and cfg.dw_kernel is not None
            x = x + self._local(x) if local_skip else self._local(x)
        x = self.proj(self.proj_drop(x))
        return shortcut + self.drop_path(x) if cfg.has_skip else x


def _check_block_input(cfg: M2BlockConfig, shape: tuple[int, ...]) -> None:
    from emobench.errors import InputSizeError

    if len(shape) != 4 or shape[1] != cfg.dim_in:
        raise InputSizeError(f"expected an input of shape (B, {cfg.dim_in}, H, W), got {tuple(shape)}")
    if min(shape[-2:]) < max(cfg.stride, cfg.attention.sr_ratio if cfg.attention else 1):
        raise InputSizeError(f"input {shape[-2]}x{shape[-1]} is too small for this block")
    largest = block_elements(cfg, shape)
    if largest > MAX_MAP_ELEMENTS:
        raise InputSizeError(f"input {'x'.join(map(str, shape))} is too large for this block: its largest map or "
                             f"attention score tensor would hold {largest:.3g} elements (at most 2^56)")


def block_elements(cfg: M2BlockConfig, shape: tuple[int, ...]) -> int:
    """Elements of the widest map and of the attention scores of the block on an input of ``shape`` (B, C, H, W)
    (exact integers: an estimate that cannot overflow, whatever the size)."""
    b, _, h, w = (int(v) for v in shape)
    maps = b * max(2 * cfg.dim_in if cfg.attention else cfg.dim_in, cfg.dim_mid, cfg.dim_out) * h * w
    att = cfg.attention
    if att is None:
        return maps
    if att.window == "global":
        scores = b * cfg.num_heads * h * w * (h // att.sr_ratio) * (w // att.sr_ratio)
    else:
        ws = att.window_size
        scores = b * cfg.num_heads * -(-h // ws) * -(-w // ws) * ws**4
    return max(maps, scores)


@register_family("m2", M2BlockConfig, "one Meta Mobile block (IRB, MHSA, FFN, iRMB, ...)", check_input=_check_block_input,
                 layout=lambda cfg: [BlockOp(None, "block", cfg)], forms=("reference", "fused"))
def build_m2(cfg: M2BlockConfig) -> M2Block:
    return M2Block(cfg)


def set_sdpa(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every M² block of ``model`` between explicit attention matmuls and SDPA; returns ``model``."""
    for m in model.modules():
        if isinstance(m, M2Block):
            m.sdpa = enabled
    return model
