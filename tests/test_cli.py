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


def _console(tmp_path, *args: str, prelude: str = "", pipe_closed: bool = False):
    """``emobench ARGS`` through the console entry point (:func:`emobench.cli.run`) in a fresh process."""
    import os
    import subprocess

    code = f"import sys\n{prelude}\nsys.argv = ['emobench', *{list(args)!r}]\nfrom emobench.cli import run\nrun()\n"
    env = {**os.environ, "EMOBENCH_CACHE": str(tmp_path / "cache"), "EMOBENCH_STORE": str(tmp_path / "s.sqlite")}
    if pipe_closed:  # the reader is gone before the command writes (as `emobench … | head -c 0`)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, cwd=tmp_path)
        proc.stdout.close()
        return proc.wait(timeout=300), "", proc.stderr.read().decode()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_the_console_entry_point_keeps_outputs_exit_codes_and_atexit_handlers(tmp_path):
    """``run`` leaves without Python's module teardown: what it writes is complete, its exit codes are main's,
    atexit handlers still run, a closed pipe is no traceback."""
    out_file = tmp_path / "p.json"
    code, _, err = _console(tmp_path, "profile", "ffn", "--counts-only", "-o", str(out_file))
    assert code == 0, err
    assert json.loads(out_file.read_text())["profiles"][0]["model"] == "ffn"
    code, out, err = _console(tmp_path, "zoo", "list", "-f", "json")
    assert code == 0 and any(row["name"] == "emo_1m" for row in json.loads(out)["rows"])
    code, _, err = _console(tmp_path, "profile", "no_such_model")
    assert_user_error(code, err, "unknown model")
    marker = tmp_path / "atexit-ran"
    code, _, err = _console(tmp_path, "zoo", "list", prelude=f"import atexit, pathlib\n"
                            f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')")
    assert code == 0 and marker.read_text() == "yes", err
    code, _, err = _console(tmp_path, "zoo", "list", "-f", "json", pipe_closed=True)
    assert "Traceback" not in err
