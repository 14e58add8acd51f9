"""``emobench report``: deterministic output, an index that links every file, offline plots, and the committed
reports/ being what the command produces."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emobench.report.build import build_report

REPO_REPORTS = Path(__file__).resolve().parents[1] / "reports"


def breakdown_record():
    """An OpenVINO record of irmb with a profiler breakdown (operators as emobench counts them, 0.01 ms each)."""
    import torch

    from emobench.analysis.breakdown import OpTime, counted_ops, summarise
    from emobench.models.build import create_model
    from emobench.results.record import BenchRecord

    model, x = create_model("irmb").eval(), torch.randn(1, 64, 14, 14)
    ops = [OpTime(o.name, o.op, o.scope, 0.01) for o in counted_ops(model, x)]
    result = summarise(ops, model, x, source="synthetic profiler", headline_ms=0.01 * len(ops) * 1.05)
    return BenchRecord(model="irmb", backend="openvino", form="reference", batch=1, threads=1, resolution="14x14",
                       dtype="fp32", status="ok", median_ms=result["headline_ms"], machine="box", created=1.0,
                       uuid="breakdown", breakdown={"profiler": result})


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from emobench.results.store import ResultStore

    store = tmp_path_factory.mktemp("store") / "no-torch.sqlite"
    with ResultStore(store) as db:  # no eager torch record (no latency chart), one breakdown (its chart), a sweep
        db.add(breakdown_record())
        spec = {"base": "emo_tiny", "axes": {"depths[2]": [1, 2]}, "measure": {"backends": ["torch"]}}
        db.add_sweep_point({"sweep": "tiny", "point": "__spec__", "seq": -1, "status": "spec",
                            "values_json": {"digest": "d", "spec": spec}})
        for seq, (depth, params, macs) in enumerate(((1, 100, 1000), (2, 120, 1500))):
            db.add_sweep_point({"sweep": "tiny", "point": f"p{seq}", "seq": seq, "status": "ok", "params": params,
                                "macs": macs, "activations": 10, "rf": 64, "first_global": "stage4.0",
                                "values_json": {"depths[2]": depth}, "reference": f"emo_tiny,depths=[1, 1, {depth}, 2]",
                                "measured": {"torch": {"median_ms": 1.0 + seq}} if seq else None})
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
    chart = (report.folder / "plots" / "breakdown_parts.html").read_text()
    assert "plots/breakdown_parts.html" in index and "MLP_e" in chart and "local DW-conv" in chart
    for html in (report.folder / "plots").glob("*.html"):
        text = html.read_text()
        assert 'src="plotly.min.js"' in text and re.search(r"<script[^>]*\ssrc=[\"']https?://", text) is None
    assert (report.folder / "plots" / "plotly.min.js").stat().st_size > 1_000_000
    for ext in ("md", "csv", "tex", "html"):
        assert (report.folder / "tables" / f"imagenet.{ext}").exists()
    # the stored sweep: every point in a table, its chart with the front and the measured point
    sweep = (report.folder / "tables" / "sweep_tiny.csv").read_text().splitlines()
    assert len(sweep) == 3 and sweep[0].startswith("point,depths[2],status,params")
    assert "plots/sweep_tiny.html" in index and "Pareto front" in (report.folder / "plots" / "sweep_tiny.html").read_text()


#: the committed files that do not depend on the results store or the ERF image count
COMMITTED = ["tables/imagenet.md", "tables/imagenet.csv", "tables/boost.csv", "tables/modules.tex",
             "tables/downstream.html", "tables/downstream.csv", "plots/pareto_macs.html", "plots/pareto_params.html",
             "plots/mpl_blocks.html"]


@pytest.mark.parametrize("rel", COMMITTED)
def test_committed_reports_are_what_the_command_produces(two_runs, rel):
    """reports/ is committed: a file missing from it is a failure (regenerate with `emobench report`), never a skip."""
    committed = REPO_REPORTS / rel
    assert committed.is_file(), f"{committed} is missing: run `emobench report` and commit reports/"
    report, _ = two_runs
    assert (report.folder / rel).read_text() == committed.read_text(), f"{rel} is stale: run `emobench report`"


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


def test_latency_joins_on_the_typed_zoo_name():
    """The latency chart pairs table rows with stored records by the ``zoo_name`` column, not by a label."""
    import pandas as pd

    from emobench.report.build import _imagenet_points, _latency_by_model

    typed = pd.DataFrame({"model": ["EMO-1M", "Peer", "EMO-5M"], "zoo_name": ["emo_1m", None, "emo_5m"],
                          "measured_by": ["zoo", None, "zoo"], "top1_reported": [71.5, 70.0, 78.4],
                          "params_m_reported": [1.3, 2.0, 5.1], "params_m_measured": [1.361168, None, 5.108848],
                          "flops_m_reported": [261, 300, 903], "flops_m_measured": [260.8, None, 902.6]})
    records = pd.DataFrame({"model": ["emo_1m", "irmb"], "median_ms": [3.5, 1.0]})
    assert _latency_by_model(records, typed).to_dict("records") == [{"model": "EMO-1M", "latency_ms": 3.5}]
    points = _imagenet_points(typed).set_index("model")
    assert points.loc["EMO-1M", "params_m"] == 1.361168 and points.loc["Peer", "params_m"] == 2.0
    assert points["measured"].tolist() == [True, False, True] and points.loc["Peer", "macs_m"] == 300


def test_index_embeds_static_images(tmp_path):
    from emobench.report.build import Report, ReportFile, _write_index

    report = Report(tmp_path, [ReportFile(tmp_path / "plots" / "a.html", "curve A", image=tmp_path / "plots" / "a.png"),
                               ReportFile(tmp_path / "plots" / "b.html", "curve B")])
    _write_index(report, 1)
    index = (tmp_path / "README.md").read_text()
    assert "![curve A](plots/a.png)" in index and "[plots/a.html](plots/a.html) ([png](plots/a.png))" in index
    assert "![curve B]" not in index and "[plots/b.html](plots/b.html) |" in index


def test_committed_reports_show_every_plot_as_a_picture():
    """A code host cannot run the HTML plots: each committed one has a PNG beside it, shown in the index."""
    index = REPO_REPORTS / "README.md"
    assert index.is_file(), f"{index} is missing: run `emobench report --png` and commit reports/"
    text = index.read_text()
    plots = sorted((REPO_REPORTS / "plots").glob("*.html"))
    assert plots
    for html in plots:
        png = html.with_suffix(".png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"](plots/{png.name})" in text and f"](plots/{html.name})" in text
