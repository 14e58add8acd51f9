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
    "emobench.zoo_list/1": ("zoo", "list", "emo_*"),
    "emobench.zoo_show/1": ("zoo", "show", "emo_tiny"),
    "emobench.rf/1": ("rf", "irmb"),
    "emobench.mpl/1": ("mpl", "-W", "7,14"),
    "emobench.mpl_stages/1": ("mpl", "--model", "emo_tiny"),
    "emobench.modules/1": ("modules",),
    "emobench.table/1": ("table", "modules"),
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
    assert data["rows"] == [{"model": "irmb", "checkpoint": str(path), "loaded_from": "net",
                             "tensors": len(model.state_dict()), "params": sum(p.numel() for p in model.parameters())}]
    code, out, _ = run(capsys, monkeypatch, "profile", "irmb", "--counts-only", "-f", "json")
    data = json.loads(out)
    assert code == 0 and data["meta"]["schema"] == "emobench.profile/2"
    layers = data["profiles"][0]["layers"]
    assert all(KEY.match(k) for k in layers[0])
    assert {"macs", "fvcore_macs", "share"} <= set(layers[0]) and data["meta"]["units"]["layers"]["macs"] == "MACs"


def test_derived_keys_from_paper_labels():
    from emobench.report.render import column_for, machine_frame
    import pandas as pd

    assert column_for("Params (M) reported") == type(column_for("x"))("params_reported", "Params (M) reported", "M")
    assert column_for("FLOPs (G) Δ %").key == "flops_delta_pct" and column_for("FLOPs (G) Δ %").unit == "%"
    with pytest.raises(ValueError):  # two labels for one key would lose a column
        machine_frame(pd.DataFrame({"a b": [1], "a_b": [2]}))
