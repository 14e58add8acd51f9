"""Equality with the official EMO implementation (outputs, state-dict keys and shapes, parameter counts)."""

from __future__ import annotations

import json

import pytest
import torch

import emobench
from emobench.nn.forms import FORMULATIONS, formulate

VARIANTS = ["emo_1m", "emo_2m", "emo_5m", "emo_6m"]
TOL = 1e-4


@pytest.fixture(scope="module", params=["emo_1m", "emo_5m"])
def bundle(request):
    from conftest import reference_file

    return request.param, torch.load(reference_file(f"{request.param}.pt"), weights_only=True)


@pytest.mark.parametrize("fused", [False, True], ids=["reference", "fused"])
def test_outputs_match_official(bundle, fused):
    name, ref = bundle
    model = emobench.create_model(name).eval()
    model.load_state_dict(ref["state_dict"], strict=True)
    if fused:
        model = emobench.fuse(model)
    with torch.no_grad():
        for key, x in ref["inputs"].items():
            stages = model.forward_stages(x)
            assert len(stages) == len(ref["stage_outputs"][key]) == 5
            for i, out in enumerate(stages):
                expected = ref["stage_outputs"][key][f"stage{i}"]
                assert out.shape == expected.shape, (key, i)
                assert (out - expected).abs().max().item() <= TOL, f"{name} {key} stage{i}"
            logits = model.forward_head(stages[-1])
            assert (logits - ref["logits"][key]).abs().max().item() <= TOL, f"{name} {key} logits"
            assert (model(x) - logits).abs().max().item() == 0.0


@pytest.mark.parametrize("name", VARIANTS)
def test_state_dict_keys_and_shapes_are_official(name):
    from conftest import reference_file

    manifest = json.loads(reference_file("official_state_dict_keys.json").read_text())[name]
    state = emobench.create_model(name).state_dict()
    assert list(state) == list(manifest)
    assert {k: list(v.shape) for k, v in state.items()} == manifest


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_counts_are_official(name):
    from conftest import reference_file

    counts = json.loads(reference_file("official_counts.json").read_text())[name]
    model = emobench.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == counts["params"]


def test_checkpoint_file_loads_through_the_public_api(tmp_path):
    """The reference bundle nests the weights under 'state_dict', as many training scripts do."""
    from conftest import reference_file

    path = reference_file("emo_1m.pt")
    model = emobench.create_model("emo_1m", checkpoint=path).eval()
    ref = torch.load(path, weights_only=True)
    with torch.no_grad():
        x = ref["inputs"]["x224_b2"]
        assert (model(x) - ref["logits"]["x224_b2"]).abs().max().item() <= TOL


@pytest.mark.parametrize("form", [f for f in FORMULATIONS if f not in ("reference", "fused")])
def test_every_formulation_matches_official_logits(bundle, form):
    """The formulations that only give logits (official, mobile, …) against the official outputs, every input
    (224, a padded size and a batch), so each one is the same function as the released code."""
    name, ref = bundle
    model = emobench.create_model(name).eval()
    model.load_state_dict(ref["state_dict"], strict=True)
    run = formulate(model, form)
    with torch.no_grad():
        for key, x in ref["inputs"].items():
            assert (run(x) - ref["logits"][key]).abs().max().item() <= TOL, f"{name} {form} {key}"
