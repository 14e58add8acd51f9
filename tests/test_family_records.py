"""The family records (emobench.nn.registry.Family): every family's record is complete and true of its zoo
models — the forms it declares are the forms its models have, its layout names the model's own modules, its
stages are the backbone maps a down-stream model takes, its parts cover a down-stream model whole."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

import emobench
from emobench.nn.forms import FORMULATIONS
from emobench.nn.registry import ALL_FORMS, FAMILIES, BlockOp, ConvOp
from emobench.zoo.catalog import get_entry, list_models

BY_FAMILY: dict[str, list[str]] = defaultdict(list)
for _name in list_models():
    BY_FAMILY[get_entry(_name).family].append(_name)


def test_every_family_has_zoo_models_and_a_complete_record():
    assert set(BY_FAMILY) == set(FAMILIES)
    for family in FAMILIES.values():
        assert family.forms[0] == "reference" and set(family.forms) <= set(ALL_FORMS) == set(FORMULATIONS)
        assert family.description and callable(family.build)
        assert (family.bind is not None) == family.forms_through_backbone == bool(family.parts)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_declared_forms_are_the_forms_its_models_have(family):
    """No model offers a form its family does not declare, and each declared form is offered by some model."""
    record = FAMILIES[family]
    offered: set[str] = set()
    for name in BY_FAMILY[family]:
        model = emobench.create_model(name).eval()
        have = {form for form, f in FORMULATIONS.items() if f.unavailable(model) is None}
        assert have <= set(record.forms), (name, have - set(record.forms))
        offered |= have
    assert offered == set(record.forms)


@pytest.mark.parametrize("family", sorted(f for f in FAMILIES if FAMILIES[f].layout is not None))
def test_a_layout_names_modules_of_the_model_in_forward_order(family):
    name = BY_FAMILY[family][0]
    entry = get_entry(name)
    model = emobench.create_model(name).eval()
    ops = FAMILIES[family].layout(entry.config)
    modules = dict(model.named_modules())
    names = [op.name or "" for op in ops]  # a single block is the model itself ("")
    assert all(n in modules for n in names), [n for n in names if n not in modules]
    assert all(isinstance(op, (ConvOp, BlockOp)) for op in ops)
    called: list[str] = []
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: called.append(n)) for n in dict.fromkeys(names)]
    with torch.no_grad():
        model(torch.randn(1, *entry.input_size))
    for h in hooks:
        h.remove()
    assert called == names


@pytest.mark.parametrize("family", sorted(f for f in FAMILIES if FAMILIES[f].stages is not None))
def test_stages_reach_stride_32_with_the_declared_channels(family):
    """Each stage keeps or halves the map (EMO: five stages, strides 2 … 32; MobileNetV2: its seven block groups
    and the stem, as mmseg indexes them) and outputs the channels it declares."""
    name = BY_FAMILY[family][0]
    entry = get_entry(name)
    model = emobench.create_model(name).eval()
    x = torch.randn(1, *entry.input_size)
    sides = []
    with torch.no_grad():
        for stage, channels in FAMILIES[family].stages(model):
            x = stage(x)
            assert x.shape[1] == channels
            sides.append(x.shape[-1])
    steps = [a // b for a, b in zip([entry.input_size[-1], *sides], sides)]
    assert set(steps) <= {1, 2} and sides[-1] == entry.input_size[-1] // 32


@pytest.mark.parametrize("family", sorted(f for f in FAMILIES if FAMILIES[f].parts))
def test_parts_cover_a_down_stream_model_whole(family):
    for name in BY_FAMILY[family]:
        model = emobench.create_model(name)
        parts = FAMILIES[family].parts
        children = dict(model.named_children())
        assert set(children) <= set(parts), set(children) - set(parts)
        total = sum(p.numel() for p in model.parameters())
        assert sum(p.numel() for c in children.values() for p in c.parameters()) == total
