"""The fast inference form of M² blocks and EMO: channels-last tokens, eval-mode norms folded away.

``fuse(model)`` derives it from a trained model in eval mode; it computes the same function (to float32
round-off) with fewer, cheaper kernels:
- every 1×1 conv is a matrix product on NHWC tokens (``F.linear``), not an NCHW oneDNN convolution;
- BatchNorm after a conv is folded into that conv; a pre-norm in front of MLP_e is folded into MLP_e (LayerNorm
  keeps its normalisation and gives up only its affine part);
- window attention runs through ``F.scaled_dot_product_attention``;
- the depth-wise conv runs on a channels-last view of the same memory, so no layout copies are made.
- under inference every activation overwrites the fresh linear/conv output it reads: a new multi-MB map per
  activation costs as much in page faults on first touch as the activation itself.
Its parameters are derived, so it is for inference only; train and load checkpoints on the reference model.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from emobench.nn.emo import EMO
from emobench.nn.forms.folding import classify, fold_local, fold_norm_head, fold_stem_and_head, frozen, linear_of, pre_norm_affine, proj_of
from emobench.nn.layers import LayerNorm2d, in_place_act_fn
from emobench.nn.m2 import M2Block, window_attention


def token_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` on NHWC tokens through a (B, H·W, C) view: free in eager, and converters that lower a rank-4
    linear to a rank-4 batch matmul (LiteRT) get the rank-3 form they support."""
    if x.ndim != 4:
        return F.linear(x, weight, bias)
    b, h, w, c = x.shape
    return F.linear(x.reshape(b, h * w, c), weight, bias).reshape(b, h, w, weight.shape[0])


class FusedM2Block(nn.Module):
    """An eval-mode :class:`M2Block` on NHWC tensors (B, H, W, C)."""

    def __init__(self, block: M2Block) -> None:
        super().__init__()
        cfg = self.cfg = block.cfg
        self.act = in_place_act_fn(cfg.act)  # every activation here reads a fresh linear/conv output
        self.dw_act = in_place_act_fn(cfg.dw_act)
        self.num_heads = cfg.num_heads
        fold_norm = cfg.expand and cfg.attention is None
        # Pre-norm: "ln" keeps its normalisation; its affine part, or a BatchNorm, is folded into MLP_e when
        # MLP_e directly follows, and otherwise applied as a per-channel affine map.
        self.ln_eps = block.norm.norm.eps if isinstance(block.norm, LayerNorm2d) else None
        pre = pre_norm_affine(block.norm)
        self.norm_scale = self.norm_shift = None
        if pre is not None and not fold_norm:
            self.norm_scale, self.norm_shift = frozen(pre[0]), frozen(pre[1])
        if cfg.attention is not None:
            w, b = linear_of(block.qk)  # unscaled: window_attention applies 1/√d
            self.qk_weight, self.qk_bias = frozen(w), frozen(b if block.qk.conv.bias is not None else None)
            if cfg.attention.sr_ratio > 1:
                self.sr_weight, self.sr_bias = frozen(block.sr.weight), frozen(block.sr.bias)
                self.sr_args = dict(stride=block.sr.stride)
                self.sr_norm_weight, self.sr_norm_bias = frozen(block.sr_norm.weight), frozen(block.sr_norm.bias)
                self.sr_eps = block.sr_norm.eps
        self.v_weight = self.v_bias = None
        if cfg.expand:
            w, b = linear_of(block.v, pre if fold_norm else None)
            self.v_weight, self.v_bias = frozen(w), frozen(b)
        fold_local(self, block, in_place_act_fn(cfg.act), tokens=True)
        w, b = proj_of(block)
        self.proj_weight, self.proj_bias = frozen(w.flatten(1)), frozen(b)

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        r = F.conv2d(x.permute(0, 3, 1, 2), self.sr_weight, self.sr_bias, **self.sr_args)
        return F.layer_norm(r.flatten(2).transpose(1, 2), r.shape[1:2], self.sr_norm_weight, self.sr_norm_bias, self.sr_eps)

    def _expand(self, x: torch.Tensor) -> torch.Tensor:
        x = token_linear(x, self.v_weight, self.v_bias)
        return self.act(x) if self.act is not None else x

    def _local(self, x: torch.Tensor) -> torch.Tensor:
        if self.dw_weight is not None:
            # A channels-last NCHW view of the NHWC memory: oneDNN runs the depth-wise conv without copies.
            x = F.conv2d(x.permute(0, 3, 1, 2), self.dw_weight, self.dw_bias, **self.dw_args).permute(0, 2, 3, 1)
            if self.dw_act is not None:
                x = self.dw_act(x)
        if self.se:
            s = x.mean((1, 2), keepdim=True)
            s = token_linear(s, self.se_w1, self.se_b1)
            s = self.se_act(s) if self.se_act is not None else s
            x = x * token_linear(s, self.se_w2, self.se_b2).sigmoid()
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        shortcut = x
        if self.ln_eps is not None:
            x = F.layer_norm(x, x.shape[-1:], None, None, self.ln_eps)
        if self.norm_scale is not None:
            x = x * self.norm_scale + self.norm_shift
        expand = self._expand if cfg.expand else None
        if cfg.cascade == "parallel":
            e = expand(x) if expand else x
            x = window_attention(x, cfg.attention, self.num_heads, self.qk_weight, self.qk_bias, expand, values=e, sdpa=True)
            x = x + self._local(e)
        else:
            if cfg.attention is not None:
                reduce = self._reduce if cfg.attention.sr_ratio > 1 else None
                x = window_attention(x, cfg.attention, self.num_heads, self.qk_weight, self.qk_bias, expand, sdpa=True, reduce=reduce)
            elif expand is not None:
                x = expand(x)
            local_skip = cfg.has_skip and cfg.local_skip and cfg.dw_kernel is not None
            x = x + self._local(x) if local_skip else self._local(x)
        x = token_linear(x, self.proj_weight, self.proj_bias)
        return shortcut + x if cfg.has_skip else x


