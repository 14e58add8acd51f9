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


# --- backward (``emobench train-cost``) ---------------------------------------------------------------------
# Conventions, hand-derivable: each gradient of a product is a product of the same size, so a convolution or a
# matrix product costs its forward MACs once per gradient it computes (input, weight); torch's autograd emits the
# matrix products' gradients as ``mm``/``bmm`` (counted by the forward formulas). Attention's backward is the four
# products dV = Pᵀ·dO, dP = dO·Vᵀ, dQ = dS·K, dK = dSᵀ·Q: twice the forward (a fused kernel's recomputation of
# the scores is not counted, as torch's FlopCounterMode does). A normalisation's backward counts twice its
# forward per-element convention when the input gradient is computed (its gradients have the forward's shape and
# arithmetic), plus one per element for each affine gradient. Bias gradients and element-wise backward are
# reductions or element-wise, not counted (as in the forward).

def conv_backward_macs(weight: Shape, grad_output: Shape, input_: Shape, transposed: bool,
                       output_mask: Sequence[bool]) -> int:
    """Input gradient and weight gradient of a convolution: its forward MACs once for each one computed."""
    forward = conv_macs(weight, grad_output, transposed, input_)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def sdpa_backward_macs(query: Shape, key: Shape, value: Shape) -> int:
    """The four products of attention's backward (dV, dP, dQ, dK): twice :func:`sdpa_macs`."""
    return 2 * sdpa_macs(query, key, value)


def norm_backward_ops(input_: Shape, affine: bool, kind: str, output_mask: Sequence[bool], training: bool = True) -> int:
    """A normalisation's backward: 2 × its forward's per-element count for the input gradient, plus one per
    element for each affine gradient (weight, bias) computed."""
    elements = prod(input_)
    grad_input = 2 * norm_ops(input_, affine, kind, training) if output_mask[0] else 0
    return grad_input + elements * sum(bool(m) for m in output_mask[1:3])
