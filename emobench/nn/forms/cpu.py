"""CPU-runtime inference forms of EMO for ONNX Runtime (CPU EP) and OpenVINO (CPU plugin).

Each function here derives, from a reference :class:`EMO` in eval mode, a module computing the same function
(float32 round-off) whose exported operator sequence suits a CPU runtime's graph optimiser. Choices:

- every 1×1 projection outside the attention core is an NCHW ``conv2d`` with BatchNorm folded in (a BatchNorm
  pre-norm is folded into the 1×1 conv that reads it): ORT turns NCHW conv chains into its blocked NCHWc
  convolutions and OpenVINO's CPU plugin into blocked oneDNN convs, with no layout reorders between them;
- GELU (ORT form) is written ``x·(1 + erf(x/√2))·0.5``: that is the operand order ORT's ``GeluFusion`` matches, so the five
  element-wise nodes become one ``Gelu`` kernel (``F.gelu`` exports as ``0.5·(1+erf)`` first, which it misses);
- the window attention (grid or global windows, attn_pre) takes each operand from its layout to the
  (windows·heads, N, d) batch-matmul layout in ONE transpose (partition and head split together; K straight to
  (d, N)), and the attention output goes back to the NCHW map in one transpose too (unpartition and head merge),
  so MLP_e after it is again an NCHW conv (reference/official: 6–9 transposes per attention block, here 4);
- the pre-norm LayerNorm keeps its affine part inside the normalisation op (free there), so zero padding for
  windows still comes after the affine map exactly as in the reference.

Variants differ only in how the attention's LayerNorm, Q/K and MLP_e are written; see each function.
Measured (2 threads, batch 1, 224², median of 3 interleaved rounds, ratio to ``official``): ``cpu_ort`` on
ONNX Runtime 0.67–0.69 (emo_1m) / 0.66 (emo_5m); ``cpu_ov`` on OpenVINO 0.77 / 0.78 (``reference``
0.84–0.87 / 0.84). OpenVINO fuses the attention core (bmm, softmax, bmm) into one MHA snippet for every form;
what ``cpu_ov`` removes is its LayerNorm chain and the reorders around it.
Not for LiteRT: ``cpu_ort`` measured 1.19 there (``mobile-tokens`` 0.77); the 7/8-D transposes and the
decomposed erf-GELU are the likely cause (not profiled). Derived parameters: inference only.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from emobench.nn.emo import EMO
from emobench.nn.forms.folding import bn_affine, classify, conv_of, dense_weight, fold_local, fold_stem_and_head, frozen, proj_of, qk_of
from emobench.nn.forms.fused import stage_outputs, staged_blocks
from emobench.nn.forms.mobile import local_and_proj_nchw
from emobench.nn.layers import LayerNorm2d, act_fn
from emobench.nn.m2 import M2Block

_SQRT2 = math.sqrt(2.0)


def gelu_fusable(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU in the operand order ORT's GeluFusion recognises: Div → Erf → Add → Mul(x) → Mul(0.5)."""
    return x * (torch.erf(x / _SQRT2) + 1.0) * 0.5


def _act(name: str, native_gelu: bool = False):
    return gelu_fusable if name == "gelu" and not native_gelu else act_fn(name)


