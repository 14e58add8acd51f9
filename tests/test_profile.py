"""``emobench profile``: the library result, its formats and bad input."""

from __future__ import annotations

import json

import pytest
from test_cli import assert_user_error, run

from emobench.runs.profile import profile_model


def test_profile_result_carries_units_methods_and_status():
    p = profile_model("emo_1m", depth=2, latency=False)
    assert p.input_shape == (1, 3, 224, 224)
    for name, m in p.metrics.items():
        assert m.unit and m.method and m.status in {"complete", "partial", "unavailable", "skipped"}, name
    assert p.metrics["params"].value == 1_361_168
    assert p.metrics["flops"].value == 2 * p.metrics["macs"].value
    assert p.metrics["param_memory_fp16"].value == 2 * 1_361_168
    assert [c.counter for c in p.counters] == ["emobench", "fvcore", "ptflops"]
    # depth-1 rows cover the model: their parameters and MACs add up to the totals
    top = p.layers[p.layers["depth"] == 1]
    assert top["params"].sum() == 1_361_168
    assert top["MACs"].sum() == p.metrics["macs"].value
    assert (p.layers["depth"] == 2).any()
    assert any("bias additions" in w for w in p.warnings)


def test_blocks_take_their_own_input_and_fused_form_profiles():
    """FFN block (C = 64, λ = 4, 14×14) by hand: LayerNorm 5 per element with its affine part, 4 without
    (docs/counting.md); two 1×1 projections C·4C per position. Fusion folds LN's affine part into MLP_e."""
    positions, c = 14 * 14, 64
    projections = 2 * positions * c * 4 * c
    reference = profile_model("ffn", latency=False, memory=False)
    fused = profile_model("ffn", latency=False, memory=False, fused=True)
    assert reference.input_shape == fused.input_shape == (1, 64, 14, 14) and fused.form == "fused"
    assert reference.metrics["macs"].value == projections + 5 * c * positions
    assert fused.metrics["macs"].value == projections + 4 * c * positions
    assert reference.metrics["params"].value == 2 * c + (c * 4 * c + 4 * c) + (4 * c * c + c)


def test_cli_profile_json_and_table(capsys, monkeypatch, tmp_path):
    code, out, _ = run(capsys, monkeypatch, "profile", "irmb", "mhsa", "-f", "json", "-b", "2")
    assert code == 0
    data = json.loads(out)
    assert data["meta"]["schema"] == "emobench.profile/2" and len(data["profiles"]) == 2
    first = data["profiles"][0]
    assert first["input_shape"] == [2, 64, 14, 14]
    assert first["metrics"]["latency_cpu"]["unit"] == "ms" and first["metrics"]["latency_cpu"]["value"] > 0
    assert {c["counter"] for c in first["counters"]} == {"emobench", "fvcore", "ptflops"}
    code, out, _ = run(capsys, monkeypatch, "profile", "irmb", "--counts-only")
    assert code == 0 and "fvcore" in out and "per layer" in out
    code, out, _ = run(capsys, monkeypatch, "profile", "ffn", "--counts-only", "-f", "csv")
    assert out.splitlines()[0] == "model,metric,value,unit,method,status,note" and "macs[ptflops]" in out
    target = tmp_path / "p.md"
    code, _, _ = run(capsys, monkeypatch, "profile", "ffn", "--counts-only", "-o", str(target))
    assert code == 0 and "MACs by counter" in target.read_text()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["profile", "emo_9m"], "unknown model"),
        (["profile", "emo_1m", "-r", "8"], "smaller than"),
        (["profile", "emo_1m", "-b", "0"], "batch"),
        (["profile", "irmb", "--counts-only", "-o", "/proc/no/such.json"], "cannot write"),
    ],
)
def test_cli_profile_bad_input(capsys, monkeypatch, args, needle):
    code, _, err = run(capsys, monkeypatch, *args)
    assert_user_error(code, err, needle)
