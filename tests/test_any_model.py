"""Any model through profile, bench, rf and erf: factories whose counts and receptive fields are derived by
hand, an in-memory module through the Python API, and the timm path where timm imports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from test_cli import run
from torch import nn

import model_factories as factories
from emobench.analysis.erf import effective_receptive_fields
from emobench.analysis.rf import EMPIRICAL_METHOD, EXACT_METHOD, model_receptive_field
from emobench.runs.bench import BenchPlan, run_bench
from emobench.runtimes import backends as B
from emobench.measure.counters import count_all
from emobench.runs.profile import profile_model

FACTORIES = Path(factories.__file__)
FAST = dict(warmup=1, min_time=0.0, min_runs=3, rounds=1)


def attention_macs(dim: int, heads: int, tokens: int) -> int:
    """softmax(Q Kᵀ) V per head: Q Kᵀ is tokens² · (dim/heads) MACs, and so is the product with V."""
    return heads * 2 * tokens * tokens * (dim // heads)


def test_sdpa_is_counted_by_every_counter_and_derived_by_hand():
    """TinyAttention at 32×32, dim 16, 2 heads, 4×4 patches: 8×8 = 64 tokens.
    embed 16·64·(3·4·4) + qkv 64·16·48 + SDPA 2·2·64²·8 + proj 64·16·16 MACs."""
    model = factories.tiny_attention().eval()
    sdpa = attention_macs(16, 2, 64)
    assert sdpa == 2 * 2 * 64 * 64 * 8
    expected = 16 * 64 * 48 + 64 * 16 * 48 + sdpa + 64 * 16 * 16
    (own, fv, pt), _ = count_all(model, torch.randn(1, 3, 32, 32))
    assert own.macs == expected and own.status == "complete"
    assert fv.macs == expected and fv.macs_without_handles == expected - sdpa
    assert fv.handles == ["scaled_dot_product_attention"]
    assert pt.macs - pt.macs_without_handles == sdpa  # ptflops adds bias additions on top; its SDPA is ours


def test_uncounted_operators_are_listed_not_dropped():
    class Spectrum(nn.Module):  # an FFT: arithmetic that no counter has a formula for
        def forward(self, x):
            return torch.fft.rfft2(x).abs().relu_()

    (own, fv, _), _ = count_all(Spectrum(), torch.randn(1, 3, 8, 8))
    assert own.uncounted == ["_fft_r2c"] and own.status == "partial"
    assert fv.uncounted == ["fft_rfft2"] and fv.status == "partial"
    assert "relu_" in own.not_counted_by_convention  # an in-place activation is an activation


def test_profile_an_in_memory_module_and_a_file_factory():
    module = factories.tiny_attention()
    prof = profile_model(module, input_size=(3, 64, 64), latency=False, memory=False)
    tokens = 16 * 16
    assert prof.input_shape == (1, 3, 64, 64) and prof.model == "TinyAttention"
    assert prof.metrics["macs"].value == 16 * tokens * 48 + tokens * 16 * 48 + attention_macs(16, 2, tokens) + tokens * 16 * 16
    assert module.training  # the caller's module is measured in eval mode ...
    by_file = profile_model(f"{FACTORIES}:tiny_attention", latency=False, memory=False)
    assert by_file.input_shape == (1, 3, 32, 32)  # the module's own default_input_size
    assert by_file.metrics["params"].value == sum(p.numel() for p in module.parameters())


def test_empirical_receptive_field_of_three_convs_is_nine():
    """3×3 (rf 3, jump 1), 3×3 stride 2 (rf 3 + 2·1 = 5, jump 2), 3×3 (rf 5 + 2·2 = 9): 9×9 at the centre of a
    33×33 input (17×17 output, centre 8 ↔ input 16, reach 12..20, inside the image)."""
    result = model_receptive_field(f"{FACTORIES}:three_convs@33")
    (row,) = result.table.to_dict(orient="records")
    assert (row["rf H"], row["rf W"], row["output H"], row["output W"]) == (9, 9, 17, 17)
    assert row["method"] == EMPIRICAL_METHOD and row["jump"] is None  # 33 / 17 is no whole stride
    assert row["coverage"] == pytest.approx(81 / 33**2)
    assert not row["centre global"] and not row["all global"]
    relu = model_receptive_field(nn.Sequential(*factories.three_convs(act="relu")), (33, 33))
    assert (relu.table.iloc[0]["rf H"], relu.table.iloc[0]["rf W"]) == (9, 9)  # an in-memory module, ReLU's dead units notwithstanding
    classifier = model_receptive_field(factories.ThreeConvClassifier(), (33, 33)).table  # its feature map, not the logits
    assert list(classifier["layer"]) == ["forward_features"] and classifier.iloc[0]["rf H"] == 9
    assert model_receptive_field("emo_1m").table["method"].eq(EXACT_METHOD).all()  # zoo families keep the exact path


def test_several_outputs_give_one_row_each(capsys, monkeypatch):
    code, out, err = run(capsys, monkeypatch, "rf", f"{FACTORIES}:two_outputs@32", "-f", "json")
    assert code == 0, err
    data = json.loads(out)
    # stride 2 then stride 2: rf 3 at jump 1, then 3 + 2·2 = 7
    assert [(r["layer"], r["output_h"], r["output_w"], r["rf_h"], r["rf_w"], r["jump"]) for r in data["rows"]] == [
        ("0", 16, 16, 3, 3, 2), ("1", 8, 8, 7, 7, 4)]
    assert all(r["rf_unclipped_h"] is None and r["start"] is None for r in data["rows"])  # no recurrence here
    assert data["meta"]["method"] == EMPIRICAL_METHOD


def test_an_output_that_is_no_map_has_no_size_and_json_keeps_whole_numbers():
    """A map and a pooled vector: the map's row has sizes (a 3×3 conv, padding 1: 12×12 out, rf 3×3), the
    vector's row has none (null in JSON, not NaN or ""), and the sizes stay integers beside the null."""
    from emobench.report.render import Format, machine_frame, to_text
    from emobench.report.views import COLUMNS

    class MapAndPooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y, y.mean((2, 3))

    result = model_receptive_field(MapAndPooled(), (12, 12))
    rows = json.loads(to_text(machine_frame(result.table, COLUMNS["rf"])[0], Format.json))["rows"]
    assert [(r["output_h"], r["output_w"], r["rf_h"], r["rf_w"], r["jump"]) for r in rows] == [(12, 12, 3, 3, 1),
                                                                                            (None,) * 5]
    assert all(type(rows[0][k]) is int for k in ("output_h", "output_w", "rf_h", "rf_w", "jump"))
    assert rows[1]["op"] == "not a spatial map (1x4)" and rows[1]["centre_global"] is None