class CpuM2Block(nn.Module):
    """An eval-mode cascaded :class:`M2Block` on NCHW maps.

    ``ln``: how a LayerNorm pre-norm is computed: "tokens" (transpose to NHWC, ``layer_norm``; the attention
    then projects Q/K on the tokens), or "channels" (mean/variance over dim 1 of the NCHW map, which OpenVINO
    turns into one MVN over the channel axis, no transpose; Q/K are then NCHW 1×1 convs).
    """

    def __init__(self, block: M2Block, ln: str = "tokens", qk_joint: bool = True, out_tokens: bool = False,
                 native_gelu: bool = False) -> None:
        super().__init__()
        cfg = self.cfg = block.cfg
        att = cfg.attention
        self.ln_mode, self.qk_joint, self.out_tokens = ln, qk_joint, out_tokens
        self.act, self.dw_act = _act(cfg.act, native_gelu), _act(cfg.dw_act, native_gelu)
        self.is_ln = isinstance(block.norm, LayerNorm2d)
        # A LayerNorm keeps its affine part inside the normalisation op (free there); a BatchNorm pre-norm is
        # folded into MLP_e where MLP_e reads it directly, else applied as a per-channel affine map.
        pre = bn_affine(block.norm) if isinstance(block.norm, nn.BatchNorm2d) else None
        self.ln_w = self.ln_b = None
        if self.is_ln:
            self.eps = block.norm.norm.eps
            self.ln_w, self.ln_b = frozen(block.norm.norm.weight), frozen(block.norm.norm.bias)
        self.pre_scale = self.pre_shift = None
        if pre is not None and (att is not None or not cfg.expand):
            self.pre_scale, self.pre_shift = frozen(pre[0].reshape(1, -1, 1, 1)), frozen(pre[1].reshape(1, -1, 1, 1))
        if att is not None:
            self.heads, self.d = cfg.num_heads, att.dim_head
            self.window = 0 if att.window == "global" else att.window_size
            wq, bq, wk, bk = qk_of(block)
            self.qk_w, self.qk_b = frozen(torch.cat([wq, wk]).flatten(1)), frozen(torch.cat([bq, bk]))
            self.attn_pre = att.attn_pre
        self.v_w = None
        if cfg.expand:
            w, b = conv_of(block.v, pre if att is None else None)
            self.v_w, self.v_b, self.v_groups = frozen(w), frozen(b), block.v.conv.groups
            self.v_w_dense = frozen(dense_weight(w, self.v_groups))
        fold_local(self, block, act_fn(cfg.act))
        w, b = proj_of(block)
        self.proj_weight, self.proj_bias = frozen(w), frozen(b)

    # -- norms ---------------------------------------------------------------------------------------------
    def _ln_channels(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        d = x - u
        y = d / torch.sqrt((d * d).mean(1, keepdim=True) + self.eps)
        return y * self.ln_w.reshape(1, -1, 1, 1) + self.ln_b.reshape(1, -1, 1, 1)

    #: experiment switches (class defaults; set per instance by the variant builders)
    tok3d = False  # LayerNorm on rank-3 (B, H·W, C) tokens instead of a permuted rank-4 map
    ln_manual = False  # LayerNorm written as mean/sub/mul/rsqrt on the last axis

    def _ln_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """LayerNorm of an NCHW map, returned as NHWC (B, H, W, C) tokens."""
        b, c, h, w = x.shape
        t = x.reshape(b, c, h * w).transpose(1, 2) if self.tok3d else x.permute(0, 2, 3, 1)
        if self.ln_manual:
            t = t - t.mean(-1, keepdim=True)
            t = t * torch.rsqrt((t * t).mean(-1, keepdim=True) + self.eps) * self.ln_w + self.ln_b
        else:
            t = F.layer_norm(t, (c,), self.ln_w, self.ln_b, self.eps)
        return t.reshape(b, h, w, c)

    def _ln_nchw(self, x: torch.Tensor) -> torch.Tensor:
        if self.ln_mode == "channels":
            return self._ln_channels(x)
        return self._ln_tokens(x).permute(0, 3, 1, 2)

    def _expand(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.v_w, self.v_b, groups=self.v_groups)
        return self.act(x) if self.act is not None else x

    # -- attention -----------------------------------------------------------------------------------------
    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        """Window attention of the (un-normalised) NCHW block input; returns the NCHW map before MLP_e
        (attn_pre) or after it. Batch b: the window/heads split is one transpose per operand."""
        b, c, h, w = x.shape
        wh, ww = (self.window, self.window) if self.window else (h, w)
        pad_b, pad_r = (wh - h % wh) % wh, (ww - w % ww) % ww
        hp, wp = h + pad_b, w + pad_r
        n1, n2 = hp // wh, wp // ww
        heads, d, n = self.heads, self.d, wh * ww
        g = b * n1 * n2 * heads
        if self.ln_mode == "tokens" and self.is_ln:
            t = self._ln_tokens(x)  # (b, h, w, c)
        else:
            xn = self._ln_channels(x) if self.is_ln else x
            if self.pre_scale is not None:
                xn = xn * self.pre_scale + self.pre_shift
            t = None
        if t is not None:
            if pad_b or pad_r:
                t = F.pad(t, (0, 0, 0, pad_r, 0, pad_b))
            # 'b (wh n1) (ww n2) (heads d)' → '(b n1 n2 heads) (wh ww) d' : grid partition + head split
            v = t.reshape(b, wh, n1, ww, n2, heads, c // heads).permute(0, 2, 4, 5, 1, 3, 6).reshape(g, n, c // heads)
            if self.qk_joint:
                qk = F.linear(t.reshape(b, hp * wp, c), self.qk_w, self.qk_b)
                qk = qk.reshape(b, wh, n1, ww, n2, 2, heads, d).permute(5, 0, 2, 4, 6, 1, 3, 7).reshape(2, g, n, d)
                q, k = qk[0], qk[1]
                k = k.transpose(1, 2)
            else:
                tt = t.reshape(b, hp * wp, c)
                q = F.linear(tt, self.qk_w[:c], self.qk_b[:c])
                k = F.linear(tt, self.qk_w[c:], self.qk_b[c:])
                q = q.reshape(b, wh, n1, ww, n2, heads, d).permute(0, 2, 4, 5, 1, 3, 6).reshape(g, n, d)
                k = k.reshape(b, wh, n1, ww, n2, heads, d).permute(0, 2, 4, 5, 6, 1, 3).reshape(g, d, n)
        else:
            if pad_b or pad_r:
                xn = F.pad(xn, (0, pad_r, 0, pad_b))
            # 'b (heads d) (wh n1) (ww n2)' → '(b n1 n2 heads) (wh ww) d'
            v = xn.reshape(b, heads, c // heads, wh, n1, ww, n2).permute(0, 4, 6, 1, 3, 5, 2).reshape(g, n, c // heads)
            q = F.conv2d(xn, self.qk_w[:c, :, None, None], self.qk_b[:c])
            k = F.conv2d(xn, self.qk_w[c:, :, None, None], self.qk_b[c:])
            q = q.reshape(b, heads, d, wh, n1, ww, n2).permute(0, 4, 6, 1, 3, 5, 2).reshape(g, n, d)
            k = k.reshape(b, heads, d, wh, n1, ww, n2).permute(0, 4, 6, 1, 2, 3, 5).reshape(g, d, n)
        out = torch.bmm(torch.softmax(torch.bmm(q, k), dim=-1), v)  # (g, n, dv)
        dv = c // heads
        if self.out_tokens and self.v_w is not None:
            # OpenVINO: MLP_e as a FullyConnected on tokens, then one transpose back to NCHW for the DW conv
            out = out.reshape(b, n1, n2, heads, wh, ww, dv).permute(0, 4, 1, 5, 2, 3, 6).reshape(b, hp, wp, c)
            if pad_b or pad_r:
                out = out[:, :h, :w]
            out = F.linear(out.reshape(b, h * w, c), self.v_w_dense, self.v_b)
            out = self.act(out) if self.act is not None else out
            return out.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        # '(b n1 n2 heads) (wh ww) dv' → 'b (heads dv) (wh n1) (ww n2)': unpartition + head merge, NCHW
        out = out.reshape(b, n1, n2, heads, wh, ww, dv).permute(0, 3, 6, 4, 1, 5, 2).reshape(b, c, hp, wp)
        if pad_b or pad_r:
            out = out[:, :, :h, :w]
        return self._expand(out) if self.v_w is not None else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        shortcut = x
        if cfg.attention is not None:
            x = self._attend(x)
        else:
            if self.is_ln:
                x = self._ln_nchw(x)
            elif self.pre_scale is not None:
                x = x * self.pre_scale + self.pre_shift
            if self.v_w is not None:
                x = self._expand(x)  # a BatchNorm pre-norm is folded into it
        return local_and_proj_nchw(self, x, shortcut)


class CpuEMO(nn.Module):
    def __init__(self, model: EMO, ln: str, qk_joint: bool, out_tokens: bool = False, native_gelu: bool = False) -> None:
        super().__init__()
        self.cfg = model.cfg
        fold_stem_and_head(self, model)
        self.blocks, self.stage_ends = staged_blocks(model.stages, lambda b: CpuM2Block(b, ln, qk_joint, out_tokens, native_gelu))
        self.ln = ln

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.stem_weight, self.stem_bias, **self.stem_args)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of stage0 … stage4, NCHW (a down-stream backbone reads them)."""
        return stage_outputs(self.blocks, self.stage_ends, self.forward_stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.forward_stem(x))
        if self.ln == "channels":
            u = x.mean(1, keepdim=True)
            d = x - u
            x = (d / torch.sqrt((d * d).mean(1, keepdim=True) + self.norm_eps)).mean((2, 3))
        else:
            t = x.flatten(2).transpose(1, 2) if self.blocks[0].tok3d else x.permute(0, 2, 3, 1)
            x = F.layer_norm(t, x.shape[1:2], None, None, self.norm_eps).mean(tuple(range(1, t.ndim - 1)))
        return classify(self, x)


def cpu_forms_unsupported(model: nn.Module) -> str | None:
    """None for every EMO the official code expresses (cascaded; grid or global windows; no spatial reduction;
    attn_pre), else why not."""
    if not isinstance(model, EMO):
        return f"{type(model).__name__} is not an EMO network"
    for block in (m for m in model.modules() if isinstance(m, M2Block)):
        att, cfg = block.cfg.attention, block.cfg
        if cfg.cascade != "cascaded":
            return "no parallel cascade"
        if att is not None and (att.window not in ("grid", "global") or att.sr_ratio > 1 or not att.attn_pre):
            return "grid/global windows with attn_pre only"
    return None


def _build(model: EMO, **kw) -> nn.Module:
    why = cpu_forms_unsupported(model)
    if why:
        from emobench.errors import EmobenchError

        raise EmobenchError(f"no cpu form: {why}")
    with torch.no_grad():
        return CpuEMO(copy.deepcopy(model).eval(), **kw).eval()


def _variant(model: EMO, opts: dict, **kw) -> nn.Module:
    m = _build(model, **kw)
    for blk in m.blocks:
        for k, v in opts.items():
            setattr(blk, k, v)
    return m


def cpu_ort(model: EMO) -> nn.Module:
    """ONNX Runtime: LayerNorm on rank-4 NHWC tokens (its fused LayerNormalization), Q and K from one MatMul and
    one transpose, MLP_e an NCHW conv (NCHWc) after the one-transpose unpartition, GELU in GeluFusion's order.
    (Measured alternatives, ratio to official on emo_1m: separate Q/K 0.73; rank-3 LayerNorm tokens 0.70.)"""
    return _build(model, ln="tokens", qk_joint=True)


def cpu_ov(model: EMO) -> nn.Module:
    """OpenVINO: as :func:`cpu_ort`, but LayerNorm on rank-3 (B, H·W, C) tokens, which OpenVINO compiles into one
    MVN with the layout change absorbed (rank-4 NHWC gives Transpose + ReduceMean + Sub + Reorder + RMS), and
    MLP_e as a FullyConnected on tokens, one transpose back to NCHW for the depth-wise conv.
    GELU is the native op here: OpenVINO fuses it into the convolution before it as a post-op, while the
    ORT-ordered erf form stays a separate element-wise snippet after the downsampling blocks' expansion convs
    (0.14 + 0.11 ms on emo_5m; one interleaved run, ratio to official: emo_1m 0.812 → 0.770, emo_5m 0.791 → 0.776).
    (Measured alternatives on emo_1m: rank-4 LN 0.85–0.89; separate Q/K 0.78; LN as explicit mean/rsqrt 0.83;
    LN over the channel axis of the NCHW map 0.94.)
    Profiled (PERF_COUNT, emo_1m, 4.2 ms): convolutions 1.6 ms, depth-wise 0.74, MHA/element-wise snippets 0.7,
    FullyConnected 0.59, transposes 0.18, reorders 0.17 (0.08 of it the input's NCHW→NHWC for the stem). The
    largest node is the first 24→96 expansion at 112² (0.47 ms, ~0.2 of it the fused Swish). Tried, no gain:
    the stem block's squeeze-excite pool as ``avg_pool2d`` (AvgPool 55 µs vs ReduceMean 90 µs in isolation,
    but 0.799 vs 0.805 on emo_1m and 0.787 vs 0.779 on emo_5m: noise); that expansion block in 2/4 row bands or
    2/4 channel groups (0–10 % slower in isolation); SiLU through tanh (slower: breaks the Swish fusion)."""
    return _variant(model, dict(tok3d=True), ln="tokens", qk_joint=True, out_tokens=True, native_gelu=True)
