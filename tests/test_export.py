"""``torch.export`` works without graph breaks, and no tensor exceeds 6-D (ExecuTorch XNNPACK's limit)."""

from __future__ import annotations

import pytest
import torch

import emobench


def _max_ndim(program) -> int:
    dims = [
        node.meta["val"].ndim
        for node in program.graph.nodes
        if isinstance(node.meta.get("val"), torch.Tensor)
    ]
    return max(dims)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["emo_1m", "emo_2m", "emo_5m", "emo_6m"])
def test_export_every_emo_variant(name):
    model = emobench.create_model(name).eval()
    x = torch.randn(1, 3, 224, 224)
    program = torch.export.export(model, (x,))
    assert _max_ndim(program) <= 6
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), atol=1e-5)


@pytest.mark.parametrize("name", ["emo_1m", "irmb", "irmb_contiguous", "irmb_parallel"])
def test_export_fused_form(name):
    model = emobench.create_model(name, fused=True)
    entry = model.zoo_entry
    # 256 pads the stage-3/4 windows of EMO: the exported padding must be exact too.
    x = torch.randn(1, 3, 256, 256) if entry.family == "emo" else torch.randn(1, *entry.input_size)
    program = torch.export.export(model, (x,))
    assert _max_ndim(program) <= 6
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), atol=1e-5)
