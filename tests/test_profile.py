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
    assert [c.counter for c in p.counters] == ["emobench", "fvcore", "ptflops"]
    # depth-1 rows cover the model: their parameters and MACs add up to the totals
    top = p.layers[p.layers["depth"] == 1]
    assert top["params"].sum() == 1_361_168
    assert top["MACs"].sum() == p.metrics["macs"].value
    assert (p.layers["depth"] == 2).any()
    assert any("bias additions" in w for w in p.warnings)


def test_a_hand_counted_model():
    """A 3×3 conv 3→8 (padding 1, bias) on a 4×4 input, flattened into a linear 128→10, by hand:
    params: conv 8·3·9 + 8 = 224, linear 128·10 + 10 = 1,290: 1,514 (6,056 bytes fp32, 3,028 fp16, 1,514 int8);
    MACs (bias additions not counted): conv 8 outputs · 3·9 taps · 16 positions = 3,456, linear 128·10 = 1,280:
    4,736 MACs, 9,472 FLOPs; per layer: conv 8×4×4, flatten 128 (a vector: no map), linear 10."""
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(128, 10))
    p = profile_model(model, input_size=(3, 4, 4), latency=False, memory=False)
    values = {k: p.metrics[k].value for k in ("params", "param_memory_fp32", "param_memory_fp16", "param_memory_int8",
                                               "macs", "flops")}
    assert values == {"params": 1_514, "param_memory_fp32": 6_056, "param_memory_fp16": 3_028,
                      "param_memory_int8": 1_514, "macs": 4_736, "flops": 9_472}
    layers = p.layers_table()
    assert layers[["module", "output_c", "output_h", "output_w", "params", "macs"]].values.tolist() == [
        ["0", 8, 4, 4, 224, 3_456], ["1", 128, None, None, 0, 0], ["2", 10, None, None, 1_290, 1_280]]


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
    assert data["meta"]["schema"] == "emobench.profile/3" and len(data["profiles"]) == 2
    first = data["profiles"][0]
    assert first["input_shape"] == [2, 64, 14, 14]
    assert first["metrics"]["latency_cpu"]["unit"] == "ms" and first["metrics"]["latency_cpu"]["value"] > 0
    assert {c["counter"] for c in first["counters"]} == {"emobench", "fvcore", "ptflops"}
    code, out, _ = run(capsys, monkeypatch, "profile", "irmb", "--counts-only")
    assert code == 0 and "fvcore" in out and "per layer" in out
    assert "256x14x14" in out  # the screen joins conv_local's output_c/h/w (λ = 4: 256 channels, 14×14 map)
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


def test_crosscheck_counts_of_a_zoo_model_are_reused_and_said_to_be(monkeypatch, tmp_path):
    """fvcore's and ptflops' counts of a zoo model are kept by configuration, input, form, code and versions:
    a second profile reads them (its method says so) and they equal the counted ones; a damaged cache, another
    input or the fused form count afresh; a module given as an object is never cached."""
    from torch import nn

    from emobench.paths import read_cache
    from emobench.runs.profile import CACHED_NOTE, CROSSCHECK_CACHE

    monkeypatch.setenv("EMOBENCH_CACHE", str(tmp_path))

    def cross(p):
        return [(c.counter, c.macs, c.macs_without_handles, c.by_operator, c.by_module) for c in p.counters[1:]]

    first = profile_model("ffn", latency=False, memory=False)
    assert not any(c.method.endswith(CACHED_NOTE) for c in first.counters)
    assert len(read_cache(CROSSCHECK_CACHE)) == 1
    again = profile_model("ffn", latency=False, memory=False)
    assert [c.method for c in again.counters[1:]] == [c.method + CACHED_NOTE for c in first.counters[1:]]
    assert cross(again) == cross(first) and again.layers.equals(first.layers)
    assert not again.counters[0].method.endswith(CACHED_NOTE)  # emobench's own count always runs

    for other in (profile_model("ffn@16", latency=False, memory=False),
                  profile_model("ffn", latency=False, memory=False, fused=True)):
        assert not any(c.method.endswith(CACHED_NOTE) for c in other.counters)
    assert len(read_cache(CROSSCHECK_CACHE)) == 3

    (tmp_path / CROSSCHECK_CACHE).write_text('{"broken": ')
    assert cross(profile_model("ffn", latency=False, memory=False)) == cross(first)

    module = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    for _ in range(2):
        p = profile_model(module, input_size=(3, 8, 8), latency=False, memory=False)
        assert not any(c.method.endswith(CACHED_NOTE) for c in p.counters)
