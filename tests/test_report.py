"""``emobench report``: deterministic output, an index that links every file, offline plots, and the committed
reports/ being what the command produces."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emobench.report.build import build_report

REPO_REPORTS = Path(__file__).resolve().parents[1] / "reports"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    store = tmp_path_factory.mktemp("store") / "empty.sqlite"
    a = build_report(tmp_path_factory.mktemp("a"), erf_images=2, store=store)
    b = build_report(tmp_path_factory.mktemp("b"), erf_images=2, store=store)
    return a, b


def test_report_is_deterministic(two_runs):
    a, b = two_runs
    files_a = sorted(p.relative_to(a.folder) for p in a.folder.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b.folder) for p in b.folder.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 20
    for rel in files_a:
        assert (a.folder / rel).read_bytes() == (b.folder / rel).read_bytes(), rel


def test_index_links_every_file_and_plots_open_offline(two_runs):
    report, _ = two_runs
    index = (report.folder / "README.md").read_text()
    for f in report.files:
        rel = f.path.relative_to(report.folder).as_posix()
        assert f"]({rel})" in index and f.path.exists()
    assert "No latency Pareto chart" in index  # the empty store is said, not hidden
    for html in (report.folder / "plots").glob("*.html"):
        text = html.read_text()
        assert 'src="plotly.min.js"' in text and re.search(r"<script[^>]*\ssrc=[\"']https?://", text) is None
    assert (report.folder / "plots" / "plotly.min.js").stat().st_size > 1_000_000
    for ext in ("md", "csv", "tex", "html"):
        assert (report.folder / "tables" / f"imagenet.{ext}").exists()


@pytest.mark.parametrize("rel", ["tables/imagenet.md", "tables/boost.csv", "tables/modules.tex", "tables/downstream.html",
                                 "plots/pareto_macs.html", "plots/pareto_params.html", "plots/mpl_blocks.html"])
def test_committed_reports_are_what_the_command_produces(two_runs, rel):
    committed = REPO_REPORTS / rel
    if not committed.exists():
        pytest.skip("reports/ has not been generated in this checkout")
    report, _ = two_runs
    assert (report.folder / rel).read_text() == committed.read_text()


def test_plot_png_where_an_exporter_exists(tmp_path, monkeypatch):
    import plotly.graph_objects as go

    from emobench.report import plots

    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    monkeypatch.setattr(plots, "png_exporter_problem", lambda: "PNG needs kaleido")
    assert plots.write_figure(fig, tmp_path / "a.html", png=True, shared_js=True, div_id="a")["png_note"] == "PNG needs kaleido"
    assert (tmp_path / "a.html").exists() and not (tmp_path / "a.png").exists()
    assert (tmp_path / "plotly.min.js").exists()
    monkeypatch.undo()
    if plots.png_exporter_problem():
        pytest.skip(plots.png_exporter_problem())
    problem = plots.write_figure(fig, tmp_path / "b.html", png=True)["png_note"]
    if problem:
        pytest.skip(problem)
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_unwritable_out_dir(capsys, monkeypatch, tmp_path):
    from test_cli import assert_user_error, run

    blocker = tmp_path / "file"
    blocker.write_text("keep")
    code, _, err = run(capsys, monkeypatch, "report", "--out-dir", str(blocker / "sub"), "--erf-images", "1")
    assert_user_error(code, err, "cannot write")
    assert blocker.read_text() == "keep"