def test_a_dense_zoo_entry_gets_one_rf_row_per_output():
    from emobench.models.references import build_model

    outputs = build_model("ssdlite_emo_1m@128")(torch.randn(1, 3, 128, 128))
    result = model_receptive_field("ssdlite_emo_1m@128")
    assert len(result.table) == len(outputs) > 1
    assert set(result.table["method"]) == {EMPIRICAL_METHOD}
    assert list(zip(result.table["output H"], result.table["output W"])) == [tuple(o.shape[-2:]) for o in outputs]
    levels = len(outputs) // 2  # named as the model names them: every level's class scores, then its boxes
    assert list(result.table["layer"]) == [f"cls_{i}" for i in range(levels)] + [f"reg_{i}" for i in range(levels)]


def test_large_defaults_use_a_smaller_input_and_say_so():
    from emobench.analysis.rf import empirical_size

    assert empirical_size((224, 224)) == ((224, 224), "")
    assert empirical_size((320, 320))[0] == (256, 256) and empirical_size((512, 1024))[0] == (128, 256)
    module = factories.three_convs()
    module.default_input_size = (3, 320, 320)
    result = model_receptive_field(module)
    assert result.input_size == (256, 256) and "instead of the default 320x320" in result.note
    assert (result.table.iloc[0]["rf H"], result.table.iloc[0]["rf W"]) == (9, 9)


def test_erf_per_output():
    images = (torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2))
    results = effective_receptive_fields(factories.two_outputs(), images, "two")
    assert [r.output for r in results] == ["0", "1"] and all(r.images == 2 for r in results)
    # the stride-2 output's centre sees a 3×3 patch; the next one 7×7: its gradient map is wider
    assert (results[0].mean_gradient > 0).sum() <= 9 < (results[1].mean_gradient > 0).sum() <= 49


def test_bench_an_in_memory_module_and_a_file_factory(tmp_path):
    module = factories.three_convs(width=4)
    backends = ["torch"] + (["onnxruntime"] if not B.BACKENDS["onnxruntime"].unavailable() else [])
    plan = BenchPlan([module, f"{FACTORIES}:tiny_attention"], backends, threads=[1], **FAST)
    records = run_bench(plan)
    assert [(r.model, r.backend) for r in records] == [(m, b) for m in ("Sequential", f"{FACTORIES}:tiny_attention")
                                                       for b in backends]
    for r in records:
        assert r.status == "ok", r.error
        assert r.parity_ok and r.form == "reference" and r.resolution in ("224x224", "32x32")


# --- timm, where it imports -----------------------------------------------------------------------------------

def _timm():
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed (pip install 'emobench[timm]'; see the README's timm recipe)")
    try:
        import timm
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"timm does not import here: {type(err).__name__}: {err}")
    return timm


def test_timm_deit_counts_attention_that_fvcore_misses():
    timm = _timm()
    prof = profile_model("timm:deit_tiny_patch16_224", latency=False, memory=False)
    reference = timm.create_model("deit_tiny_patch16_224", pretrained=False)
    assert prof.metrics["params"].value == sum(p.numel() for p in reference.parameters())
    own, fv, _ = prof.counters
    # 12 blocks, 3 heads of 64 channels, 14·14 + 1 tokens
    assert own.macs - fv.macs_without_handles == 12 * attention_macs(192, 3, 197)
    assert fv.macs == own.macs


def test_timm_default_input_size_comes_from_its_config():
    _timm()
    from emobench.models.references import resolve

    assert resolve("timm:edgenext_xx_small").input_shape() == (1, 3, 256, 256)
    assert resolve("timm:mobilenetv3_large_100").input_shape() == (1, 3, 224, 224)
