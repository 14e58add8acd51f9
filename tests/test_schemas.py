"""Machine-readable output: every --format json names a versioned schema, uses snake_case keys with their units
in meta, and CSV has the same keys; the screen keeps the human labels."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import torch
from test_cli import run

KEY = re.compile(r"^[a-z][a-z0-9_]*$")

COMMANDS = {
    "emobench.zoo_list/2": ("zoo", "list", "emo_*"),
    "emobench.zoo_show/2": ("zoo", "show", "emo_tiny"),
    "emobench.rf/2": ("rf", "irmb"),
    "emobench.mpl/1": ("mpl", "-W", "7,14"),
    "emobench.mpl_stages/2": ("mpl", "--model", "emo_tiny"),
    "emobench.modules/1": ("modules",),
    "emobench.table/2": ("table", "modules"),
}


@pytest.mark.parametrize("schema", list(COMMANDS))
def test_json_and_csv_use_keys_units_and_a_schema(capsys, monkeypatch, schema):
    code, out, err = run(capsys, monkeypatch, *COMMANDS[schema], "-f", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["meta"]["schema"] == schema and data["rows"]
    keys = list(data["rows"][0])
    assert all(KEY.match(k) for k in keys), keys
    assert set(data["meta"]["units"]) <= set(keys)  # units are given per key, for keys that exist
    code, out, _ = run(capsys, monkeypatch, *COMMANDS[schema], "-f", "csv")
    assert code == 0 and next(csv.reader(io.StringIO(out))) == keys
    assert len(list(csv.DictReader(io.StringIO(out)))) == len(data["rows"])  # no row lost between the formats


#: sizes as numbers, one key per axis, by hand: emo_1m's zoo file input; emo_tiny's stride-2 stem on 224; an
#: irmb block keeps its 14×14 map and its grid attention reaches all of it (attention ends the unclipped
#: recurrence: null); emo_tiny's stage 3 (its first stage with repeated blocks) at stride 16
SIZES = [
    (("zoo", "list", "emo_1m"), {"input_c": 3, "input_h": 224, "input_w": 224}),
    (("zoo", "show", "emo_tiny"), {"output_h": 112, "output_w": 112}),
    (("rf", "irmb"), {"output_h": 14, "output_w": 14, "rf_h": 14, "rf_w": 14, "rf_unclipped_h": None}),
    (("mpl", "--model", "emo_tiny"), {"map_h": 14, "map_w": 14}),
]


@pytest.mark.parametrize("args, sizes", SIZES, ids=[" ".join(a) for a, _ in SIZES])
def test_sizes_are_numbers_in_json_and_csv(capsys, monkeypatch, args, sizes):
    code, out, err = run(capsys, monkeypatch, *args, "-f", "json")
    assert code == 0, err
    row = json.loads(out)["rows"][0]
    assert {k: row[k] for k in sizes} == sizes
    assert all(type(row[k]) is int for k, v in sizes.items() if v is not None)  # 224, never 224.0 or "224"
    code, out, _ = run(capsys, monkeypatch, *args, "-f", "csv")
    first = next(csv.DictReader(io.StringIO(out)))
    assert {k: first[k] for k in sizes} == {k: "" if v is None else str(v) for k, v in sizes.items()}


def test_the_screen_view_joins_sizes_from_the_numbers():
    """views.display_view: a 3×3 conv on a 9×9 input keeps 9×9 and sees 3×3 (its unclipped recurrence too);
    the numbers become "9x9" columns in place, a missing axis is left out and no size at all is None."""
    import pandas as pd

    from emobench.analysis.rf import conv_unit, receptive_field
    from emobench.report.views import display_view

    view = display_view(receptive_field([conv_unit("c", 3)], (9, 9)).table, "rf")
    assert list(view.columns[3:6]) == ["output", "jump", "rf"]
    assert view.iloc[0][["output", "rf", "rf unclipped"]].tolist() == ["9x9", "3x3", "3x3"]
    layers = pd.DataFrame({"module": ["a", "b", "c"], "output_c": [8, 10, None], "output_h": [4, None, None],
                           "output_w": [5, None, None]})
    assert display_view(layers, "profile_layers")["output"].tolist() == ["8x4x5", "10", None]


def test_screen_keeps_labels_the_keys_replace(capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, "zoo", "show", "emo_tiny", "-f", "md")
    assert code == 0 and "in→mid→out" in out and "norm/act" in out
    code, out, _ = run(capsys, monkeypatch, "zoo", "show", "emo_tiny", "-f", "json")
    rows = json.loads(out)["rows"]
    assert "widths" in rows[0] and "norm_act" in rows[0] and json.loads(out)["meta"]["units"]["params"] == "count"


def test_mpl_units_follow_the_count(capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, "mpl", "-W", "7", "--count", "layers", "-f", "json")
    meta = json.loads(out)["meta"]
    assert code == 0 and meta["count"] == "layers" and meta["units"]["mpl"] == "layers"


def test_zoo_load_and_profile_json(capsys, monkeypatch, tmp_path):
    import emobench

    path = tmp_path / "net.pth"
    model = emobench.create_model("irmb")
    torch.save({"net": model.state_dict()}, path)
    code, out, _ = run(capsys, monkeypatch, "zoo", "load", "irmb", str(path), "-f", "json")
    data = json.loads(out)
    assert code == 0 and data["meta"]["schema"] == "emobench.zoo_load/1"
    # irmb (C = 64, λ = 4: 256 mid channels, 4 heads of 16) by hand, 10 parameter tensors + 3 BN buffers:
    #   LayerNorm 64 + 64; qk 1×1 64→128 + bias 8,192 + 128; v 1×1 64→256 + bias 16,384 + 256;
    #   DW 3×3 on 256 without bias 2,304; its BN 256 + 256 (+ running mean, var, num_batches_tracked);
    #   proj 1×1 256→64 without bias 16,384: 44,288 parameters in all (docs: the iRMB row, C = 64)
    assert data["rows"] == [{"model": "irmb", "checkpoint": str(path), "loaded_from": "net",
                             "tensors": 13, "params": 44_288}]
    code, out, _ = run(capsys, monkeypatch, "profile", "irmb", "--counts-only", "-f", "json")
    data = json.loads(out)
    assert code == 0 and data["meta"]["schema"] == "emobench.profile/3"
    layers = data["profiles"][0]["layers"]
    assert all(KEY.match(k) for k in layers[0])
    assert {"macs", "fvcore_macs", "share"} <= set(layers[0]) and data["meta"]["units"]["layers"]["macs"] == "MACs"
    # depth 1 of the block: its norm keeps the 64×14×14 map, the DW conv runs on the 256 expanded channels (λ = 4),
    # proj shrinks them back to 64; numbers, not text
    by_module = {r["module"]: (r["output_c"], r["output_h"], r["output_w"]) for r in layers}
    assert by_module["norm"] == (64, 14, 14) and by_module["conv_local"] == (256, 14, 14)
    assert by_module["proj"] == (64, 14, 14)
    assert data["meta"]["units"]["layers"]["output_h"] == "pixels"


def test_derived_keys_from_paper_labels():
    from emobench.report.render import column_for, machine_frame
    import pandas as pd

    assert column_for("Params (M) reported") == type(column_for("x"))("params_reported", "Params (M) reported", "M")
    assert column_for("FLOPs (G) Δ %").key == "flops_delta_pct" and column_for("FLOPs (G) Δ %").unit == "%"
    with pytest.raises(ValueError):  # two labels for one key would lose a column
        machine_frame(pd.DataFrame({"a b": [1], "a_b": [2]}))
