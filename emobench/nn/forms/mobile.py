"""The mobile inference form of EMO: one graph that the XNNPACK delegate (ExecuTorch, LiteRT) takes whole.

``mobilize`` (ExecuTorch) and ``mobilize_tokens`` (LiteRT) derive it from an eval-mode model. It computes the
same function (float32 round-off) with only operators the XNNPACK partitioner accepts, because every other one
splits the delegated graph and adds layout conversions; the token variant runs the attention on channels-last
tokens, which LiteRT's converter turns into FULLY_CONNECTED with fewer transposes. The design and the LiteRT
measurements behind it: docs/benchmarking.md, "The mobile forms". Derived parameters: inference only.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from emobench.nn.emo import EMO
from emobench.nn.forms.folding import classify, conv_of, dense_weight, fold_local, fold_stem_and_head, frozen, pre_norm_affine, proj_of, qk_of
from emobench.nn.forms.fused import stage_outputs, staged_blocks, token_linear
from emobench.nn.layers import LayerNorm2d, act_fn
from emobench.nn.m2 import M2Block, partition, unpartition


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


def local_nchw(block: nn.Module, x: torch.Tensor, tap=None) -> torch.Tensor:
    """The local operator on an NCHW map: depth-wise conv (BatchNorm folded) → activation → squeeze-excite
    (``mean`` over H, W with keepdim: XNNPACK's global average pool), from what :func:`.folding.fold_local`
    gave ``block``, and its ``dw_act``; ``tap(part, *live)`` marks where the DW-conv ends (see
    :meth:`MobileM2Block.cut_at`)."""
    if block.dw_weight is not None:
        x = F.conv2d(x, block.dw_weight, block.dw_bias, **block.dw_args)
        if block.dw_act is not None:
            x = block.dw_act(x)
        if tap is not None and block.se:
            tap("local DW-conv", x)
    if block.se:
        s = F.conv2d(x.mean((2, 3), keepdim=True), block.se_w1, block.se_b1)
        s = block.se_act(s) if block.se_act is not None else s
        x = x * torch.sigmoid(F.conv2d(s, block.se_w2, block.se_b2))
    return x


def local_and_proj_nchw(block: nn.Module, x: torch.Tensor, shortcut: torch.Tensor, tap=None) -> torch.Tensor:
    """The rest of a cascaded block on NCHW maps, after its attention or MLP_e: the local operator (with its
    skip), MLP_s (``proj_weight``, ``proj_bias``) and the block's residual; ``tap`` as in :func:`local_nchw`."""
    cfg = block.cfg
    local_skip = cfg.has_skip and cfg.local_skip and cfg.dw_kernel is not None
    if cfg.dw_kernel is not None or block.se:
        x = x + local_nchw(block, x, tap) if local_skip else local_nchw(block, x, tap)
        if tap is not None:
            tap("SE" if block.se else "local DW-conv", x)
    x = F.conv2d(x, block.proj_weight, block.proj_bias)
    if tap is not None and cfg.has_skip:
        tap("MLP_s", x)
    return shortcut + x if cfg.has_skip else x


class _Cut(Exception):
    """Raised at the tap a block cut stops at, carrying what it returns."""

    def __init__(self, live: torch.Tensor) -> None:
        super().__init__()
        self.live = live


def _first_elements(*live: torch.Tensor) -> torch.Tensor:
    """One element of each tensor live at a cut: the runtime must compute them all (no runtime here computes
    part of a convolution or matmul for part of its output), but hands back a few bytes, so consecutive cuts
    differ by the part's computation, not by the size of what they return."""
    return torch.cat([t.reshape(-1)[:1] for t in live])


class MobileM2Block(nn.Module):
    """An eval-mode cascaded :class:`M2Block` on NCHW maps, in delegable ops.

    Taps mark where each M² part ends (norm, Q/K projection, MLP_e, layout changes, scores + softmax, weighted
    sum, DW-conv, SE, MLP_s; the residual ends at the output): :meth:`parts` lists them in execution order and
    :meth:`cut_at` gives the block stopped after one, returning one element of each tensor live there (the whole
    block: of its output), so that every tensor the part computes is computed. Prefix differencing times
    the cuts of a block one after another to split its time into parts on runtimes without a profiler."""

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
            self.pre_scale, self.pre_shift = frozen(pre[0].reshape(1, -1, 1, 1)), frozen(pre[1].reshape(1, -1, 1, 1))
        self.heads = cfg.num_heads
        if att is not None:
            self.window = 0 if att.window == "global" else att.window_size
            self.grid = att.window == "grid"
            self.dim_head = att.dim_head
            # Folded: pre-affine in front. Raw: for zero-padded maps (padding comes after the affine).
            self.q_weight, self.q_bias, self.k_weight, self.k_bias = map(frozen, qk_of(block, pre))
            self.q_weight_raw, self.q_bias_raw, self.k_weight_raw, self.k_bias_raw = map(frozen, qk_of(block))
            self.attn_pre = att.attn_pre
        self.v_weight = None
        if cfg.expand:
            # With attn_pre the pre-affine passes through the attention (its rows sum to one) to MLP_e.
            w, b = conv_of(block.v, pre)
            self.v_weight, self.v_bias = frozen(w), frozen(b)
            self.v_groups = block.v.conv.groups
            if att is not None:
                w, b = conv_of(block.v)
                self.v_weight_raw, self.v_bias_raw = frozen(w), frozen(b)
        fold_local(self, block, act_fn(cfg.act))
        w, b = proj_of(block)
        self.proj_weight, self.proj_bias = frozen(w), frozen(b)
        self._taps: list[str] | None = None  #: parts passed so far in a cut's or a listing's forward
        self.stop: int | None = None  #: a cut: stop at this tap (1 = the first)

    def _tap(self, part: str, *live: torch.Tensor) -> None:
        if self._taps is None:
            return
        self._taps.append(part)
        if len(self._taps) == self.stop:
            raise _Cut(_first_elements(*live))

    def parts(self, x: torch.Tensor) -> list[str]:
        """The parts this block computes on ``x``, in order: the part ending at each tap, then the last part
        (the residual, or MLP_s in a block without skip), which ends at the output."""
        self._taps = []
        try:
            with torch.no_grad():
                self.forward(x)
            return [*self._taps, "residual" if self.cfg.has_skip else "MLP_s"]
        finally:
            self._taps = None

    def cut_at(self, tap: int) -> "MobileM2Block":
        """This block stopped after its ``tap``-th part (1-based; ``len(parts)``: the whole block), sharing its
        weights; it returns one element of each tensor live at that tap."""
        cut = copy.copy(self)
        cut.stop = tap
        return cut

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
        self._tap("attention: Q/K projection", q, k)
        v = x
        if not self.attn_pre and self.v_weight is not None:
            v = self._expand(x, raw)
            self._tap("MLP_e", q, k, v)
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
            self._tap("layout", q, k, v)
            out = torch.softmax(torch.bmm(q, k), dim=-1)
            self._tap("attention: scores + softmax", out, v)
            out = torch.bmm(out, v)
            self._tap("attention: weighted sum", out)
            out = out.transpose(1, 2).reshape(b, heads * dv, hp, wp)
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
            self._tap("layout", q, k, v)
            out = torch.softmax(torch.bmm(q, k), dim=-1)
            self._tap("attention: scores + softmax", out, v)
            out = torch.bmm(out, v)
            self._tap("attention: weighted sum", out)
            out = out.reshape(n1, n2, bh, wh, ww, dv).permute(back)
            out = out.reshape(b, heads * dv, hp, wp)
        if raw:
            out = out[:, :, :h, :w]
        self._tap("layout", out)
        if self.attn_pre and self.v_weight is not None:
            out = self._expand(out, raw)  # the pre-affine of the values is folded into MLP_e
            self._tap("MLP_e", out)
            return out
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
            self._tap("norm", t)
        if raw:
            if self.pre_scale is not None:
                t = t * self.pre_scale.reshape(-1) + self.pre_shift.reshape(-1)
            t = F.pad(t, (0, 0, 0, pad_r, 0, pad_b))
            q = token_linear(t, self.q_weight_raw.flatten(1), self.q_bias_raw)
            k = token_linear(t, self.k_weight_raw.flatten(1), self.k_bias_raw)
        else:
            q = token_linear(t, self.q_weight.flatten(1), self.q_bias)
            k = token_linear(t, self.k_weight.flatten(1), self.k_bias)
        self._tap("attention: Q/K projection", q, k)
        v = t
        if not self.attn_pre and self.v_weight is not None:
            v = self._expand_tokens(t, raw)
            self._tap("MLP_e", q, k, v)
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
            out = self._scores_and_sum(q, k, v)
            out = out.reshape(n1, n2, heads, wh, ww, dv).permute(3, 0, 4, 1, 2, 5).reshape(1, hp, wp, heads * dv)
        else:
            mode = "grid" if self.grid else "contiguous"
            q, k, v = (partition(z, wh, ww, mode) for z in (q, k, v))
            g = q.shape[0]
            q = q.reshape(g, n, heads, d).permute(0, 2, 1, 3).reshape(g * heads, n, d)
            k = k.reshape(g, n, heads, d).permute(0, 2, 3, 1).reshape(g * heads, d, n)
            v = v.reshape(g, n, heads, dv).permute(0, 2, 1, 3).reshape(g * heads, n, dv)
            out = self._scores_and_sum(q, k, v)
            out = out.reshape(g, heads, n, dv).permute(0, 2, 1, 3).reshape(g, n, heads * dv)
            out = unpartition(out, b, hp, wp, wh, ww, mode)
        if raw:
            out = out[:, :h, :w]
        if self.attn_pre and self.v_weight is not None:
            self._tap("layout", out)
            out = self._expand_tokens(out, raw)
            self._tap("MLP_e", out)
        elif bare_values and self.pre_scale is not None:
            out = out * self.pre_scale.reshape(-1) + self.pre_shift.reshape(-1)
        out = out.permute(0, 3, 1, 2)
        self._tap("layout", out)
        return out

    def _scores_and_sum(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q·k) · v on (groups, N, d) operands, tapped after the head split, the scores and the sum."""
        self._tap("layout", q, k, v)
        out = torch.softmax(torch.bmm(q, k), dim=-1)
        self._tap("attention: scores + softmax", out, v)
        out = torch.bmm(out, v)
        self._tap("attention: weighted sum", out)
        return out

    def _expand_tokens(self, t: torch.Tensor, raw: bool = False) -> torch.Tensor:
        w, b = (self.v_weight_raw, self.v_bias_raw) if raw else (self.v_weight, self.v_bias)
        t = token_linear(t, dense_weight(w, self.v_groups), b)
        return self.act(t) if self.act is not None else t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stop is None:
            return self._forward(x)
        self._taps = []
        try:
            return _first_elements(self._forward(x))  # a stop past the last tap: the whole block
        except _Cut as cut:
            return cut.live
        finally:
            self._taps = None

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        shortcut = x
        if self.ln is not None and not (self.ln_tokens and cfg.attention is not None):
            x = self.ln(x)
            self._tap("norm", x)
        if cfg.attention is not None:
            x = self._attend_tokens(x) if self.tokens else self._attend(x)
        else:
            if self.v_weight is not None:
                x = self._expand(x)  # the pre-affine is folded into MLP_e
                self._tap("MLP_e", x)
            elif self.pre_scale is not None:
                x = x * self.pre_scale + self.pre_shift
        return local_and_proj_nchw(self, x, shortcut, self._tap if self._taps is not None else None)


class MobileEMO(nn.Module):
    """An eval-mode :class:`EMO` in delegable NCHW ops; same outputs."""

    def __init__(self, model: EMO, tokens: bool = False) -> None:
        super().__init__()
        self.cfg = model.cfg
        self.in_chans, self.num_classes, self.num_features = model.in_chans, model.num_classes, model.num_features
        fold_stem_and_head(self, model)
        self.blocks, self.stage_ends = staged_blocks(model.stages, lambda b: MobileM2Block(b, tokens))
        self.norm = _ChannelNorm(self.num_features, self.norm_eps)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.stem_weight, self.stem_bias, **self.stem_args)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of stage0 … stage4, NCHW (a down-stream backbone reads them)."""
        return stage_outputs(self.blocks, self.stage_ends, self.forward_stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.forward_stem(x))
        return classify(self, self.norm(x).mean((2, 3), keepdim=True).flatten(1))


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
