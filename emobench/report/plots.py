"""Plotly figures: self-contained HTML that opens offline (plotly.js inlined), PNG where a static exporter
(kaleido with a Chrome/Chromium) is available."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from emobench.analysis.erf import THRESHOLDS
from emobench.errors import EmobenchError
from emobench.paths import check_output, write_text


def erf_figure(results, thresholds=THRESHOLDS) -> go.Figure:
    """One heatmap per model, side by side: the log10(x+1), max-normalised ERF map, with its area ratios."""
    titles = []
    for r in results:
        ratios = r.area_ratios(thresholds)
        parts = [f"{int(t * 100)}%: {'–' if v is None else f'{100 * v:.1f}%'}" for t, v in ratios.items()]
        half = (len(parts) + 1) // 2
        titles.append(f"{r.model}<br><sub>{' · '.join(parts[:half])}<br>{' · '.join(parts[half:])}</sub>")
    fig = make_subplots(rows=1, cols=len(results), subplot_titles=titles, horizontal_spacing=0.04)
    for i, r in enumerate(results, start=1):
        fig.add_trace(
            go.Heatmap(z=r.scaled[::-1], colorscale="RdYlGn", zmin=0, zmax=1, showscale=i == len(results),
                       colorbar={"title": "log10(g+1)/max"}),
            row=1, col=i,
        )
        fig.update_xaxes(showticklabels=False, row=1, col=i)
        fig.update_yaxes(showticklabels=False, scaleanchor=f"x{i if i > 1 else ''}", row=1, col=i)
    fig.update_layout(title="Effective receptive field (RepLKNet method; high-contribution area ratio at t)",
                      height=460, width=max(460, 380 * len(results)), margin={"t": 130})
    return fig


def erf_plot_path(out_dir: Path, models: list[str], resolution: tuple[int, int]) -> Path:
    """Where ``emobench erf`` puts the heatmaps of ``models``: one file name from the references, which may hold
    '/', ':' and ','."""
    import re

    stem = re.sub(r"[^\w.@-]+", "-", "_".join(models))
    return Path(out_dir) / f"erf_{stem}_{resolution[0]}x{resolution[1]}.html"


def mpl_figure(df: pd.DataFrame) -> go.Figure:
    """MPL against map width: exact (markers) and the paper's asymptotic form (dashed) per block."""
    import plotly.colors

    palette = plotly.colors.qualitative.Plotly
    fig = go.Figure()
    for i, (name, rows) in enumerate(df.groupby("block", sort=False)):
        colour = palette[i % len(palette)]
        exact = [None if math.isinf(v) else v for v in rows["MPL"]]
        label = name + (" (∞ where missing)" if any(v is None for v in exact) else "")
        fig.add_trace(go.Scatter(x=rows["W"], y=exact, mode="lines+markers", name=f"{label}: exact", line={"color": colour}))
        paper = [None if (math.isinf(v) or math.isnan(v)) else v for v in rows["paper (asymptotic)"]]
        if any(v is not None for v in paper):
            fig.add_trace(go.Scatter(x=rows["W"], y=paper, mode="lines", line={"dash": "dash", "color": colour},
                                     name=f"{name}: paper"))
    fig.update_layout(title="Maximum path length vs map width W (blocks)", xaxis_title="W (tokens per side)",
                      yaxis_title="MPL (blocks)", height=480, width=760)
    return fig


