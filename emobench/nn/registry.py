"""Model families: a zoo file names a family, whose pydantic config validates the file and whose builder
turns the validated config into a module (timm's config → module → factory, with the variants as data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel
from torch import nn


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


FAMILIES: dict[str, Family] = {}


def register_family(name: str, config: type[BaseModel], description: str, check_input=None, bind=None):
    """Decorator for a builder ``fn(config) -> nn.Module`` of the family ``name``."""

    def wrap(build: Callable[[BaseModel], nn.Module]) -> Callable[[BaseModel], nn.Module]:
        FAMILIES[name] = Family(name, config, build, description, check_input, bind)
        return build

    return wrap