def staged_blocks(stages, convert) -> tuple[nn.Sequential, list[int]]:
    """Every M² block of ``stages`` converted by ``convert``, in one sequence, and where each stage ends (an
    inference form's ``forward_stages`` reads the maps there)."""
    blocks, ends = nn.Sequential(), []
    for stage in stages:
        blocks.extend(convert(b) for b in stage if isinstance(b, M2Block))
        ends.append(len(blocks))
    return blocks, ends


def stage_outputs(blocks: nn.Sequential, ends: list[int], x: torch.Tensor, out=lambda t: t) -> list[torch.Tensor]:
    """``x`` through ``blocks``, keeping ``out(map)`` at every stage end."""
    outs, start = [], 0
    for end in ends:
        x = blocks[start:end](x)
        outs.append(out(x))
        start = end
    return outs


class FusedPooledNormHead(nn.Module):
    """The fused head of a network ending in LayerNorm → average pool → classifier (EMO, ViT, PVT): the
    LayerNorm's affine part folded into the classifier (:func:`.folding.fold_norm_head`)."""

    def fold_head(self, model: nn.Module) -> None:
        fold_norm_head(self, model.norm, model.head)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], None, None, self.norm_eps).mean((1, 2))
        return classify(self, x, pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class FusedEMO(FusedPooledNormHead):
    """An eval-mode :class:`EMO` running channels-last; same outputs, about twice as fast on CPU."""

    def __init__(self, model: EMO) -> None:
        super().__init__()
        self.cfg = model.cfg
        self.in_chans, self.num_classes, self.num_features = model.in_chans, model.num_classes, model.num_features
        self.feature_info = model.feature_info
        fold_stem_and_head(self, model)
        self.blocks, self.stage_ends = staged_blocks(model.stages, FusedM2Block)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, self.stem_weight, self.stem_bias, **self.stem_args).permute(0, 2, 3, 1)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of stage0 … stage4 as NCHW views of channels-last memory."""
        return stage_outputs(self.blocks, self.stage_ends, self.forward_stem(x), lambda t: t.permute(0, 3, 1, 2))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stem(x)
        for block in self.blocks:
            x = block(x)
        return x.permute(0, 3, 1, 2)


class FusedBlock(nn.Module):
    """A standalone fused M² block with the NCHW interface of the reference block."""

    def __init__(self, block: M2Block) -> None:
        super().__init__()
        self.block = FusedM2Block(block)
        self.cfg = block.cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@torch.no_grad()
def fuse(model: nn.Module) -> nn.Module:
    """The fast inference form of a zoo network or an M² block (see the module docstring). ``model`` is unchanged.
    Other families (MobileNetV2, ViT, PVT) build theirs in ``fused_form()``, from the same fused blocks."""
    model = copy.deepcopy(model).eval()
    if isinstance(model, EMO):
        return FusedEMO(model).eval()
    if isinstance(model, M2Block):
        return FusedBlock(model).eval()
    if callable(getattr(model, "fused_form", None)):
        return model.fused_form().eval()
    from emobench.errors import EmobenchError

    raise EmobenchError(f"{type(model).__name__} has no fused form (zoo networks and single M² blocks have one)")


def has_fused_form(model: nn.Module) -> bool:
    return fused_unsupported(model) is None


def fused_unsupported(model: nn.Module) -> str | None:
    if callable(getattr(model, "form_unsupported", None)):  # a down-stream model (its fused_form): its backbone decides
        return model.form_unsupported()
    if isinstance(model, (EMO, M2Block)) or callable(getattr(model, "fused_form", None)):
        return None
    return f"{type(model).__name__} has no fused form"
