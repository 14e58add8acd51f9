"""The mobile inference form of EMO: one graph that the XNNPACK delegate (ExecuTorch, LiteRT) takes whole.

``mobilize(model)`` (ExecuTorch) and ``mobilize_litert(model)`` (LiteRT) derive it from a model in eval mode;
both compute the same function as the reference model (to float32 round-off). The fast eager form
(:mod:`.fused`) is tuned for oneDNN; mobile delegates want something else. A delegate runs a graph of the ops
it knows; every op it does not know splits the graph, and at each split the runtime converts layouts (XNNPACK
keeps NHWC inside, the graph is NCHW outside) and runs a slow portable kernel between two delegate calls. In
ExecuTorch 1.4 the official operator sequence splits into 41 delegate subgraphs (``layer_norm``, ``select``,
``expand`` fall back) and the fused one too (SDPA decomposes into ``any``/``eq``/``where``; ``mean`` over the
channel axis); this form is written only with ops the XNNPACK partitioner accepts, so it is one subgraph:

- NCHW throughout, every 1×1 projection an NCHW ``conv2d``: XNNPACK keeps chains of convolutions and
  element-wise ops in NHWC with no layout change between them (ExecuTorch's XNNPACK lowering must turn
  NHWC back to NCHW before every ``view``, so NHWC tokens with ``linear`` cost a transpose pair per layer);
- BatchNorm folded into the conv before it, and a BatchNorm pre-norm into the 1×1 conv after it;
- LayerNorm over channels (``LayerNorm2d``) with delegable ops: the channel mean and the variance are 1×1
  convs with a constant 1/C weight (the variance conv carries ε as its bias), then ``sub``/``mul``/``rsqrt``
  (``layer_norm`` is not delegated by ExecuTorch's XNNPACK partitioner, ``mean`` only over H, W of a 4-D map).
  Its affine part is folded into the projections that read the map (Q, K and MLP_e; into MLP_e through the
  attention too, whose rows sum to one) and, for the last norm, into the classifier (it commutes with the
  average pool). Where a map is zero-padded for its windows, padding comes after the affine part: those
  shapes apply it explicitly and use the unfolded weights (shapes are static at export, so only one path
  is traced);
- attention: Q and K from two separate convs (no ``select`` on a stacked tensor, which is not delegated),
  1/√d folded into Q; heads and windows folded into the batch dimension for rank-3 ``bmm`` (no broadcast,
  no ``expand``); K goes straight to (d, N) layout so it needs no transpose; one window (global, or as large
  as the map: stage 4 at 224²) needs no partition permute; every tensor stays ≤ 6-D;
- activations are the exact ones (GELU with erf, SiLU as x·sigmoid(x)), which both delegates run natively;
- the squeeze-excite pool is ``mean`` over (H, W) with ``keepdim`` (XNNPACK's global average pool).

Token variant (``mobilize_tokens``, for LiteRT): litert-torch converts the NCHW graph to NHWC itself and cancels a
``permute(0, 2, 3, 1)`` against its own layout transpose, which ExecuTorch does not. So there the attention
(and its LayerNorm, as ``mean`` over the last axis, a delegated TFLite MEAN) runs on channels-last tokens:
Q, K and MLP_e are FULLY_CONNECTED on tokens, and at batch 1 window partition and head split are one 6-D
transpose per operand; back to NCHW only for the depth-wise conv (a free permute again). That takes the
attention block from 9 transposes to 4. Measured and left out (LiteRT 2.3, emo_1m, 224²): computing the large
strided expansion blocks in row bands so SiLU's LOGISTIC and MUL passes stay in cache (1–3 %, within the noise
between rounds); the token LayerNorm's centring and variance as FULLY_CONNECTED (no gain); one QKV
FULLY_CONNECTED (SLICEs and a K transpose come back: 0.25 vs 0.22 ms per attention block); a 4×4 kernel instead
of PAD + 3×3 for stride-2 depth-wise convs (XNNPACK already fuses the PAD). Where LiteRT's time goes (4.4 ms):
stem 0.26, stage 0 0.35, stage 1 0.95, stage 2 0.4, stage 3 1.85 (0.22 ms per attention block, its 4
transposes ≈ 0.04), stage 4 0.6. Against ``official`` (one run, prefixes of the network exported and timed
interleaved): stem to stage 2 take 2.0 ms in both (those stages have no attention, every exact form runs the
same ops), stage 3 1.80 vs 2.40 ms, stage 4 and the head 0.72 vs 0.81. The convolution stages are bound by the
element-wise passes over the largest maps: in stage 1's first block the 1×1 expansion to 96×112² takes 0.17 ms
and its SiLU (LOGISTIC then MUL, 1.2 M elements each, in L3) 0.43 ms; GELU, a single op, takes half that. Row
bands (2–14), a tanh form of SiLU, ``adj_y`` batch matmuls and 4-D matmuls measured no better.

Why LiteRT stays above 0.8 × official (ablations: parts removed from exported sub-networks, timed interleaved,
2 threads). The convolution stages (stem to stage 2, 1.93 ms of emo_1m) spend 0.75 ms in SiLU: with a ReLU that
the convolution fuses in its place they take 1.18 ms. LOGISTIC and MUL are memory-bound passes (on 96×112²:
LOGISTIC 0.16 ms, MUL 0.24 ms; the same SiLU on a map 16× smaller costs 26× less) and every exact form pays
them: TFLite has no SiLU operator, this LiteRT wheel has no YNNPACK (``enable_ynnpack`` is refused), the XNNPACK
"latest features" flag changes nothing, and row bands win at most 10 % of the largest block (0.80 → 0.72 ms with
4 bands; 2, 3, 5, 6, 8 and 14 bands less or slower), about 2 % of the network. In a stage-3 attention block
(0.235 ms): the local branch 57 µs, Q/K FULLY_CONNECTED 32, SOFTMAX 29 (XNNPACK's per-row cost over 784 rows
of 49), the four transposes 27, the LayerNorm 12; a decomposed softmax (REDUCE_MAX, SUB, EXP, SUM and DIV or
a reciprocal, also with the division moved after the second matmul) is no faster. The attention stages run at
about 0.77 × official, but the convolution stages, 40 % of official's time, are the same in every exact form;
0.8 overall would need the attention stages at about 0.67 ×.

Its parameters are derived, so it is for inference only; train and load checkpoints on the reference model.
Cascaded blocks with grid, contiguous or global windows, attn_pre or not, are covered (every configuration
the official code expresses); others (parallel cascade, shifted windows, spatial-reduction attention) have no
mobile form (``--form auto`` then measures the next formulation of the backend's list).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from emobench.nn.emo import EMO
from emobench.nn.forms.fused import _bn_affine, _frozen, fold_stem_and_head, pre_norm_affine, stage_outputs, staged_blocks, token_linear
from emobench.nn.layers import LayerNorm2d, act_fn
from emobench.nn.m2 import M2Block, partition, unpartition


def _dense(w: torch.Tensor, groups: int) -> torch.Tensor:
    """A (grouped) 1×1 conv weight as a dense (out, in) matrix."""
    w = w.flatten(1)
    if groups == 1:
        return w
    out_g, in_g = w.shape[0] // groups, w.shape[1]
    dense = w.new_zeros(w.shape[0], in_g * groups)
    for i in range(groups):
        dense[i * out_g : (i + 1) * out_g, i * in_g : (i + 1) * in_g] = w[i * out_g : (i + 1) * out_g]
    return dense


def _conv_of(module: nn.Module, pre: tuple[torch.Tensor, torch.Tensor] | None = None, scale: float = 1.0):
    """(weight, bias) of a ConvNormAct with its BatchNorm folded, ``pre`` = (s, t), an affine map on its input,
    folded in front (1×1 convs only), and the output multiplied by ``scale``."""
    conv = module.conv
    w = conv.weight
    b = conv.bias if conv.bias is not None else w.new_zeros(w.shape[0])
    if pre is not None:
        s, t = pre
        g = conv.groups
        wg = w.flatten(1)  # (out, in/g)
        out_g, in_g = w.shape[0] // g, w.shape[1]
        t_g = t.reshape(g, in_g)
        b = b + torch.cat([wg[i * out_g : (i + 1) * out_g] @ t_g[i] for i in range(g)])
        w = w * s.reshape(g, 1, in_g).repeat_interleave(out_g, 0).reshape(w.shape[0], in_g, 1, 1)
    if isinstance(module.norm, nn.BatchNorm2d):
        s, t = _bn_affine(module.norm)
        w, b = w * s[:, None, None, None], b * s + t
    return w * scale, b * scale


def channel_norm(x: torch.Tensor, mean_weight: torch.Tensor, var_bias: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the channels of an NCHW map without its affine part, with delegable ops only:
    mean and variance are 1×1 convs with a constant 1/C weight (ε is the variance conv's bias)."""
    d = x - F.conv2d(x, mean_weight)
    return d * torch.rsqrt(F.conv2d(d * d, mean_weight, var_bias))


