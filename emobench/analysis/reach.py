"""Exact reach: which input positions can affect which output positions.

Every spatial operator of an M² network is separable over the two axes (square kernels, rectangular window
partitions, global attention), so its 2-D dependency relation is the Kronecker product of two per-axis boolean
matrices D (outputs × inputs). Residual connections are unions with the identity; every per-axis relation used
here is reflexive (a same-padded kernel contains its centre tap, a window contains its own token), so those
unions stay Kronecker products and the whole analysis runs per axis, exactly. The parallel arrangement
(attention ∪ conv) is not separable and is refused rather than approximated.

Pointwise operators (1×1 convs, BatchNorm, channel LayerNorm, activations, MLPs) are the identity here. SE's
global pool makes every output depend on every input; papers leave it out, and so does emobench unless asked
(``se_as_global``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from emobench.errors import EmobenchError
from emobench.nn.layers import same_padding
from emobench.nn.m2 import M2BlockConfig

Relation = np.ndarray  # bool, (n_out, n_in)


def compose(a: Relation, b: Relation) -> Relation:
    """Apply ``b`` then ``a``: (a ∘ b)[o, i] = ∃ m: a[o, m] ∧ b[m, i]. Float matmul is exact for these sizes."""
    return (a.astype(np.float32) @ b.astype(np.float32)) > 0


def identity(n: int) -> Relation:
    return np.eye(n, dtype=bool)


def conv_out(n: int, kernel: int, stride: int = 1, dilation: int = 1, padding: int = 0) -> int:
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv(n: int, kernel: int, stride: int = 1, dilation: int = 1, padding: int | None = None) -> Relation:
    """Conv/pool along one axis: output o reads inputs o·s − p + d·t, t ∈ [0, k), inside the map."""
    if padding is None:
        padding = same_padding(kernel, stride, dilation)
    n_out = conv_out(n, kernel, stride, dilation, padding)
    if n_out < 1:
        raise EmobenchError(f"a {kernel}-tap conv with stride {stride} cannot take a map of {n}")
    d = np.zeros((n_out, n), dtype=bool)
    for o in range(n_out):
        for t in range(kernel):
            i = o * stride - padding + dilation * t
            if 0 <= i < n:
                d[o, i] = True
    return d


def full(n_out: int, n_in: int) -> Relation:
    return np.ones((n_out, n_in), dtype=bool)


def window(n: int, size: int, mode: str) -> Relation:
    """Window attention along one axis, zero-padded on the right to a multiple of ``size`` (padded tokens depend
    on no input, so they add nothing). ``grid``: the official dilated partition, token i in group i mod n_win;
    ``contiguous``: group i // size; ``shifted``: contiguous after a cyclic shift by size // 2 (Swin's SW-MSA
    without a mask); ``global``: one group."""
    if mode == "global":
        return full(n, n)
    n_win = -(-n // size)
    idx = np.arange(n)
    if mode == "grid":
        group = idx % n_win
    elif mode == "shifted":  # cyclic roll by -size//2 over the padded length, then contiguous windows
        group = ((idx - size // 2) % (n_win * size)) // size
    else:
        group = idx // size
    return group[:, None] == group[None, :]


def union_with_identity(d: Relation) -> Relation:
    if d.shape[0] != d.shape[1]:
        raise ValueError("a residual needs equal input and output sizes")
    return d | identity(d.shape[0])


def is_reflexive(d: Relation) -> bool:
    return d.shape[0] == d.shape[1] and bool(np.diagonal(d).all())


@dataclass(frozen=True)
class BlockOps:
    """One M² block as per-axis operators: the attention (or None), then the local conv (or None)."""

    cfg: M2BlockConfig
    se_as_global: bool = False

    def __post_init__(self) -> None:
        if self.cfg.cascade == "parallel":
            raise EmobenchError(
                "reach analysis covers cascaded blocks; attention ∪ conv in parallel is not separable per axis"
            )

    def attention(self, n: int) -> Relation | None:
        att = self.cfg.attention
        if att is None:
            return None
        if att.sr_ratio > 1 and n % att.sr_ratio:
            # K/V come from a stride-r conv that skips the last n mod r rows/columns; those inputs reach an output
            # only through its own query, so the 2-D relation ({o} ∪ R×R) is no Kronecker product.
            raise EmobenchError(f"spatial-reduction attention (ratio {att.sr_ratio}) over a map of {n} drops the "
                                f"last {n % att.sr_ratio} rows/columns from its keys: not separable per axis "
                                f"(use a map divisible by {att.sr_ratio})")
        return window(n, att.window_size, att.window)

    def local(self, n: int) -> Relation | None:
        cfg = self.cfg
        if cfg.dw_kernel is None:
            return None
        k = conv(n, cfg.dw_kernel, cfg.stride, cfg.dw_dilation)
        if cfg.has_skip and cfg.local_skip:
            k = union_with_identity(k)
        return k

    def layers(self, n: int) -> list[Relation]:
        """The block's spatial operators in order (attention, local conv), SE as a global one if asked."""
        ops = [op for op in (self.attention(n), self.local(n)) if op is not None]
        if self.cfg.se_ratio > 0 and self.se_as_global:
            m = ops[-1].shape[0] if ops else n
            ops.append(full(m, m))
        return ops

    def relation(self, n: int) -> Relation:
        """The whole block along one axis: residual ∪ (local ∘ attention)."""
        d = identity(n)
        for op in self.layers(n):
            d = compose(op, d)
        if self.cfg.has_skip:
            if not is_reflexive(d):
                raise EmobenchError("a residual around a non-reflexive operator is not separable per axis")
            d = union_with_identity(d)
        return d


def distances(step: Callable[[int], Relation], n: int) -> np.ndarray:
    """Shortest number of steps from input i to output o along one axis, for a homogeneous stack of the
    reflexive per-axis relation ``step(n)``; ``inf`` where the stack never connects (a fixed point is reached)."""
    d = step(n)
    if not is_reflexive(d):
        raise EmobenchError("path lengths need a reflexive, size-preserving relation")
    dist = np.full((n, n), np.inf)
    reach = identity(n)
    dist[reach] = 0
    for layer in range(1, n + 2):  # a reflexive relation on n positions saturates within n steps
        nxt = compose(d, reach)
        if np.array_equal(nxt, reach):
            break
        dist[nxt & ~reach] = layer
        reach = nxt
        if reach.all():
            break
    return dist


def path_lengths(dist_rows: np.ndarray, dist_cols: np.ndarray) -> tuple[float, float]:
    """(maximum, mean) 2-D path length from per-axis distances: a 2-D pair is reached when both axes are,
    so d = max(d_row, d_col); row and column pairs are independent and uniform over all pairs."""
    mpl = float(max(dist_rows.max(), dist_cols.max()))
    if np.isinf(mpl):
        return mpl, float("inf")
    values = np.union1d(np.unique(dist_rows), np.unique(dist_cols))
    cdf_r = np.array([(dist_rows <= v).mean() for v in values])
    cdf_c = np.array([(dist_cols <= v).mean() for v in values])
    joint = cdf_r * cdf_c  # P(max <= v)
    pmf = np.diff(np.concatenate([[0.0], joint]))
    return mpl, float((values * pmf).sum())
