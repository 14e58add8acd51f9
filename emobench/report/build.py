"""``emobench report``: every table and plot regenerated into one folder with a README index.

Deterministic: fixed seeds, fixed plot ids, no timestamps; the same inputs give the same files. The exception
is anything read from the results store (the speed table and the latency Pareto chart), which depends on the
machine; the index says which machine produced those records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from emobench.errors import EmobenchError
from emobench.report.render import write_text
from emobench.results.store import headline
from emobench.report.tables import TABLES, comparison_table, to_html, to_latex, to_markdown

ERF_MODELS = ("emo_1m", "emo_2m", "emo_5m", "emo_6m")
MPL_BLOCKS = ("irmb", "irmb_contiguous", "dwconv", "wmhsa", "mhsa")
MPL_WIDTHS = (7, 14, 28, 56)


@dataclass
class ReportFile:
    path: Path
    what: str
    machine_dependent: bool = False
    image: Path | None = None  # a static PNG of a plot, shown in the index where a code host cannot run the HTML


@dataclass
class Report:
    folder: Path
    files: list[ReportFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def files_frame(self) -> pd.DataFrame:
        """The files written (schema emobench.report/1)."""
        return pd.DataFrame([{"path": str(f.path), "what": f.what, "machine_dependent": f.machine_dependent}
                             for f in self.files], columns=["path", "what", "machine_dependent"])


def pareto_figure(df: pd.DataFrame, x: str, x_title: str, title: str) -> go.Figure:
    """Top-1 against ``x``; EMO highlighted; the Pareto front (lower x, higher top-1) drawn as a step line."""
    fig = go.Figure()
    df = df.dropna(subset=[x, "top1"]).sort_values(x)
    front, best = [], -math.inf
    for _, r in df.iterrows():
        if r["top1"] > best:
            front.append(r)
            best = r["top1"]
    if front:
        fdf = pd.DataFrame(front)
        fig.add_trace(go.Scatter(x=fdf[x], y=fdf["top1"], mode="lines", line={"shape": "hv", "dash": "dot", "color": "grey"},
                                 name="Pareto front"))
    for is_emo, group in df.groupby(df["model"].str.startswith("EMO")):
        fig.add_trace(go.Scatter(
            x=group[x], y=group["top1"], mode="markers+text", text=group["model"], textposition="top center",
            marker={"size": 12 if is_emo else 8, "color": "crimson" if is_emo else "steelblue",
                    "symbol": ["circle" if m else "circle-open" for m in group["measured"]]},
            name="EMO" if is_emo else "peers", textfont={"size": 9},
        ))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title="ImageNet top-1 (%) (reported)", height=560, width=900)
    return fig


def _imagenet_points(typed: pd.DataFrame) -> pd.DataFrame:
    """Per model: top-1 (reported), params and MACs (measured where emobench built the model, else reported),
    and the zoo model behind it; read from the typed table's columns."""
    measured = typed["measured_by"].notna()
    return pd.DataFrame({
        "model": typed["model"], "zoo_name": typed["zoo_name"], "top1": typed["top1_reported"], "measured": measured,
        "params_m": typed["params_m_measured"].where(measured, typed["params_m_reported"]),
        "macs_m": typed["flops_m_measured"].where(measured, typed["flops_m_reported"]),
    })