class _ChannelNorm(nn.Module):
    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.register_buffer("mean_weight", torch.full((1, channels, 1, 1), 1.0 / channels))
        self.register_buffer("var_bias", torch.full((1,), float(eps)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_norm(x, self.mean_weight, self.var_bias)


def local_nchw(block: nn.Module, x: torch.Tensor, dw_weight: torch.Tensor | None, dw_bias: torch.Tensor | None) -> torch.Tensor:
    """The local operator on an NCHW map: depth-wise conv (BatchNorm folded) → activation → squeeze-excite
    (``mean`` over H, W with keepdim: XNNPACK's global average pool), from ``block``'s ``dw_args``, ``dw_act``,
    ``se``, ``se_act`` and ``se_w1/b1/w2/b2``."""
    if dw_weight is not None:
        x = F.conv2d(x, dw_weight, dw_bias, **block.dw_args)
        if block.dw_act is not None:
            x = block.dw_act(x)
    if block.se:
        s = F.conv2d(x.mean((2, 3), keepdim=True), block.se_w1, block.se_b1)
        s = block.se_act(s) if block.se_act is not None else s
        x = x * torch.sigmoid(F.conv2d(s, block.se_w2, block.se_b2))
    return x


class MobileM2Block(nn.Module):
    """An eval-mode cascaded :class:`M2Block` on NCHW maps, in delegable ops."""

    def __init__(self, block: M2Block, tokens: bool = False) -> None:
        super().__init__()
        cfg = self.cfg = block.cfg
        att = cfg.attention
        self.tokens = tokens
        self.ln_tokens = tokens
        self.act, self.dw_act = act_fn(cfg.act), act_fn(cfg.dw_act)
        # Pre-norm: BatchNorm and LayerNorm's affine part become (s, t), folded into the convs that read the map.
        self.ln = _ChannelNorm(cfg.dim_in, block.norm.norm.eps) if isinstance(block.norm, LayerNorm2d) else None
        pre = pre_norm_affine(block.norm)
        self.pre_scale = self.pre_shift = None
        if pre is not None:
            self.pre_scale, self.pre_shift = _frozen(pre[0].reshape(1, -1, 1, 1)), _frozen(pre[1].reshape(1, -1, 1, 1))
        self.heads = cfg.num_heads
        if att is not None:
            c, d = cfg.dim_in, att.dim_head
            self.window = 0 if att.window == "global" else att.window_size
            self.grid = att.window == "grid"
            self.dim_head, self.scale = d, d**-0.5
            qk = block.qk
            w_qk = qk.conv.weight
            b_qk = qk.conv.bias if qk.conv.bias is not None else w_qk.new_zeros(2 * c)
            # Folded: pre-affine in front, 1/√d into Q. Raw: for zero-padded maps (padding comes after the affine).
            wq, bq = _conv_of(_Conv(w_qk[:c], b_qk[:c]), pre, self.scale)
            wk, bk = _conv_of(_Conv(w_qk[c:], b_qk[c:]), pre)
            self.q_weight, self.q_bias, self.k_weight, self.k_bias = map(_frozen, (wq, bq, wk, bk))
            wq, bq = _conv_of(_Conv(w_qk[:c], b_qk[:c]), None, self.scale)
            self.q_weight_raw, self.q_bias_raw = _frozen(wq), _frozen(bq)
            self.k_weight_raw, self.k_bias_raw = _frozen(w_qk[c:]), _frozen(b_qk[c:])
            self.attn_pre = att.attn_pre
        self.v_weight = None
        if cfg.expand:
            # With attn_pre the pre-affine passes through the attention (its rows sum to one) to MLP_e.
            w, b = _conv_of(block.v, pre)
            self.v_weight, self.v_bias = _frozen(w), _frozen(b)
            self.v_groups = block.v.conv.groups
            if att is not None:
                w, b = _conv_of(block.v)
                self.v_weight_raw, self.v_bias_raw = _frozen(w), _frozen(b)
        self.dw_weight = None
        if cfg.dw_kernel is not None:
            w, b = _conv_of(block.conv_local)
            conv = block.conv_local.conv
            self.dw_weight, self.dw_bias = _frozen(w), _frozen(b)
            self.dw_args = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
        self.se = isinstance(block.se, nn.Module) and hasattr(block.se, "conv_reduce")
        if self.se:
            self.se_act = act_fn(cfg.act)
            self.se_w1, self.se_b1 = _frozen(block.se.conv_reduce.weight), _frozen(block.se.conv_reduce.bias)
            self.se_w2, self.se_b2 = _frozen(block.se.conv_expand.weight), _frozen(block.se.conv_expand.bias)
        w, b = _conv_of(block.proj)
        self.proj_weight = _frozen(w)
        self.proj_bias = _frozen(b) if (block.proj.conv.bias is not None or cfg.proj_norm) else None

    def _expand(self, x: torch.Tensor, raw: bool = False) -> torch.Tensor:
        w, b = (self.v_weight_raw, self.v_bias_raw) if raw else (self.v_weight, self.v_bias)
        x = F.conv2d(x, w, b, groups=self.v_groups)
        return self.act(x) if self.act is not None else x

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        """Window attention on the normalised map ``x`` (pre-affine not applied unless the map is padded)."""
        b, c, h, w = x.shape
        wh, ww = (self.window, self.window) if self.window else (h, w)
        pad_b, pad_r = (wh - h % wh) % wh, (ww - w % ww) % ww
        raw = bool(pad_b or pad_r)
        if raw:  # zero padding comes after the affine part: apply it, pad, and use the unfolded weights
            if self.pre_scale is not None:
                x = x * self.pre_scale + self.pre_shift
            x = F.pad(x, (0, pad_r, 0, pad_b))
            q = F.conv2d(x, self.q_weight_raw, self.q_bias_raw)
            k = F.conv2d(x, self.k_weight_raw, self.k_bias_raw)
        else:
            q = F.conv2d(x, self.q_weight, self.q_bias)
            k = F.conv2d(x, self.k_weight, self.k_bias)
        v = x
        if not self.attn_pre and self.v_weight is not None:
            v = self._expand(x, raw)
        bare_values = v is x and not raw  # values before the pre-affine, which must still be applied
        hp, wp = h + pad_b, w + pad_r
        n1, n2 = hp // wh, wp // ww
        heads, d, n = self.heads, self.dim_head, wh * ww
        dv = v.shape[1] // heads
        bh = b * heads
        if n1 == 1 and n2 == 1:
            # One window: channel-major maps are already (B·heads, d, N); K needs no transpose at all.
            q = q.reshape(bh, d, n).transpose(1, 2)
            k = k.reshape(bh, d, n)
            v = v.reshape(bh, dv, n).transpose(1, 2)
            out = torch.softmax(torch.bmm(q, k), dim=-1)
            out = torch.bmm(out, v).transpose(1, 2).reshape(b, heads * dv, hp, wp)
        else:
            g = n1 * n2 * bh
            if self.grid:  # 'b c (h1 n1) (w1 n2)': window (i, j) holds rows i, i+n1, …
                split = lambda t, ch: t.reshape(bh, ch, wh, n1, ww, n2)  # noqa: E731
                to_rows, to_cols = (3, 5, 0, 2, 4, 1), (3, 5, 0, 1, 2, 4)
                back = (2, 5, 3, 0, 4, 1)
            else:  # contiguous windows
                split = lambda t, ch: t.reshape(bh, ch, n1, wh, n2, ww)  # noqa: E731
                to_rows, to_cols = (2, 4, 0, 3, 5, 1), (2, 4, 0, 1, 3, 5)
                back = (2, 5, 0, 3, 1, 4)
            q = split(q, d).permute(to_rows).reshape(g, n, d)
            k = split(k, d).permute(to_cols).reshape(g, d, n)
            v = split(v, dv).permute(to_rows).reshape(g, n, dv)
            out = torch.softmax(torch.bmm(q, k), dim=-1)
            out = torch.bmm(out, v).reshape(n1, n2, bh, wh, ww, dv).permute(back)
            out = out.reshape(b, heads * dv, hp, wp)
        if raw:
            out = out[:, :, :h, :w]
        if self.attn_pre and self.v_weight is not None:
            return self._expand(out, raw)  # the pre-affine of the values is folded into MLP_e
        if bare_values and self.pre_scale is not None:
            out = out * self.pre_scale + self.pre_shift  # values were the map before its affine part
        return out

    def _attend_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The same attention on channels-last tokens (the LiteRT variant): the converter turns the NCHW maps
        NHWC, so ``permute(0, 2, 3, 1)`` cancels against its own layout transpose and the 1×1 projections run
        as FULLY_CONNECTED on tokens; partition and head split are one 6-D transpose per operand (batch 1)."""
        b, c, h, w = x.shape
        wh, ww = (self.window, self.window) if self.window else (h, w)
        pad_b, pad_r = (wh - h % wh) % wh, (ww - w % ww) % ww
        raw = bool(pad_b or pad_r)
        t = x.permute(0, 2, 3, 1)
        if self.ln is not None and self.ln_tokens:  # LayerNorm over the last axis: MEAN ops (XNNPACK reduce)
            t = t - t.mean(-1, keepdim=True)
            t = t * torch.rsqrt((t * t).mean(-1, keepdim=True) + self.ln.var_bias)
        if raw:
            if self.pre_scale is not None:
                t = t * self.pre_scale.reshape(-1) + self.pre_shift.reshape(-1)
            t = F.pad(t, (0, 0, 0, pad_r, 0, pad_b))
            q = token_linear(t, self.q_weight_raw.flatten(1), self.q_bias_raw)
            k = token_linear(t, self.k_weight_raw.flatten(1), self.k_bias_raw)
        else:
            q = token_linear(t, self.q_weight.flatten(1), self.q_bias)
            k = token_linear(t, self.k_weight.flatten(1), self.k_bias)
        v = t
        if not self.attn_pre and self.v_weight is not None:
            v = self._expand_tokens(t, raw)
        bare_values = v is t and not raw
        hp, wp = h + pad_b, w + pad_r
        n1, n2 = hp // wh, wp // ww
        heads, d, n = self.heads, self.dim_head, wh * ww
        dv = v.shape[-1] // heads
        if b == 1 and (self.grid or (n1 == 1 and n2 == 1)):
            # (h1 n1) (w1 n2) (heads d) → (n1 n2 heads) (h1 w1) d: partition and head split in one transpose
            split = lambda z, ch: z.reshape(wh, n1, ww, n2, heads, ch)  # noqa: E731
            g = n1 * n2 * heads
            q = split(q, d).permute(1, 3, 4, 0, 2, 5).reshape(g, n, d)
            k = split(k, d).permute(1, 3, 4, 5, 0, 2).reshape(g, d, n)
            v = split(v, dv).permute(1, 3, 4, 0, 2, 5).reshape(g, n, dv)
            out = torch.bmm(torch.softmax(torch.bmm(q, k), dim=-1), v)
            out = out.reshape(n1, n2, heads, wh, ww, dv).permute(3, 0, 4, 1, 2, 5).reshape(1, hp, wp, heads * dv)
        else:
            mode = "grid" if self.grid else "contiguous"
            q, k, v = (partition(z, wh, ww, mode) for z in (q, k, v))
            g = q.shape[0]
            q = q.reshape(g, n, heads, d).permute(0, 2, 1, 3).reshape(g * heads, n, d)
            k = k.reshape(g, n, heads, d).permute(0, 2, 3, 1).reshape(g * heads, d, n)
            v = v.reshape(g, n, heads, dv).permute(0, 2, 1, 3).reshape(g * heads, n, dv)
            out = torch.bmm(torch.softmax(torch.bmm(q, k), dim=-1), v)
            out = out.reshape(g, heads, n, dv).permute(0, 2, 1, 3).reshape(g, n, heads * dv)
            out = unpartition(out, b, hp, wp, wh, ww, mode)
        if raw:
            out = out[:, :h, :w]
        if self.attn_pre and self.v_weight is not None:
            out = self._expand_tokens(out, raw)
        elif bare_values and self.pre_scale is not None:
            out = out * self.pre_scale.reshape(-1) + self.pre_shift.reshape(-1)
        return out.permute(0, 3, 1, 2)

    def _expand_tokens(self, t: torch.Tensor, raw: bool = False) -> torch.Tensor:
        w, b = (self.v_weight_raw, self.v_bias_raw) if raw else (self.v_weight, self.v_bias)
        t = token_linear(t, _dense(w, self.v_groups), b)
        return self.act(t) if self.act is not None else t

    def _local(self, x: torch.Tensor) -> torch.Tensor:
        return local_nchw(self, x, self.dw_weight, self.dw_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        shortcut = x
        if self.ln is not None and not (self.ln_tokens and cfg.attention is not None):
            x = self.ln(x)
        if cfg.attention is not None:
            x = self._attend_tokens(x) if self.tokens else self._attend(x)
        else:
            if self.v_weight is not None:
                x = self._expand(x)  # the pre-affine is folded into MLP_e
            elif self.pre_scale is not None:
                x = x * self.pre_scale + self.pre_shift
        local_skip = cfg.has_skip and cfg.local_skip and cfg.dw_kernel is not None
        x = x + self._local(x) if local_skip else self._local(x)
        x = F.conv2d(x, self.proj_weight, self.proj_bias)
        return shortcut + x if cfg.has_skip else x


class _Conv(nn.Module):
    """A bare (weight, bias) pair in the shape :func:`_conv_of` reads."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1)
        self.conv.weight, self.conv.bias = nn.Parameter(weight), nn.Parameter(bias)
        self.norm = nn.Identity()


class MobileEMO(nn.Module):
    """An eval-mode :class:`EMO` in delegable NCHW ops; same outputs."""

    def __init__(self, model: EMO, tokens: bool = False) -> None:
        super().__init__()
        self.cfg = model.cfg
        self.in_chans, self.num_classes, self.num_features = model.in_chans, model.num_classes, model.num_features
        fold_stem_and_head(self, model)
        self.blocks, self.stage_ends = staged_blocks(model.stages, lambda b: MobileM2Block(b, tokens))
        self.norm = _ChannelNorm(self.num_features, model.norm.norm.eps)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of stage0 … stage4, NCHW (a down-stream backbone reads them)."""
        return stage_outputs(self.blocks, self.stage_ends, F.conv2d(x, self.stem_weight, self.stem_bias, **self.stem_args))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.stem_weight, self.stem_bias, **self.stem_args)
        x = self.blocks(x)
        x = self.norm(x).mean((2, 3), keepdim=True).flatten(1)
        if self.head_weight is None:
            return x * self.norm_weight + self.norm_bias
        return F.linear(x, self.head_weight, self.head_bias)


def mobile_unsupported(model: nn.Module) -> str | None:
    """None when every block is one :class:`MobileM2Block` expresses (cascaded; grid, contiguous or global
    windows; no spatial reduction: every configuration of the official code is), else why not."""
    if not isinstance(model, EMO):
        return f"{type(model).__name__} is not an EMO network"
    for block in (m for m in model.modules() if isinstance(m, M2Block)):
        att = block.cfg.attention
        if block.cfg.cascade != "cascaded":
            return "the mobile form has no parallel cascade"
        if att is not None and (att.window == "shifted" or att.sr_ratio > 1):
            return "the mobile form has no shifted windows or spatial-reduction attention"
    return None


def _checked(model: nn.Module) -> None:
    why = mobile_unsupported(model)
    if why:
        from emobench.errors import EmobenchError

        raise EmobenchError(f"no mobile form: {why}")


@torch.no_grad()
def mobilize(model: EMO) -> nn.Module:
    """The mobile inference form of an EMO (see the module docstring), NCHW throughout; ``model`` is unchanged."""
    _checked(model)
    return MobileEMO(copy.deepcopy(model).eval()).eval()


@torch.no_grad()
def mobilize_tokens(model: EMO) -> nn.Module:
    """The mobile form with the attention on channels-last tokens (what LiteRT's converter runs best)."""
    _checked(model)
    return MobileEMO(copy.deepcopy(model).eval(), tokens=True).eval()