def breakdown_figure(df: pd.DataFrame, title: str = "Where the time goes, by M² part") -> go.Figure:
    """Per measured runtime two stacked bars: each part's share of the headline latency and its share of the
    MACs (``df``: the part roll-ups of :func:`emobench.report.views.breakdown_output`). A part far taller in
    time than in MACs runs far below the arithmetic rate of the rest: memory-bound, or overhead."""
    from emobench.analysis.breakdown import PARTS, UNATTRIBUTED

    parts = df[df["by"] == "part"]
    labels = parts.apply(lambda r: f"{r['backend']} ({r['form']}, {r['dtype']}, t{r['threads']})<br>{r['model']}", axis=1)
    parts = parts.assign(runtime=labels)
    runtimes = list(dict.fromkeys(parts["runtime"]))
    fig = go.Figure()
    order = [p for p in [*PARTS, UNATTRIBUTED] if p in set(parts["group"])]
    for part in order:
        rows = parts[parts["group"] == part].set_index("runtime")
        time = [max(float(rows.loc[r, "time_share"]), 0.0) if r in rows.index and pd.notna(rows.loc[r, "time_share"]) else 0.0
                for r in runtimes]
        macs = [float(rows.loc[r, "macs_share"]) if r in rows.index and pd.notna(rows.loc[r, "macs_share"]) else 0.0
                for r in runtimes]
        fig.add_trace(go.Bar(name=part, x=[[r for r in runtimes for _ in (0, 1)], ["time", "MACs"] * len(runtimes)],
                             y=[v for pair in zip(time, macs) for v in pair],
                             hovertemplate=f"{part}<br>%{{x}}: %{{y:.1%}}<extra></extra>"))
    fig.update_layout(barmode="stack", title=title, yaxis_title="share of the headline latency / of the MACs",
                      yaxis_tickformat=".0%", height=560, width=max(640, 300 * len(runtimes)), legend_traceorder="normal")
    return fig


def sweep_figure(df: pd.DataFrame, backends: list[str], title: str = "Sweep") -> go.Figure:
    """Every counted point of a sweep, MACs against params (the front marked), and beside it each measured
    point's latency against its MACs, one series per backend (and predicted latency where there is one)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("params vs MACs (counted)", "latency vs MACs"))
    ok = df[df["status"] == "ok"]
    for front, name, symbol in ((False, "point", "circle-open"), (True, "Pareto front", "circle")):
        part = ok[ok["front"] == front]
        fig.add_trace(go.Scatter(x=part["MACs"], y=part["params"], mode="markers", name=name,
                                 marker={"symbol": symbol}, text=part["point"]), row=1, col=1)
    for backend in backends:
        for kind, symbol in (("ms", "circle"), ("predicted ms", "x")):
            col = f"{backend} {kind}"
            if col in df and df[col].notna().any():
                part = df[df[col].notna()]
                fig.add_trace(go.Scatter(x=part["MACs"], y=part[col], mode="markers", text=part["point"],
                                         name=f"{backend} ({'measured' if kind == 'ms' else 'predicted'})",
                                         marker={"symbol": symbol}), row=1, col=2)
    fig.update_xaxes(title_text="MACs")
    fig.update_yaxes(title_text="params", row=1, col=1)
    fig.update_yaxes(title_text="ms", row=1, col=2)
    fig.update_layout(title=title, template="plotly_white")
    return fig


def png_exporter_problem() -> str | None:
    """None when PNG export works here, else why not."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return "PNG needs kaleido (pip install kaleido) and a Chrome/Chromium browser"
    return None


def write_figure(
    fig: go.Figure, html: Path, png: bool = False, shared_js: bool = False, div_id: str | None = None
) -> dict[str, str | None]:
    """Write ``html`` and, if asked and possible, a PNG beside it. The HTML opens offline: plotly.js is inlined,
    or with ``shared_js`` written once as plotly.min.js in the same folder. ``div_id`` makes it reproducible."""
    html = Path(html)
    try:
        html.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EmobenchError(f"cannot write {html}: {err.strerror or err}") from None
    png_path = html.with_suffix(".png")
    if png:
        check_output(png_path)  # refused before the HTML is written, like every output
    # through the one safe writer: a read-only or database file is refused, a regular file replaced atomically
    write_text(fig.to_html(include_plotlyjs="directory" if shared_js else True, full_html=True, div_id=div_id), html)
    script = html.parent / "plotly.min.js"
    if shared_js and not script.exists():
        from plotly.offline import get_plotlyjs

        write_text(get_plotlyjs(), script)
    out: dict[str, str | None] = {"html": str(html), "png": None, "png_note": None}
    if png:
        problem = png_exporter_problem()
        if problem is None:
            try:
                fig.write_image(str(png_path))
                out["png"] = str(png_path)
            except Exception as err:  # noqa: BLE001 - the exporter's own failure (no browser, ...)
                problem = f"PNG export failed: {str(err).splitlines()[0]}"
        out["png_note"] = problem
    return out
