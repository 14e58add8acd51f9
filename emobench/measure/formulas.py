"""Operation counts from shapes, shared by emobench's own counter and the handles it adds to fvcore/ptflops.

Units: MACs (one multiply-accumulate = 1); biases are not counted. Normalisation layers follow fvcore's
convention, so that the counters are comparable with the figures papers report: BatchNorm in eval mode
2 per element with an affine part (1 without), in training and for LayerNorm/GroupNorm 5 per element with an
affine part (4 without). Element-wise operations (activations, softmax, additions, pooling means) are not
counted by any of the three counters.
"""

from __future__ import annotations

from math import prod
from typing import Sequence

Shape = Sequence[int]


def conv_macs(weight: Shape, output: Shape, transposed: bool = False, input_: Shape | None = None) -> int:
    """N · C_out · (C_in / groups) · k_h · k_w · H_out · W_out (the weight already holds C_in / groups)."""
    spatial = (input_ if transposed else output)[2:]
    return output[0] * prod(weight) * prod(spatial)


def matmul_macs(a: Shape, b: Shape) -> int:
    """A (…, M, K) @ B (…, K, N): broadcast batch · M · K · N."""
    if len(b) == 1:
        return prod(a)
    if len(a) == 1:
        return prod(b)
    batch = _broadcast(a[:-2], b[:-2])
    return prod(batch) * a[-2] * a[-1] * b[-1]


def sdpa_macs(query: Shape, key: Shape, value: Shape) -> int:
    """softmax(Q Kᵀ) V: batch · L · S · (E + E_v) (the two matrix products; softmax and scaling not counted)."""
    batch = _broadcast(_broadcast(query[:-2], key[:-2]), value[:-2])
    return prod(batch) * query[-2] * key[-2] * (query[-1] + value[-1])


def norm_ops(input_: Shape, affine: bool, kind: str, training: bool = False) -> int:
    """Per-element cost of a normalisation (fvcore's convention, see the module docstring)."""
    if kind == "batch_norm" and not training:
        return prod(input_) * (2 if affine else 1)
    return prod(input_) * (5 if affine else 4)


def _broadcast(a: Shape, b: Shape) -> tuple[int, ...]:
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    return tuple(max(x, y) for x, y in zip(a, b))