def build_report(folder: Path, erf_images: int = 50, store=None, progress=None, png: bool = False) -> Report:
    """Write tables (md with footnoted sources, csv with the typed columns, tex, html), plots (HTML, and a PNG
    beside each with ``png`` where an exporter exists, embedded in the index) and README.md into ``folder``."""
    from emobench.analysis.erf import erf_study
    from emobench.analysis.mpl import mpl_table
    from emobench.results.store import ResultStore
    from emobench.report.plots import breakdown_figure, erf_figure, mpl_figure, write_figure
    from emobench.report.views import breakdown_output, newest_breakdowns

    step = progress or (lambda label: None)
    folder = Path(folder)
    report = Report(folder)

    def plot(fig: go.Figure, name: str, what: str, machine_dependent: bool = False) -> None:
        path = folder / "plots" / f"{name}.html"
        files = write_figure(fig, path, png, shared_js=True, div_id=name)
        image = Path(files["png"]) if files["png"] else None
        report.files.append(ReportFile(path, what, machine_dependent, image))
        if files["png_note"] and files["png_note"] not in report.notes:
            report.notes.append(files["png_note"])

    built = {}
    for name in TABLES:
        step(f"table {name}")
        table = built[name] = comparison_table(name, store)
        shown, title = table.display(), table.meta["title"]
        texts = {"md": to_markdown(shown, title), "csv": table.data.to_csv(index=False), "tex": to_latex(shown, title),
                 "html": to_html(shown, title)}
        for section_title, section in table.sections.items():  # the speed table's measured section
            for suffix, render in (("md", to_markdown), ("tex", to_latex), ("html", to_html)):
                texts[suffix] += "\n" + render(section, section_title)
            if section.empty:
                report.notes.append(table.meta["measured_speed"]["note"])
        for suffix, text in texts.items():
            path = folder / "tables" / f"{name}.{suffix}"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise EmobenchError(f"cannot write {path.parent}: {err.strerror or err}") from None
            write_text(text, path)
        report.files.append(ReportFile(folder / "tables" / f"{name}.md", f"{title} (also .csv, .tex, .html)",
                                       machine_dependent=name == "speed"))

    step("Pareto charts")
    imagenet = built["imagenet"].data
    points = _imagenet_points(imagenet)
    for x, label, fname in (("macs_m", "MACs (M) (the paper's FLOPs)", "pareto_macs"), ("params_m", "Parameters (M)", "pareto_params")):
        plot(pareto_figure(points, x, label, f"ImageNet top-1 vs {label.split(' (')[0]} (filled: measured by emobench)"),
             fname, f"top-1 against {label}")
    with ResultStore(store, readonly=True) as db:
        records = headline(db.records(backend="torch"))
    latency = _latency_by_model(records, imagenet, built["imagenet"].reported) if not records.empty else pd.DataFrame()
    latency_points = points.merge(latency, on="model") if not latency.empty else pd.DataFrame()
    if not latency_points.empty:
        machines = "; ".join(sorted(records["machine"].unique()))
        plot(pareto_figure(latency_points, "latency_ms", "eager torch latency (ms), batch 1",
                           f"ImageNet top-1 vs measured latency ({machines})"),
             "pareto_latency", f"top-1 against latency measured on {machines}", machine_dependent=True)
    else:
        for stale in ("pareto_latency.html", "pareto_latency.png"):  # a chart from an earlier store would mislead
            (folder / "plots" / stale).unlink(missing_ok=True)
        report.notes.append("No latency Pareto chart: the results store has no `emobench bench` records (backend torch, batch 1).")

    step("breakdown chart")
    with ResultStore(store, readonly=True) as db:
        measured = db.records()
    measured = newest_breakdowns(measured)
    parts, _ = breakdown_output(measured, "part", "profiler")
    if not parts.empty:
        machines = "; ".join(sorted(measured["machine"].unique()))
        plot(breakdown_figure(parts, f"Where the time goes, by M² part ({machines})"), "breakdown_parts",
             f"time share vs MACs share by M² part on each runtime profiled (`bench --breakdown`, {machines})",
             machine_dependent=True)
    else:
        for stale in ("breakdown_parts.html", "breakdown_parts.png"):
            (folder / "plots" / stale).unlink(missing_ok=True)
        report.notes.append("No breakdown chart: the results store has no `emobench bench --breakdown` record with a profiler breakdown.")

    step("sweeps")
    from emobench.report.plots import sweep_figure
    from emobench.runs.sweep import stored_sweeps, sweep_frame

    with ResultStore(store, readonly=True) as db:
        sweeps = stored_sweeps(db)
    for outcome in sweeps:
        frame = sweep_frame(outcome)
        name = "sweep_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in outcome.sweep)
        path = folder / "tables" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(frame.to_csv(index=False), path)
        report.files.append(ReportFile(path, f"sweep {outcome.sweep}: every point (counts, front, measured and "
                                             "predicted latency)", machine_dependent=True))
        plot(sweep_figure(frame, outcome.spec.measure.backends, f"Sweep {outcome.sweep}"), name,
             f"sweep {outcome.sweep}: params vs MACs with the Pareto front, latency vs MACs", machine_dependent=True)
    if not sweeps:
        report.notes.append("No sweep charts: the results store has no `emobench sweep`.")

    step("ERF heatmaps")
    study = erf_study(list(ERF_MODELS), (224, 224), num_images=erf_images, seed=0)
    fig = erf_figure(study.results)
    for trace in fig.data:  # 3 decimals are plenty for a heatmap, and keep the file small
        trace.z = [[round(float(v), 3) for v in row] for row in trace.z]
    plot(fig, "erf_emo", f"ERF of EMO-1M/2M/5M/6M at 224² (RepLKNet method, {erf_images} random images, untrained weights)")
    step("MPL curves")
    plot(mpl_figure(mpl_table(list(MPL_BLOCKS), list(MPL_WIDTHS))), "mpl_blocks",
         "maximum path length against map width: exact and the paper's forms")
    _write_index(report, erf_images)
    return report


