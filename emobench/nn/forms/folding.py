"""Folding a trained network's eval-mode affine maps into the convolutions and projections beside them.

The one implementation every inference formulation (:mod:`.fused`, :mod:`.mobile`, :mod:`.cpu`) and every
family's fused form uses: a BatchNorm after a conv folds into that conv, an affine map in front of a 1×1 conv
(a BatchNorm pre-norm, a LayerNorm's affine part) folds into it, and a final LayerNorm's affine part folds into
the classifier. Each fold is exact to float32 round-off; the results are frozen, for inference only.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from emobench.nn.layers import LayerNorm2d, SqueezeExcite

#: a per-channel affine map y = x·scale + shift
Affine = tuple[torch.Tensor, torch.Tensor]


def frozen(t: torch.Tensor | None) -> nn.Parameter | None:
    """A derived tensor as a parameter that no optimiser or autograd touches (and that ``.to()`` moves)."""
    return None if t is None else nn.Parameter(t.detach().clone(), requires_grad=False)


def bn_affine(bn: nn.BatchNorm2d) -> Affine:
    """Eval-mode BatchNorm as y = x·scale + shift."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def pre_norm_affine(norm: nn.Module) -> Affine | None:
    """A block's pre-norm as an affine map: an eval-mode BatchNorm whole, a LayerNorm its affine part (its
    normalisation stays); None for no norm."""
    if isinstance(norm, nn.BatchNorm2d):
        return bn_affine(norm)
    if isinstance(norm, LayerNorm2d):
        return norm.norm.weight, norm.norm.bias
    return None


