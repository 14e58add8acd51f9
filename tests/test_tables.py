"""Comparison tables: every reported cell traces to a data file with a source; every format renders."""

from __future__ import annotations

import json
import re

import pytest
from test_cli import assert_user_error, run

from emobench.errors import ZooError
from emobench.zoo.papers import get_table, list_tables, load_table
from emobench.report.tables import build_table, to_html, to_latex


@pytest.mark.parametrize("name", sorted(list_tables()))
def test_every_reported_row_has_a_source(name):
    table = get_table(name)
    assert table.rows
    for i, row in enumerate(table.rows):
        assert table.source_of(i).strip(), row.model
        assert set(row.values) <= set(table.columns)


def test_measured_emo_equals_official_counts():
    from conftest import reference_file

    official = json.loads(reference_file("official_counts.json").read_text())
    df, meta = build_table("imagenet")
    rows = df.set_index("model")
    for name, zoo in [("EMO-1M", "emo_1m"), ("EMO-2M", "emo_2m"), ("EMO-5M", "emo_5m"), ("EMO-6M", "emo_6m")]:
        assert rows.loc[name, "Params (M) measured"] * 1e6 == pytest.approx(official[zoo]["params"], abs=0.5)
        assert rows.loc[name, "FLOPs (M) measured"] * 1e6 == pytest.approx(official[zoo]["fvcore_flops_224"], abs=0.5)
    # the README truncates: 2.3775M is printed 2.3M; the table says so instead of hiding a 3.4 % gap
    assert "2.3775M truncated, not rounded (2.4M)" in rows.loc["EMO-2M", "note"]
    assert rows.loc["EdgeNeXt-XXS", "note"].startswith("reported only")
    assert meta["sources"]


@pytest.mark.parametrize("name", ["imagenet", "boost", "modules", "downstream", "speed"])
@pytest.mark.parametrize("fmt", ["table", "md", "csv", "json", "latex", "html"])
def test_every_table_renders_in_every_format(name, fmt, capsys, monkeypatch, tmp_path):
    code, out, err = run(capsys, monkeypatch, "table", name, "-f", fmt, "--store", str(tmp_path / "s.sqlite"))
    assert code == 0, err
    assert out.strip()
    if fmt == "json":
        assert json.loads(out)["rows"]
    if fmt == "latex":
        assert "\\toprule" in out and "\\bottomrule" in out
    if fmt == "html":
        assert out.startswith('<table class="emobench">') and "</table>" in out


def test_latex_and_html_escape():
    import pandas as pd

    df = pd.DataFrame({"a_b": ["x & y", "50%"], "n": [1.5, None]})
    tex = to_latex(df)
    assert r"a\_b" in tex and r"x \& y" in tex and r"50\%" in tex and "–" in tex
    assert "x &amp; y" in to_html(df)


def test_data_file_without_source_is_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\ntitle = "t"\ncolumns = { top1 = "Top-1" }\n[[rows]]\nmodel = "X"\ntop1 = 1.0\n')
    with pytest.raises(ZooError, match="no source"):
        load_table(path)
    path.write_text('name = "bad"\ntitle = "t"\nsource = "s"\ncolumns = { top1 = "Top-1" }\n[[rows]]\nmodel = "X"\ntop1 = "high"\n')
    with pytest.raises(ZooError, match="must be a number"):
        load_table(path)


def test_cli_table_bad_input(capsys, monkeypatch):
    code, _, err = run(capsys, monkeypatch, "table", "cifar")
    assert_user_error(code, err, "unknown table 'cifar'")
    code, _, err = run(capsys, monkeypatch, "table", "boost", "-f", "docx")
    assert_user_error(code, err, "unknown format")


