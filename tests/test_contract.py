"""The family contract over every zoo model (timm's ``test_models.py`` in miniature).

Every model: forward, backward with a gradient on every trainable parameter. Classifiers: ``(1, num_classes)``
logits, ``get_classifier`` / ``reset_classifier(0 | 10)`` / ``forward_head(pre_logits=True)``, and
``forward_head(forward_features(x)) == forward(x)``. Where a fused form is offered: it equals the reference in
eval mode to 1e-5. ``rf``: exact reach units (their centre mask equals the gradient support of the real model),
or a clear refusal for what is not separable, never a fallback.

Inputs are each model's smallest (its stride); ViT and PVT fix their position maps at ``img_size``, so they are
built at a small ``img_size`` (the same architecture on a smaller grid).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import randomize_norms
from torch import nn

import emobench
from emobench.analysis import rf
from emobench.errors import EmobenchError
from emobench.models.build import input_shape
from emobench.nn.forms.fused import has_fused_form
from emobench.zoo.catalog import get_entry

ALL = emobench.list_models()
CLASSIFIERS = {"emo", "mobilenetv2", "vit", "pvt"}
#: position maps are fixed at img_size: the smallest grid these zoo layouts take (patch 16 → 2×2; PVT's
#: spatial reductions 8/4/2 each see a 2×2 map)
SMALL_BUILD = {"vit": {"img_size": 32}, "pvt": {"img_size": 64}}
#: smallest input: the network's stride (EMO's stage-3 and stage-4 windows are then padded, as at 224)
SMALL_INPUT = {"emo": 32, "mobilenetv2": 32, "detector": 32, "segmenter": 32}


def build(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    family = get_entry(name).family
    torch.manual_seed(0)
    model = emobench.create_model(name, **SMALL_BUILD.get(family, {}))
    side = SMALL_INPUT.get(family) or SMALL_BUILD.get(family, {}).get("img_size")
    return model, input_shape(model.zoo_entry, (side, side) if side else None)


def outputs(y) -> tuple[torch.Tensor, ...]:
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


@pytest.mark.parametrize("name", ALL)
def test_forward_and_backward_reach_every_parameter(name):
    model, shape = build(name)
    entry = model.zoo_entry
    # Training mode, batch 2 (BatchNorm needs two values per channel on a 1×1 map); a random weighting of every
    # output so that no parameter's gradient cancels by symmetry. (Eval-mode logits: the head test.)
    model.train()
    out = outputs(model(torch.randn(2, *shape[1:])))
    assert all(torch.isfinite(o).all() for o in out)
    if entry.family in CLASSIFIERS:
        assert out[0].shape == (2, entry.config.num_classes)
    sum((o * torch.randn_like(o)).sum() for o in out).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"no gradient reaches {missing}"
    assert all(torch.isfinite(p.grad).all() for _, p in trainable)


@pytest.mark.parametrize("name", [n for n in ALL if get_entry(n).family in CLASSIFIERS])
def test_classifier_head_methods(name):
    model, shape = build(name)
    model.eval()
    x = torch.randn(shape)
    num_classes, width = model.zoo_entry.config.num_classes, model.num_features
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        assert feats.ndim == 4 and feats.shape[:2] == (1, width)
        assert torch.equal(model.forward_head(feats), logits)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (1, width)
        head = model.get_classifier()
        assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (width, num_classes)
        # the classifier is the last step: logits = head(pre-logits)
        torch.testing.assert_close(head(pre), logits, atol=1e-5, rtol=1e-5)

        model.reset_classifier(0)
        assert isinstance(model.get_classifier(), nn.Identity) and model.num_classes == 0
        assert torch.equal(model.forward_head(feats), pre), "without a classifier the output is the pre-logits"
        model.reset_classifier(10)
        head = model.get_classifier()
        assert (head.in_features, head.out_features) == (width, 10) and model.num_classes == 10
        assert model.forward_head(feats).shape == (1, 10)
    assert all(p.requires_grad for p in head.parameters())


@pytest.mark.parametrize("name", ALL)
def test_fused_form_equals_the_reference(name):
    model, shape = build(name)
    if not has_fused_form(model):
        assert get_entry(name).family not in CLASSIFIERS | {"m2"}, "every zoo network and block has a fused form"
        pytest.skip(f"{get_entry(name).family} offers no fused form")
    model = randomize_norms(model).eval()  # non-trivial norms, so that folding them is exercised
    x = torch.randn(shape)
    with torch.no_grad():
        fused = emobench.fuse(model)
        assert not any(p.requires_grad for p in fused.parameters()), "the fused form is for inference only"
        if not hasattr(model, "forward_features"):  # a single block
            torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-5)
            return
        feats, fused_feats = model.forward_features(x), fused.forward_features(x)
        torch.testing.assert_close(fused_feats, feats, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fused(x), model.forward_head(feats), atol=1e-5, rtol=1e-5)
        assert torch.equal(fused.forward_head(fused_feats), fused(x))
        torch.testing.assert_close(fused.forward_head(fused_feats, pre_logits=True),
                                   model.forward_head(feats, pre_logits=True), atol=1e-5, rtol=1e-5)


def _smooth(model: nn.Module) -> nn.Module:
    """ReLU/ReLU6 → SiLU: a clipped activation zeroes gradients where it saturates, which would hide a real
    dependency; reach is structural (pointwise operators are the identity), so any smooth activation shows it."""
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, (nn.ReLU, nn.ReLU6)):
                setattr(parent, child_name, nn.SiLU())
    return model


def _refused(name: str) -> str | None:
    """Why ``rf`` must refuse ``name``, read from its config: a family without reach units, or attention and
    conv in parallel (their union is not a Kronecker product)."""
    entry = get_entry(name)
    if entry.family not in CLASSIFIERS | {"m2"}:
        return "no units"
    return "not separable" if getattr(entry.config, "cascade", None) == "parallel" else None


def _stride(entry) -> int:
    """The output stride, from the config (hand-derived, not from the analysis)."""
    cfg = entry.config
    return {"emo": 32, "mobilenetv2": 32, "vit": getattr(cfg, "patch_size", 0),
            "pvt": int(np.prod(getattr(cfg, "patch_sizes", [0]))), "m2": getattr(cfg, "stride", 0)}[entry.family]


@pytest.mark.parametrize("name", ALL)
def test_rf_runs_exactly_or_is_refused(name):
    model, shape = build(name)
    entry = model.zoo_entry
    why = _refused(name)
    if why:
        with pytest.raises(EmobenchError, match=why):
            rf.entry_receptive_field(entry, shape[2:])
        return
    table = rf.entry_receptive_field(entry, shape[2:]).table
    rows = list(zip(table["layer"], table["output H"], table["output W"]))
    # Read against the real model: each row is a module of that name (a block: the model itself), the rows
    # come in the order a forward pass calls those modules, and each row's map is that module's output map.
    modules = {entry.name: model} if entry.family == "m2" else dict(model.named_modules())
    assert all(layer in modules for layer, _, _ in rows), [layer for layer, _, _ in rows if layer not in modules]
    called: list[tuple[str, int, int]] = []
    hooks = [modules[layer].register_forward_hook(
        lambda m, i, o, layer=layer: called.append((layer, *o.shape[-2:]))) for layer, _, _ in rows]
    with torch.no_grad():
        model.eval()(torch.randn(shape))
    for h in hooks:
        h.remove()
    assert rows == called
    side = shape[2] // _stride(entry)  # the stride from the config, not the analysis
    assert rows[-1][1:] == (side, side)


#: one model per family, and every block, at a size where a float64 backward is cheap: the reach units' mask
#: equals the gradient support of the real model (pvt_tiny_irmb's parts, SRA and the iRMB, are covered by
#: pvt_tiny, mhsa_sr and deit_tiny_irmb; its own float64 backward takes tens of seconds)
EXACT = [(n, {}) for n in ALL if get_entry(n).family == "m2" and not _refused(n)] + [
    ("emo_tiny", {}), ("mobilenetv2_100", {"width": 0.35}), ("deit_tiny", {"img_size": 32, "depth": 2}),
    ("deit_tiny_irmb", {"img_size": 64, "depth": 2}), ("pvt_tiny", {"img_size": 64, "depths": [1, 1, 1, 1]}),
]


@pytest.mark.parametrize("name, overrides", EXACT, ids=[n for n, _ in EXACT])
def test_reach_units_equal_gradient_support(name, overrides):
    model = _smooth(emobench.create_model(name, **overrides))
    entry = model.zoo_entry
    c, h, w = entry.input_size
    if entry.family in ("emo", "mobilenetv2"):
        h = w = 64
    elif "img_size" in overrides:
        h = w = overrides["img_size"]
    units = rf.units_for(entry)
    last = rf.entry_receptive_field(entry, (h, w)).table.iloc[-1]
    oh, ow = int(last["output H"]), int(last["output W"])
    for pos in {(oh // 2, ow // 2), (0, ow - 1)}:  # the centre, and a corner where padding clips the reach
        exact = rf.reach_mask(units, (h, w), pos)
        assert np.array_equal(exact, rf.gradient_support(model, (1, c, h, w), pos)), pos


def test_spatial_reduction_over_an_indivisible_map_is_refused():
    """PVT's K/V conv (stride r) skips the last n mod r rows: refused, not approximated."""
    entry = get_entry("mhsa_sr")  # sr_ratio 2
    with pytest.raises(EmobenchError, match="not separable"):
        rf.entry_receptive_field(entry, (15, 15))
    assert rf.entry_receptive_field(entry, (16, 16)).first_all_global == "mhsa_sr"


def test_mobilenetv2_receptive_field_by_hand():
    """Stride-2 3×3 stem, then 3×3 depth-wise convs: the Araujo recurrence r += (k − 1)·jump, by hand."""
    result = rf.entry_receptive_field(get_entry("mobilenetv2_100"), (224, 224))
    rows = result.table.set_index("layer")
    r, jump = 3, 2  # stem
    for t, c, n, s in [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]:
        for i in range(n):
            r += 2 * jump
            jump *= s if i == 0 else 1
    assert r == 491 and jump == 32
    assert rows.loc["head_conv", "rf unclipped H"] == rows.loc["head_conv", "rf unclipped W"] == r
    assert rows.loc["head_conv", "jump"] == jump
    assert (rows.loc["head_conv", "output H"], rows.loc["head_conv", "output W"]) == (7, 7)
