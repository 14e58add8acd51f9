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

from ..errors import EmobenchError
from ..render import Format, to_text, write_text
from ..store import headline
from ..tables import TABLES, build_table, to_html, to_latex

ERF_MODELS = ("emo_1m", "emo_2m", "emo_5m", "emo_6m")
MPL_BLOCKS = ("irmb", "irmb_contiguous", "dwconv", "wmhsa", "mhsa")
MPL_WIDTHS = (7, 14, 28, 56)


@dataclass
class ReportFile:
    path: Path
    what: str
    machine_dependent: bool = False


@dataclass
class Report:
    folder: Path
    files: list[ReportFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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


def _imagenet_points(df: pd.DataFrame) -> pd.DataFrame:
    """Per model: top-1 (reported), params and MACs (measured where emobench built the model, else reported)."""
    measured = df.get("measured by")
    rows = []
    for _, r in df.iterrows():
        m = measured is not None and isinstance(r.get("measured by"), str)
        rows.append({
            "model": r["model"], "top1": r["Top-1 (%) reported"], "measured": m,
            "params_m": r["Params (M) measured"] if m else r["Params (M) reported"],
            "macs_m": r["FLOPs (M) measured"] if m else r["FLOPs (M) reported"],
        })
    return pd.DataFrame(rows)


def build_report(folder: Path, erf_images: int = 50, store=None, progress=None, png: bool = False) -> Report:
    """Write tables (md, csv, tex, html), plots (HTML, and PNG with ``png`` where an exporter exists) and
    README.md into ``folder``."""
    from ..analysis.erf import effective_receptive_field, random_images
    from ..analysis.mpl import mpl_table
    from ..models import create_model
    from ..store import ResultStore
    from .plots import erf_figure, mpl_figure, write_figure

    step = progress or (lambda label: None)
    folder = Path(folder)
    report = Report(folder)

    def plot(fig: go.Figure, name: str, what: str, machine_dependent: bool = False) -> None:
        path = folder / "plots" / f"{name}.html"
        problem = write_figure(fig, path, png, shared_js=True, div_id=name)["png_note"]
        report.files.append(ReportFile(path, what + (" (+ .png)" if png and problem is None else ""), machine_dependent))
        if problem and problem not in report.notes:
            report.notes.append(problem)
    built = {}
    for name in TABLES:
        step(f"table {name}")
        df, meta = built[name] = build_table(name, store)
        for suffix, text in (("md", to_text(df, Format.md, meta)), ("csv", to_text(df, Format.csv)),
                             ("tex", to_latex(df, meta["title"])), ("html", to_html(df, meta["title"]))):
            path = folder / "tables" / f"{name}.{suffix}"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise EmobenchError(f"cannot write {path.parent}: {err.strerror or err}") from None
            write_text(text, path)
        report.files.append(ReportFile(folder / "tables" / f"{name}.md", f"{meta['title']} (also .csv, .tex, .html)",
                                       machine_dependent=name == "speed"))

    step("Pareto charts")
    imagenet, _ = built["imagenet"]
    points = _imagenet_points(imagenet)
    for x, label, fname in (("macs_m", "MACs (M) (the paper's FLOPs)", "pareto_macs"), ("params_m", "Parameters (M)", "pareto_params")):
        plot(pareto_figure(points, x, label, f"ImageNet top-1 vs {label.split(' (')[0]} (filled: measured by emobench)"),
             fname, f"top-1 against {label}")
    with ResultStore(store, readonly=True) as db:
        records = headline(db.records(backend="torch"))
    latency_points = points.merge(_latency_by_model(records, imagenet), on="model") if not records.empty else pd.DataFrame()
    if not latency_points.empty:
        machines = "; ".join(sorted(records["machine"].unique()))
        plot(pareto_figure(latency_points, "latency_ms", "eager torch latency (ms), batch 1",
                           f"ImageNet top-1 vs measured latency ({machines})"),
             "pareto_latency", f"top-1 against latency measured on {machines}", machine_dependent=True)
    else:
        report.notes.append("No latency Pareto chart: the results store has no `emobench bench` records (backend torch, batch 1).")

    step("ERF heatmaps")
    results = []
    import torch

    for name in ERF_MODELS:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = create_model(name)
        results.append(effective_receptive_field(model, random_images(erf_images, (224, 224), seed=0), name,
                                                 f"{erf_images} random images (seed 0), random weights (seed 0)"))
    fig = erf_figure(results)
    for trace in fig.data:  # 3 decimals are plenty for a heatmap, and keep the file small
        trace.z = [[round(float(v), 3) for v in row] for row in trace.z]
    plot(fig, "erf_emo", f"ERF of EMO-1M/2M/5M/6M at 224² (RepLKNet method, {erf_images} random images, untrained weights)")
    step("MPL curves")
    plot(mpl_figure(mpl_table(list(MPL_BLOCKS), list(MPL_WIDTHS))), "mpl_blocks",
         "maximum path length against map width: exact and the paper's forms")
    _write_index(report, erf_images)
    return report


def _latency_by_model(records: pd.DataFrame, imagenet: pd.DataFrame) -> pd.DataFrame:
    zoo_of = {r["model"]: r["measured by"].split(":", 1)[1] for _, r in imagenet.iterrows()
              if isinstance(r.get("measured by"), str) and r["measured by"].startswith("zoo:")}
    latest = records.set_index("model")
    rows = [{"model": m, "latency_ms": latest.loc[z, "median_ms"]} for m, z in zoo_of.items() if z in latest.index]
    return pd.DataFrame(rows, columns=["model", "latency_ms"])


def _write_index(report: Report, erf_images: int) -> None:
    lines = [
        "# emobench reports",
        "",
        "Generated by `emobench report` (do not edit by hand; run it again instead). Every reported number comes from",
        "`zoo/papers/*.toml` with its source; every measured one was computed by emobench. Plots are HTML that open",
        "offline (they share `plots/plotly.min.js`).",
        "",
        "| file | what |",
        "| --- | --- |",
    ]
    for f in report.files:
        rel = f.path.relative_to(report.folder).as_posix()
        lines.append(f"| [{rel}]({rel}) | {f.what}{' (machine-dependent)' if f.machine_dependent else ''} |")
    lines += ["", "Machine-dependent files (latency) reflect the results store of the machine that ran the command;",
              "the store records name that machine in each row."]
    if report.notes:
        lines += [""] + [f"- {n}" for n in report.notes]
    write_text("\n".join(lines) + "\n", report.folder / "README.md")