def test_png_export_where_an_exporter_exists(tmp_path):
    from emobench.analysis.mpl import mpl_table
    from emobench.report.plots import mpl_figure, png_exporter_problem, write_figure

    problem = png_exporter_problem()
    if problem:
        pytest.skip(problem)
    files = write_figure(mpl_figure(mpl_table(["mhsa"], [7, 14])), tmp_path / "m.html", png=True)
    if files["png"] is None:
        pytest.skip(files["png_note"])
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timm_peers_are_measured_when_timm_is_installed(monkeypatch):
    """timm cannot be installed beside the CPU torch here; a stand-in module checks the code path."""
    import sys
    import types

    import torch

    from emobench.zoo.papers import get_table
    from emobench.report.tables import reported_vs_measured

    made = []

    def create_model(name, pretrained=False):
        assert pretrained is False  # never downloads
        made.append(name)
        return torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)  # 216 params, 216 MACs per pixel

    stand_in = types.SimpleNamespace(create_model=create_model, is_model=lambda name: True, list_models=lambda *a: [])
    monkeypatch.setitem(sys.modules, "timm", stand_in)
    df = reported_vs_measured(get_table("speed"), use_timm=True).set_index("model")
    assert "edgenext_xx_small" in made
    assert df.loc["EdgeNeXt-XXS", "measured by"] == "timm:edgenext_xx_small"
    assert df.loc["EdgeNeXt-XXS", "Params (M) measured"] == pytest.approx(216 / 1e6)
    assert df.loc["EdgeNeXt-XXS", "FLOPs (M) measured"] == pytest.approx(216 * 224 * 224 / 1e6)
    from emobench.report.tables import comparison_frame

    typed = comparison_frame(get_table("speed"), use_timm=True).set_index("model")
    assert typed.loc["EdgeNeXt-XXS", "timm_name"] == "edgenext_xx_small" and typed.loc["EdgeNeXt-XXS", "measured_by"] == "timm"
    assert typed["zoo_name"].isna().loc["EdgeNeXt-XXS"]
    without = reported_vs_measured(get_table("speed"), use_timm=False).set_index("model")
    assert "install timm" in without.loc["EdgeNeXt-XXS", "note"]


def test_cli_data_file_without_source(capsys, monkeypatch, tmp_path):
    (tmp_path / "mine.toml").write_text('name = "mine"\ntitle = "t"\ncolumns = { top1 = "Top-1" }\n[[rows]]\nmodel = "X"\ntop1 = 1.0\n')
    code, _, err = run(capsys, monkeypatch, "table", "mine", "--papers", str(tmp_path))
    assert_user_error(code, err, "mine.toml", "no source")


def test_typed_columns_carry_the_numbers_and_the_zoo_name():
    """The typed table has stable snake_case columns, numbers as numbers and the zoo model as its own column;
    the labelled table is derived from it (its "measured by" is never parsed back)."""
    from emobench.report.tables import comparison_table

    table = comparison_table("imagenet")
    data = table.data.set_index("model")
    for col in ("zoo_name", "timm_name", "measured_by", "params_m_reported", "params_m_measured", "params_m_delta_pct",
                "flops_m_measured", "top1_reported", "note", "source"):
        assert col in data.columns
    for col in ("params_m_measured", "params_m_delta_pct", "top1_reported"):
        assert data[col].dtype.kind == "f", col
    assert data.loc["EMO-1M", "zoo_name"] == "emo_1m" and data.loc["EMO-1M", "measured_by"] == "zoo"
    assert data.loc["EMO-1M", "params_m_measured"] * 1e6 == pytest.approx(1_361_168)  # official release's count
    assert data.loc["EMO-1M", "params_m_delta_pct"] == pytest.approx(100 * (1.361168 - 1.3) / 1.3)
    assert data["zoo_name"].isna().sum() == data["measured_by"].isna().sum()  # reported-only rows have no zoo model
    shown = table.display().set_index("model")
    assert shown.loc["EMO-1M", "measured by"] == "zoo:emo_1m" and "zoo_name" not in shown.columns
    # reported-only tables keep the typed columns (a script can rely on them); the screen drops the empty ones
    downstream = comparison_table("downstream")
    assert {"zoo_name", "measured_by"} <= set(downstream.data.columns)


def test_markdown_moves_long_text_to_footnotes():
    import pandas as pd

    from emobench.report.tables import to_markdown

    long_a, long_b = "a source that is far too long for a table cell", "another long source text | with a pipe"
    df = pd.DataFrame({"model": ["A", "B", "C"], "x": [1.23456, None, 1234567.0], "note": ["", "short", long_a],
                       "source": [long_a, long_b, "tiny"]})
    md = to_markdown(df, "T")
    lines = md.splitlines()
    assert lines[0] == "**T**"
    assert lines[4] == "| A | 1.235 |  | [^1] |"
    assert lines[5] == "| B | – | short | [^2] |"
    assert lines[6] == "| C | 1.235e+06 | [^1] | tiny |"  # the same text is one footnote
    assert lines[8:] == [f"[^1]: {long_a}", "[^2]: another long source text \\| with a pipe"]
    assert lines[3] == "| --- | ---: | --- | --- |"


