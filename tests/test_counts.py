"""MAC counters: official fvcore counts, hand-derived counts, SDPA == explicit matmuls, counter agreement."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import emobench
from emobench.measure.counters import count_all, count_emobench, count_fvcore, count_ptflops
from emobench.measure.memory import cpu_peak_bytes
from emobench.nn.m2 import set_sdpa

VARIANTS = ["emo_1m", "emo_2m", "emo_5m", "emo_6m"]


@pytest.fixture(scope="module")
def official():
    from conftest import reference_file

    return json.loads(reference_file("official_counts.json").read_text())


@pytest.mark.parametrize("name", VARIANTS)
def test_fvcore_counts_equal_the_official_counts(name, official):
    model = emobench.create_model(name).eval()
    assert sum(p.numel() for p in model.parameters()) == official[name]["params"]
    for res in (224, 256, 320, 512):
        result = count_fvcore(model, torch.randn(1, 3, res, res))
        assert result.macs == official[name][f"fvcore_flops_{res}"], (name, res)


def test_mobilenetv2_macs_by_hand_and_linear_in_batch():
    """MobileNetV2 1.0 at 224, layer by layer (convs, eval BatchNorm 2 per element, the classifier; activations,
    residual additions and pooling are element-wise and not MACs, docs/counting.md)."""
    size = 112
    macs = size * size * 32 * 27 + 2 * 32 * size * size  # stem 3×3 s2, 3→32, + BN
    c_in = 32
    for t, c, n, s in [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]:
        for i in range(n):
            mid, out = c_in * t, size // (s if i == 0 else 1)
            if t != 1:
                macs += size * size * (c_in * mid + 2 * mid)  # expansion 1×1 + BN
            macs += out * out * (9 * mid + 2 * mid)  # depth-wise 3×3 + BN
            macs += out * out * (mid * c + 2 * c)  # projection 1×1 + BN
            size, c_in = out, c
    macs += 7 * 7 * (320 * 1280 + 2 * 1280) + 1280 * 1000  # head 1×1 + BN, classifier
    model = emobench.create_model("mobilenetv2_100").eval()
    own, _ = count_emobench(model, torch.randn(1, 3, 224, 224))
    assert own.macs == macs and not own.uncounted
    assert count_fvcore(model, torch.randn(1, 3, 224, 224)).macs == macs
    # every count is per image: a batch of 3 costs exactly three times one
    assert count_emobench(model, torch.randn(3, 3, 224, 224))[0].macs == 3 * macs


def test_emo_macs_are_the_sum_of_its_stages_and_linear_in_batch():
    model = emobench.create_model("emo_1m").eval()
    one, _ = count_emobench(model, torch.randn(1, 3, 224, 224))
    parts = ["stage0", "stage1", "stage2", "stage3", "stage4", "norm", "head"]
    assert one.macs == sum(one.by_module[p] for p in parts)
    assert one.by_module["head"] == 168 * 1000  # the classifier: 168 features × 1000 classes
    assert count_emobench(model, torch.randn(2, 3, 224, 224))[0].macs == 2 * one.macs


def _single(layer: nn.Module, x: torch.Tensor) -> list[int]:
    results, _ = count_all(layer.eval(), x)
    return [r.macs for r in results]


def test_hand_counted_layers():
    x = torch.randn(1, 3, 16, 16)
    # conv 3×3, 3→32, no bias, 16×16 output: 32 · 256 · 27
    assert _single(nn.Conv2d(3, 32, 3, padding=1, bias=False), x) == [221_184] * 3
    # depth-wise 3×3 on 32 channels: 32 · 256 · 9
    assert _single(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), torch.randn(1, 32, 16, 16)) == [73_728] * 3
    # Linear 32→96 on 256 tokens: 256 · 32 · 96
    assert _single(nn.Linear(32, 96, bias=False), torch.randn(1, 256, 32)) == [786_432] * 3


def test_hand_counted_emo_attention_block():
    """EMO-1M stage3.1 at 224 (14×14, C=80, mid 240, 4 heads × 20, grid windows 4 × 49 tokens, DW 5×5):"""
    norm = 5 * 80 * 196  # LayerNorm with affine: 5 per element (fvcore's convention)
    qk = 80 * 160 * 196
    v = 80 * 240 * 196
    dw = 240 * 196 * 25
    bn = 2 * 240 * 196  # eval BatchNorm with affine: 2 per element
    proj = 240 * 80 * 196
    attention = 2 * (4 * 4 * 49 * 49 * 20)  # Q·Kᵀ and A·X, per window and head
    hand = norm + qk + v + dw + bn + proj + attention
    assert hand == 12_920_320  # the figure in the official training log
    model = emobench.create_model("emo_1m").eval()
    x = torch.randn(1, 3, 224, 224)
    own, _ = count_emobench(model, x)
    assert own.by_module["stage3.1"] == hand
    assert count_fvcore(model, x).by_module["stage3.1"] == hand
    block = model.stage3[1]
    feature = torch.randn(1, 80, 14, 14)
    own_b, _ = count_emobench(block, feature)
    pt = count_ptflops(block, feature)
    assert own_b.macs == hand
    assert own_b.bias_adds == 160 * 196 + 240 * 196  # Q/K and V biases, one per output element
    assert pt.macs == hand + own_b.bias_adds  # ptflops counts bias additions too


@pytest.mark.parametrize("name", ["irmb", "irmb_post", "irmb_contiguous", "mhsa", "emo_1m"])
def test_sdpa_and_explicit_matmuls_count_the_same(name):
    model = emobench.create_model(name).eval()
    c, h, w = model.default_input_size
    x = torch.randn(1, c, min(h, 64), min(w, 64))
    explicit, _ = count_all(model, x)
    with torch.no_grad():
        y = model(x)
        fast, _ = count_all(set_sdpa(model, True), x)
        assert torch.allclose(model(x), y, atol=1e-5)
    for a, b in zip(explicit, fast):
        assert a.counter == b.counter and a.macs == b.macs, a.counter
    # …and fvcore and ptflops as shipped report 0 for SDPA, which is what emobench's handles make up for.
    assert fast[1].macs_without_handles < fast[1].macs


def test_uncounted_ops_are_listed():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.linalg.inv(x)

    own, _ = count_emobench(Odd(), torch.randn(2, 4, 4) + 4 * torch.eye(4))
    assert own.status == "partial" and own.uncounted


def test_peak_memory_of_a_linear_chain():
    chain = nn.Sequential(nn.Linear(100, 200), nn.Linear(200, 300), nn.Linear(300, 10))
    # While the second output is computed the first is still alive: 8·200·4 + 8·300·4 bytes.
    assert cpu_peak_bytes(chain, torch.randn(8, 100)) == 8 * 200 * 4 + 8 * 300 * 4


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_peak_memory():  # pragma: no cover - runs only with a GPU
    from emobench.measure.memory import cuda_peak_bytes

    chain = nn.Sequential(nn.Linear(100, 200), nn.Linear(200, 300)).cuda()
    assert cuda_peak_bytes(chain, torch.randn(8, 100, device="cuda")) >= 8 * 200 * 4 + 8 * 300 * 4


@pytest.mark.parametrize("name", ["emo_1m", "emo_5m_parallel", "deit_tiny", "pvt_tiny_irmb", "mobilenetv2_100", "irmb"])
def test_activations_equal_fvcores_activation_count(name):
    """emobench counts the elements convolutions and matrix products output, as fvcore's
    ActivationCountAnalysis does (profile reports emobench's, saving a second jit trace)."""
    from fvcore.nn import ActivationCountAnalysis

    from emobench.measure.counters import quiet_tracing
    from emobench.models.references import resolve

    ref = resolve(name)
    model = ref.build(None)
    x = torch.randn(ref.input_shape(None, 1))
    with torch.no_grad(), quiet_tracing():
        fv = ActivationCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        fv.tracer_warnings("none")
        expected = int(fv.total())
    assert count_emobench(model, x)[0].activations == expected
