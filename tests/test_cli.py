"""The CLI: output formats, and one clear line with exit code 2 for every kind of bad input."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from emobench.cli import main


def run(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["emobench", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err


def test_zoo_list_formats(capsys, monkeypatch, tmp_path):
    code, out, _ = run(capsys, monkeypatch, "zoo", "list")
    assert code == 0 and "emo_5m" in out and "5,108,848" in out
    code, out, _ = run(capsys, monkeypatch, "zoo", "list", "emo_?m", "--format", "json")
    rows = json.loads(out)["rows"]
    assert [r["name"] for r in rows] == ["emo_1m", "emo_2m", "emo_5m", "emo_6m"]
    assert rows[0]["params"] == 1361168
    code, out, _ = run(capsys, monkeypatch, "zoo", "list", "irb", "-f", "csv")
    assert out.splitlines()[0].startswith("name,family,params")
    target = tmp_path / "zoo.md"
    code, out, _ = run(capsys, monkeypatch, "zoo", "list", "-o", str(target))
    assert code == 0 and target.read_text().count("| emo_") >= 4


def test_zoo_show(capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, "zoo", "show", "emo_5m")
    assert code == 0 and "stage3.1" in out and "grid 7x7 x4 pre" in out and "160→640→160" in out
    code, out, _ = run(capsys, monkeypatch, "zoo", "show", "emo_1m", "-r", "192x320", "-f", "json")
    data = json.loads(out)
    assert data["meta"]["input"] == [3, 192, 320]
    assert sum(r["params"] for r in data["rows"]) == 1361168  # rows cover the whole model
    assert (data["rows"][-2]["output_h"], data["rows"][-2]["output_w"]) == (6, 10)  # 192 / 32 x 320 / 32
    assert data["rows"][-1]["output_h"] is None  # the classifier's (1, 1000) logits are no map


def test_zoo_load_checkpoint(capsys, monkeypatch, tmp_path):
    path = tmp_path / "net.pth"
    torch.save({"net_E": __import__("emobench").create_model("irmb").state_dict()}, path)
    code, out, _ = run(capsys, monkeypatch, "zoo", "load", "irmb", str(path))
    assert code == 0 and "net_E" in out


def test_unknown_model(capsys, monkeypatch):
    code, _, err = run(capsys, monkeypatch, "zoo", "show", "emo_5")
    assert_user_error(code, err, "unknown model 'emo_5'", "did you mean")


def test_invalid_zoo_file(capsys, monkeypatch, tmp_path):
    (tmp_path / "broken.toml").write_text('family = "m2"\ninput_size = [8, 7, 7]\n[config]\ndim_in = 8\n')
    code, _, err = run(capsys, monkeypatch, "zoo", "show", "broken", "--zoo", str(tmp_path))
    assert_user_error(code, err, "broken.toml", "config.dim_out")


@pytest.mark.parametrize("resolution", ["16", "0", "big"])
def test_bad_input_size(capsys, monkeypatch, resolution):
    code, _, err = run(capsys, monkeypatch, "zoo", "show", "emo_1m", "-r", resolution)
    assert_user_error(code, err)


def test_checkpoint_that_does_not_fit(capsys, monkeypatch, tmp_path):
    path = tmp_path / "other.pth"
    torch.save(__import__("emobench").create_model("mhsa").state_dict(), path)
    code, _, err = run(capsys, monkeypatch, "zoo", "load", "irmb", str(path))
    assert_user_error(code, err, "does not fit", "missing", "mis-shaped")


def test_unwritable_output_and_bad_format(capsys, monkeypatch, tmp_path):
    keep = tmp_path / "keep.csv"
    keep.write_text("precious")
    code, _, err = run(capsys, monkeypatch, "zoo", "list", "-o", str(tmp_path / "no" / "such" / "dir.csv"))
    assert_user_error(code, err, "cannot write")
    code, _, err = run(capsys, monkeypatch, "zoo", "list", "-f", "xml")
    assert_user_error(code, err, "unknown format 'xml'")
    assert keep.read_text() == "precious"


def test_usage_errors_exit_2(capsys, monkeypatch):
    code, _, err = run(capsys, monkeypatch, "zoo", "frobnicate")
    assert code == 2 and "Traceback" not in err