def test_committed_markdown_tables_keep_every_source_as_a_footnote():
    """Nothing lost: each row's source is in the committed Markdown (as a footnote), and rows stay narrow."""
    from pathlib import Path

    reports = Path(__file__).resolve().parents[1] / "reports" / "tables"
    if not reports.exists():
        pytest.skip("reports/ has not been generated in this checkout")
    for name in ("imagenet", "boost", "downstream", "speed"):
        text = (reports / f"{name}.md").read_text()
        for source in set(get_table(name).sources):
            assert source.replace("|", "\\|") in text, (name, source)
        refs = set(re.findall(r"\[\^(\d+)\](?!:)", text))
        defined = set(re.findall(r"^\[\^(\d+)\]:", text, re.M))
        assert refs == defined and refs
        rows = [line for line in text.splitlines() if line.startswith("|")][2:]  # below the header and rule
        cells = [cell.strip() for line in rows for cell in line.strip("|").split(" | ")]
        # headers wrap on a code host, long cell text does not: notes and sources longer than to_markdown's width
        # are footnotes, other cells are numbers and names (the down-stream table is wide by its many metric
        # columns, not by long cells)
        assert max(len(cell) for cell in cells) <= 32, max(cells, key=len)


def test_measured_speed_section_pairs_emo_with_its_peers(tmp_path, capsys, monkeypatch):
    """Ratios from the stored records of one machine; the pairs come from zoo/papers/speed.toml."""
    from test_cli import run

    from emobench.results.record import BenchRecord
    from emobench.zoo.papers import get_table
    from emobench.results.store import ResultStore
    from emobench.report.tables import measure_command, measured_speed_frame

    table = get_table("speed")
    assert table.pairs and table.pairs[0].emo == "emo_1m" and "timm:edgenext_xx_small@256" in table.pairs[0].peers
    store = tmp_path / "s.sqlite"
    empty = measured_speed_frame(table, store)
    assert empty.empty and "timm:edgenext_xx_small@256" in measure_command(table)

    def record(model, ms, machine="m", resolution="224x224", backend="torch"):
        return BenchRecord(model=model, backend=backend, form="reference", form_requested="auto", batch=1, threads=2,
                           resolution=resolution, dtype="fp32", status="ok", median_ms=ms, iqr_ms=0.01 * ms,
                           round_spread=0.02, created=1.0, machine=machine)

    with ResultStore(store) as db:
        db.add(record("emo_1m", 2.0))
        db.add(record("timm:edgenext_xx_small@256", 4.0, resolution="256x256"))
        db.add(record("emo_1m", 3.0, backend="onnxruntime"))
        db.add(record("timm:edgenext_xx_small@256", 2.98, resolution="256x256", backend="onnxruntime"))
        db.add(record("timm:mobilevitv2_050@256", 1.0, machine="elsewhere"))  # another machine: no pair
    df = measured_speed_frame(table, store)
    assert list(zip(df["backend"], df["peer"])) == [("onnxruntime", "timm:edgenext_xx_small@256"),
                                                    ("torch", "timm:edgenext_xx_small@256")]
    torch_row = df.set_index("backend").loc["torch"]
    assert torch_row["emo_over_peer"] == 0.5 and torch_row["verdict"] == "EMO faster"
    assert torch_row["emo_input"] == "224x224" and torch_row["peer_input"] == "256x256"
    # 3.0 / 2.98 is inside 1 ± 0.02, the larger of the relative IQR (0.01) and the round spread (0.02)
    assert df.set_index("backend").loc["onnxruntime", "verdict"] == "same within noise"
    code, out, err = run(capsys, monkeypatch, "table", "speed", "--store", str(store), "-f", "json")
    assert code == 0, err
    assert [r["emo_over_peer"] for r in json.loads(out)["meta"]["measured_speed"]["rows"]] == pytest.approx([3.0 / 2.98, 0.5])
    code, out, _ = run(capsys, monkeypatch, "table", "speed", "--store", str(store), "-f", "md")
    assert "Measured here: EMO vs its paired peers" in out and "EMO faster" in out
