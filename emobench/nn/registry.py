"""Model families: a zoo file names a family, and one :class:`Family` record holds everything emobench knows of
it (timm's habit: one registry record per family) — its configuration schema and builder, the input rule, the
zoo entries it names, its spatial layout for the exact reach analysis, its backbone stages, the parts of a
down-stream model, and the inference formulations it offers. The contract test runs over every record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from pydantic import BaseModel
from torch import nn

#: every formulation a family can offer (:mod:`emobench.nn.forms` defines them)
ALL_FORMS = ("reference", "fused", "official", "mobile", "mobile-tokens", "cpu-ort", "cpu-ov")


@dataclass(frozen=True)
class ConvOp:
    """A convolution (or patch embedding) in a family's spatial layout."""

    name: str
    stage: str
    kernel: int
    stride: int = 1
    padding: int | None = None  #: None: "same" padding for the kernel and stride
    dilation: int = 1


@dataclass(frozen=True)
class BlockOp:
    """An M² block (its validated :class:`~emobench.nn.m2.M2BlockConfig`) in a family's spatial layout."""

    name: str | None  #: None: the zoo entry's own name (a single block)
    stage: str
    config: Any


@dataclass(frozen=True)
class Family:
    name: str
    config: type[BaseModel]
    build: Callable[[BaseModel], nn.Module]
    description: str
    #: raises InputSizeError for an input shape (B, C, H, W) the configured model cannot take
    check_input: Callable[[BaseModel, tuple[int, ...]], None] | None = None
    #: resolves the zoo entries a config names (a down-stream model's backbone) when the zoo validates it:
    #: ``bind(config, lookup)`` with ``lookup(name, overrides) -> (family, validated config)``
    bind: Callable[[BaseModel, Callable[[str, dict], tuple[str, BaseModel]]], None] | None = None
    #: the spatial operations in order (module names as the model's): the exact receptive-field and path-length
    #: analyses read it; None: those use the empirical method
    layout: Callable[[BaseModel], list[ConvOp | BlockOp]] | None = None
    #: a built network's stages as (module, output channels), stride 2 … 32: what a down-stream model's backbone
    #: takes; None: the family cannot be a backbone
    stages: Callable[[nn.Module], list[tuple[nn.Module, int]]] | None = None
    #: top-level module name → part (backbone, neck, head …) of a down-stream model; empty for a classifier
    parts: Mapping[str, str] = field(default_factory=dict)
    #: the inference formulations the family offers (a configuration may still rule one out, with its reason)
    forms: tuple[str, ...] = ("reference",)
    #: a down-stream family: its forms are its backbone's, taken inside the model (neck and heads unchanged)
    forms_through_backbone: bool = False


FAMILIES: dict[str, Family] = {}


def register_family(name: str, config: type[BaseModel], description: str, **record: Any):
    """Decorator for a builder ``fn(config) -> nn.Module`` of the family ``name``; ``record``: the other
    :class:`Family` fields."""

    def wrap(build: Callable[[BaseModel], nn.Module]) -> Callable[[BaseModel], nn.Module]:
        FAMILIES[name] = Family(name, config, build, description, **record)
        return build

    return wrap


def family_of(model: nn.Module) -> Family | None:
    """The family of a module built from a zoo entry (it carries ``zoo_entry``), else None."""
    entry = getattr(model, "zoo_entry", None)
    return FAMILIES.get(getattr(entry, "family", None))