def fold_affine(weight: torch.Tensor, bias: torch.Tensor | None, groups: int = 1, pre: Affine | None = None,
                post: Affine | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a conv (or an (out, in) linear) with ``pre``, an affine map on its input, folded in
    front (1×1 only: W·(x·s + t) + b = (W·s)·x + (W·t + b), group by group) and ``post``, one on its output
    (a BatchNorm), folded behind."""
    w = weight
    b = bias if bias is not None else w.new_zeros(w.shape[0])
    if pre is not None:
        s, t = pre
        out_g, in_g = w.shape[0] // groups, w.shape[1]
        wg = w.reshape(groups, out_g, in_g)
        b = b + torch.bmm(wg, t.reshape(groups, in_g, 1)).flatten()
        w = (wg * s.reshape(groups, 1, in_g)).reshape(w.shape)
    if post is not None:
        s, t = post
        w, b = w * s.reshape(-1, *[1] * (w.ndim - 1)), b * s + t
    return w, b


def fold_conv(conv: nn.Conv2d, norm: nn.Module | None = None, pre: Affine | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``conv`` with the BatchNorm ``norm`` after it (any other norm is none) and ``pre`` in
    front folded in (see :func:`fold_affine`)."""
    post = bn_affine(norm) if isinstance(norm, nn.BatchNorm2d) else None
    return fold_affine(conv.weight, conv.bias, conv.groups, pre, post)


def conv_of(module: nn.Module, pre: Affine | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a ConvNormAct with its BatchNorm, and ``pre`` in front, folded in."""
    return fold_conv(module.conv, module.norm, pre)


def dense_weight(weight: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """A (grouped) 1×1 conv weight as a dense (out, in) matrix: a grouped one becomes block-diagonal."""
    w = weight.flatten(1)
    if groups == 1:
        return w
    out_g, in_g = w.shape[0] // groups, w.shape[1]
    dense = w.new_zeros(w.shape[0], in_g * groups)
    for g in range(groups):
        dense[g * out_g : (g + 1) * out_g, g * in_g : (g + 1) * in_g] = w[g * out_g : (g + 1) * out_g]
    return dense


def linear_of(module: nn.Module, pre: Affine | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`conv_of` of a 1×1 ConvNormAct as a dense (out, in) matrix and its bias, for ``F.linear`` on tokens."""
    w, b = conv_of(module, pre)
    return dense_weight(w, module.conv.groups), b


def qk_of(block: nn.Module, pre: Affine | None = None) -> tuple[torch.Tensor, ...]:
    """(q_weight, q_bias, k_weight, k_bias) of an M² block's Q/K projection as 1×1 conv weights, ``pre`` folded
    in front and 1/√d into Q (an attention that takes them needs no scale)."""
    c, conv = block.cfg.dim_in, block.qk.conv
    b = conv.bias if conv.bias is not None else conv.weight.new_zeros(2 * c)
    wq, bq = fold_affine(conv.weight[:c], b[:c], pre=pre)
    wk, bk = fold_affine(conv.weight[c:], b[c:], pre=pre)
    scale = block.cfg.attention.dim_head**-0.5
    return wq * scale, bq * scale, wk, bk


def proj_of(block: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) of an M² block's MLP_s (1×1 conv weight), its BatchNorm folded; the bias None where the
    reference has none (no bias, no norm), so no zero bias is added."""
    w, b = conv_of(block.proj)
    return w, b if (block.proj.conv.bias is not None or block.cfg.proj_norm) else None


def fold_local(module: nn.Module, block: nn.Module, se_act: Callable | None, tokens: bool = False) -> None:
    """Give ``module`` the folded local operator of the M² block ``block``: ``dw_weight``, ``dw_bias``,
    ``dw_args`` (the depth-wise conv, BatchNorm folded; both None without one), and ``se`` (whether there is a
    squeeze-excite) with ``se_act`` and ``se_w1``/``se_b1``/``se_w2``/``se_b2``: 1×1 conv weights, or (out, in)
    matrices for ``tokens``."""
    module.dw_weight = module.dw_bias = None
    if block.cfg.dw_kernel is not None:
        conv = block.conv_local.conv
        w, b = conv_of(block.conv_local)
        module.dw_weight, module.dw_bias = frozen(w), frozen(b)
        module.dw_args = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
    # Only the block's own SqueezeExcite: its activation is the block's ``act``, and nn.Identity means none.
    module.se = isinstance(block.se, SqueezeExcite)
    if module.se:
        shape = (lambda w: w.flatten(1)) if tokens else (lambda w: w)
        module.se_act = se_act
        module.se_w1, module.se_b1 = frozen(shape(block.se.conv_reduce.weight)), frozen(block.se.conv_reduce.bias)
        module.se_w2, module.se_b2 = frozen(shape(block.se.conv_expand.weight)), frozen(block.se.conv_expand.bias)


def fold_norm_head(module: nn.Module, norm: LayerNorm2d, head: nn.Module) -> None:
    """Give ``module`` a network's final LayerNorm → average pool → classifier, folded: ``norm_eps``, the LN
    affine as ``norm_weight``/``norm_bias`` (for pre-logits and headless models) and, for a linear ``head``,
    ``head_weight``/``head_bias`` with that affine part folded in (it commutes with the average pool)."""
    ln = norm.norm
    module.norm_eps = ln.eps
    module.norm_weight, module.norm_bias = frozen(ln.weight), frozen(ln.bias)
    module.head_weight = module.head_bias = None
    if isinstance(head, nn.Linear):
        module.head_weight = frozen(head.weight * ln.weight)
        module.head_bias = frozen(head.bias + head.weight @ ln.bias)


def classify(module: nn.Module, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
    """The end of a :func:`fold_norm_head` head on pooled, normalised (affine-free) features ``x``."""
    if pre_logits or module.head_weight is None:
        return x * module.norm_weight + module.norm_bias
    return F.linear(x, module.head_weight, module.head_bias)


def fold_stem_and_head(module: nn.Module, model: nn.Module) -> None:
    """Give an inference form of an :class:`~emobench.nn.emo.EMO` its stem conv, BatchNorm folded
    (``stem_weight``, ``stem_bias``, ``stem_args``), and its folded norm head (:func:`fold_norm_head`)."""
    conv, bn = model.stage0[0].convs[0]
    w, b = fold_conv(conv, bn)
    module.stem_weight, module.stem_bias = frozen(w), frozen(b)
    module.stem_args = dict(stride=conv.stride, padding=conv.padding)
    fold_norm_head(module, model.norm, model.head)