def _latency_by_model(records: pd.DataFrame, imagenet: pd.DataFrame, reported=None) -> pd.DataFrame:
    """The headline latency of each table row's model: its zoo entry (joined on the typed ``zoo_name`` column),
    or, with the ``reported`` table, the timm model the row names (records of ``timm:NAME`` at any input,
    ``timm:NAME@256`` included, as the speed pairs store them)."""
    from emobench.models.references import parse_reference

    by_reference = {z: m for m, z in zip(imagenet["model"], imagenet["zoo_name"]) if isinstance(z, str)}
    for row in (reported.rows if reported is not None else []):
        if row.timm and row.model not in by_reference.values():
            by_reference[f"timm:{row.timm}"] = row.model
    latency = []
    for model, ms in zip(records["model"], records["median_ms"]):
        try:
            ref = parse_reference(model)
        except EmobenchError:  # a record whose name is no reference
            continue
        base = ref.target if ref.is_zoo else f"{ref.kind}:{ref.target}"
        if base in by_reference and not ref.kwargs:
            latency.append({"model": by_reference[base], "latency_ms": float(ms)})
    return pd.DataFrame(latency, columns=["model", "latency_ms"]).drop_duplicates("model", keep="last")


def _write_index(report: Report, erf_images: int) -> None:
    lines = [
        "# emobench reports",
        "",
        "Generated by `emobench report --png` (do not edit by hand; run it again instead). Every reported number comes",
        "from `zoo/papers/*.toml` with its source (footnotes under each Markdown table); every measured one was",
        "computed by emobench. Plots are HTML that open offline (they share `plots/plotly.min.js`); where a static",
        "exporter ran, a PNG of each is shown below.",
        "",
        "| file | what |",
        "| --- | --- |",
    ]
    for f in report.files:
        rel = f.path.relative_to(report.folder).as_posix()
        image = f" ([png]({f.image.relative_to(report.folder).as_posix()}))" if f.image else ""
        lines.append(f"| [{rel}]({rel}){image} | {f.what}{' (machine-dependent)' if f.machine_dependent else ''} |")
    lines += ["", "Machine-dependent files (latency) reflect the results store of the machine that ran the command;",
              "the store records name that machine in each row."]
    if report.notes:
        lines += [""] + [f"- {n}" for n in report.notes]
    pictures = [f for f in report.files if f.image]
    if pictures:
        lines += ["", "## Plots"]
        for f in pictures:
            rel, image = f.path.relative_to(report.folder).as_posix(), f.image.relative_to(report.folder).as_posix()
            lines += ["", f"### {f.what}", "", f"![{f.what}]({image})", "", f"Interactive: [{rel}]({rel})"]
    write_text("\n".join(lines) + "\n", report.folder / "README.md")
