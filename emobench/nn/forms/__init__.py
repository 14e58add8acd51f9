"""Formulations: exact rewrites of one trained network, each shaped for the kernels of some runtime.

A zoo model is built in its **reference** form (official parameters and keys, trainable). Every other
formulation is derived from it for inference and computes the same function to float32 round-off; what differs
is the operator sequence an exporter sees, and so which kernels (or which delegate) run it. ``emobench bench
--form NAME`` measures one; ``--form auto`` takes, per backend, the first formulation of :data:`PREFERENCE`
that the model has and that passes parity. The preference order is backed by ``benchmarks/forms.py``
(figures in docs/benchmarking.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable

from torch import nn

from emobench.errors import EmobenchError
from emobench.nn.registry import family_of


@dataclass(frozen=True)
class Formulation:
    name: str
    description: str
    #: reference model (eval) → the module to run; the input is never modified. Every form but the reference
    #: builds a module with ``forward_stages`` (the stage maps), so it can also run a down-stream model's backbone
    build: Callable[[nn.Module], nn.Module]
    #: None when ``model`` has this formulation, else the reason it has not
    unsupported: Callable[[nn.Module], str | None]

    def unavailable(self, model: nn.Module) -> str | None:
        """Why ``model`` has no such form, or None: the family's record says which forms it offers (a zoo
        model), then the form checks this configuration. A down-stream model takes the form in its EMO
        backbone, neck and heads unchanged."""
        family = family_of(model)
        if self.name == "reference":
            return None
        if family is not None and self.name not in family.forms:
            return f"the {family.name} family offers no {self.name} form (it has {', '.join(family.forms)})"
        if family is not None and family.forms_through_backbone:
            return model.form_unsupported() or self.unsupported(model.backbone_network())
        return self.unsupported(model)

    def apply(self, model: nn.Module) -> nn.Module:
        family = family_of(model)
        if self.name != "reference" and family is not None and family.forms_through_backbone:
            return model.formulated(self.build)
        return self.build(model)


def _lazy(module: str, function: str) -> Callable:
    """``module.function``, imported on first call (each formulation's module loads only when it is used)."""

    def call(model: nn.Module):
        return getattr(import_module(module, __package__), function)(model)

    return call


FORMULATIONS: dict[str, Formulation] = {
    f.name: f
    for f in (
        Formulation("reference", "official parameters and keys, NCHW convs, explicit attention matmuls on tokens "
                    "(trainable; what the counts and checkpoints use)", lambda m: m, lambda m: None),
        Formulation("fused", "NHWC tokens, 1×1 convs as linears, BN/LN-affine folded, SDPA windows "
                    "(eager torch's kernels)", _lazy(".fused", "fuse"), _lazy(".fused", "fused_unsupported")),
        Formulation("official", "the official code's operator sequence: NCHW 1×1 convs, einops-style reshape/"
                    "permute windows, q@kᵀ→softmax→@x, LayerNorm2d by permutes (the comparator)",
                    _lazy(".official", "officialize"), _lazy(".official", "supports_official")),
        Formulation("mobile", "NCHW convs with BN folded, LayerNorm from delegable ops, separate Q/K convs, heads "
                    "folded into 3-D batch matmuls (ExecuTorch's XNNPACK delegate takes it whole)", _lazy(".mobile", "mobilize"),
                    _lazy(".mobile", "mobile_unsupported")),
        Formulation("mobile-tokens", "mobile, with the attention and its LayerNorm on channels-last tokens "
                    "(LiteRT's converter turns them into FULLY_CONNECTED and fewer transposes)", _lazy(".mobile", "mobilize_tokens"),
                    _lazy(".mobile", "mobile_unsupported")),
        Formulation("cpu-ort", "NCHW convs with BN folded; attention operands to batch-matmul layout in one transpose "
                    "each (4 per block), LayerNorm on NHWC tokens, GELU in the order ONNX Runtime fuses",
                    _lazy(".cpu", "cpu_ort"), _lazy(".cpu", "cpu_forms_unsupported")),
        Formulation("cpu-ov", "cpu-ort with LayerNorm and MLP_e on (B, H·W, C) tokens (OpenVINO compiles that "
                    "LayerNorm into one MVN with the layout change absorbed)", _lazy(".cpu", "cpu_ov"), _lazy(".cpu", "cpu_forms_unsupported")),
    )
}

AUTO = "auto"


def form_names() -> list[str]:
    return [AUTO, *FORMULATIONS]


def candidates(form: str, preference: tuple[str, ...], model: nn.Module) -> list[tuple[str, str | None]]:
    """The formulations to try, as (name, reason it is unavailable or None).

    ``form`` = a formulation name gives just that one; ``auto`` gives ``preference`` (the runtime's order,
    :attr:`emobench.runtimes.base.Backend.form_preference`), reference last, always available."""
    if form != AUTO and form not in FORMULATIONS:
        raise EmobenchError(f"unknown form '{form}' (choose {', '.join(form_names())})")
    names = tuple(preference) if form == AUTO else (form,)
    if form == AUTO and "reference" not in names:
        names = (*names, "reference")
    return [(n, FORMULATIONS[n].unavailable(model)) for n in names]


def formulate(model: nn.Module, form: str) -> nn.Module:
    """``model`` (reference form, eval) in formulation ``form``; raises for a form the model does not have."""
    if form not in FORMULATIONS:
        raise EmobenchError(f"unknown form '{form}' (choose {', '.join(FORMULATIONS)})")
    why = FORMULATIONS[form].unavailable(model)
    if why:
        raise EmobenchError(f"form '{form}' is not available: {why}")
    return FORMULATIONS[form].apply(model)
