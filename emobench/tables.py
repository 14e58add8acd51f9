"""Comparison tables: the paper's rows, every reported number read from ``zoo/papers`` with its source, beside
what emobench measures for the models the zoo has, with the difference."""

from __future__ import annotations

import math

import pandas as pd
import torch

from .errors import EmobenchError
from .papers import ReportedTable, get_table, list_tables
from .render import cell
from .zoo import get_zoo

#: |measured − reported| / reported above this is flagged.
FLAG = 0.02
_SCALE = {"params_m": 1e6, "flops_m": 1e6, "flops_g": 1e9}
TABLES = ("imagenet", "boost", "modules", "downstream", "speed")


def _count(model: torch.nn.Module, shape: tuple[int, ...]) -> dict[str, float]:
    from .measure.counters import count_emobench

    result, _ = count_emobench(model.eval(), torch.zeros(shape))
    return {"params": sum(p.numel() for p in model.parameters()), "macs": result.macs}


def _measure(zoo_name: str, resolution: int | None) -> dict[str, float]:
    """Parameters and MACs (emobench's count, reference form; = fvcore's on EMO) of a zoo model."""
    from .models import create_model, input_shape

    model = create_model(zoo_name)
    return _count(model, input_shape(model.zoo_entry, (resolution, resolution) if resolution else None))


def timm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("timm") is not None


def _measure_timm(name: str, resolution: int | None) -> dict[str, float]:
    """A peer built by timm (``pretrained=False``: no download), counted the same way."""
    import timm

    model = timm.create_model(name, pretrained=False)
    size = resolution or 224
    return _count(model, (1, 3, size, size))


def _truncation_note(measured: float, reported: float, unit: str) -> str:
    """Explain a reported figure that is the measured one cut (not rounded) to its printed decimals."""
    text = f"{reported}"
    decimals = len(text.split(".")[1]) if "." in text else 0
    factor = 10**decimals
    truncated = math.floor(measured * factor) / factor
    rounded = round(measured, decimals)
    if math.isclose(rounded, reported):
        return f"{measured:.4g}{unit} rounds to the reported {reported}{unit}" if not math.isclose(measured, reported) else ""
    if math.isclose(truncated, reported):
        return f"reported {reported}{unit} is {measured:.4f}{unit} truncated, not rounded ({rounded}{unit})"
    return ""


def reported_vs_measured(table: ReportedTable, flag: float = FLAG, use_timm: bool | None = None) -> pd.DataFrame:
    """One row per reported row: the labels, each reported value, and for rows with a zoo model the measured
    parameters and MACs (in the reported unit) with the relative difference; ``source`` last."""
    zoo = get_zoo()
    use_timm = timm_available() if use_timm is None else use_timm
    rows = []
    for i, row in enumerate(table.rows):
        out: dict[str, object] = {}
        for key in ("group", "task"):
            if getattr(row, key):
                out[key] = getattr(row, key)
        out["model"] = row.model
        values = row.values
        measured, via = None, None
        resolution = int(values["resolution"]) if "resolution" in values else None
        if row.zoo and row.zoo in zoo.files:
            measured, via = _measure(row.zoo, resolution), f"zoo:{row.zoo}"
        elif row.timm and use_timm:
            measured, via = _measure_timm(row.timm, resolution), f"timm:{row.timm}"
        notes = []
        for key, label in table.columns.items():
            value = values.get(key)
            out[f"{label} reported"] = value
            if key in _SCALE and measured is not None:
                raw = measured["params" if key == "params_m" else "macs"]
                m = raw / _SCALE[key]
                out[f"{label} measured"] = m
                delta = None if value is None else (m - value) / value
                out[f"{label} Δ %"] = None if delta is None else 100 * delta
                if delta is not None:
                    note = _truncation_note(m, value, "M" if key != "flops_g" else "G")
                    if abs(delta) > flag and "rounds to" not in note:
                        notes.append(note or f"FLAG {label}: {delta:+.1%} beyond ±{flag:.0%}")
                    elif "truncated" in note:
                        notes.append(note)
        if measured is None:
            notes.append("reported only" + (f" (timm '{row.timm}': install timm to measure)" if row.timm else ""))
        out["measured by"] = via
        out["note"] = "; ".join(notes)
        out["source"] = table.source_of(i)
        rows.append(out)
    df = pd.DataFrame(rows)
    # measured columns only where something was measured
    return df.dropna(axis=1, how="all")


def speed_table(table: ReportedTable, store_path=None) -> pd.DataFrame:
    """The reported speed rows, and beside them the newest stored ``emobench bench`` latency of each zoo model per
    backend (batch 1, fp32, the formulation ``--form auto`` picked: :func:`emobench.store.headline`), with the
    machine it ran on."""
    from .store import ResultStore, headline

    base = reported_vs_measured(table)
    with ResultStore(store_path, readonly=True) as store:
        latest = headline(store.records())
    if latest.empty:
        base["measured latency"] = "no stored measurement: run `emobench bench`"
        return base
    for backend in sorted(latest["backend"].unique()):
        sel = latest[latest["backend"] == backend].set_index("model")
        base[f"{backend} ms (measured)"] = [
            sel.loc[z, "median_ms"] if z in sel.index else None for z in [r.zoo for r in table.rows]
        ]
    machines = sorted(latest["machine"].unique())
    base["measured on"] = "; ".join(machines)
    return base


def build_table(name: str, store_path=None, papers=None) -> tuple[pd.DataFrame, dict]:
    """The table ``name`` (imagenet, boost, modules, downstream, speed) and its metadata (title, sources);
    ``papers``: another folder of reported-figure files (default zoo/papers)."""
    if name == "modules":
        from .analysis.modules import module_table

        df = module_table()
        return df, {"title": "Module comparison: closed forms vs built and counted", "sources": ["computed by emobench"]}
    if papers is not None and not list_tables(papers):
        raise EmobenchError(f"no reported-figure files (*.toml) in {papers}")
    if name not in list_tables(papers):
        raise EmobenchError(f"unknown table '{name}' (choose {', '.join(sorted(set(TABLES) | set(list_tables(papers))))})")
    table = get_table(name, papers)
    df = speed_table(table, store_path) if name == "speed" else reported_vs_measured(table)
    return df, {"title": table.title, "file": str(table.path), "sources": sorted(set(table.sources))}


_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\^{}", "Δ": r"$\Delta$", "→": r"$\rightarrow$", "λ": r"$\lambda$",
    "≤": r"$\leq$", "±": r"$\pm$", "×": r"$\times$", "²": r"$^2$", "∞": r"$\infty$",
}


def _latex_escape(text: str) -> str:
    """One pass over the characters, so no replacement is escaped again by a later one."""
    return "".join(_LATEX.get(ch, ch) for ch in text)


def to_latex(df: pd.DataFrame, title: str = "") -> str:
    """A booktabs tabular (``\\usepackage{booktabs}``); numbers right-aligned, text left."""
    align = "".join("r" if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) else "l" for c in df.columns)
    lines = ([f"% {title}"] if title else []) + [rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(_latex_escape(str(c)) for c in df.columns) + r" \\", r"\midrule"]
    for row in df.itertuples(index=False):
        lines.append(" & ".join(_latex_escape(cell(v)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_html(df: pd.DataFrame, title: str = "") -> str:
    import html

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>\n" for row in df.itertuples(index=False))
    caption = f"<caption>{html.escape(title)}</caption>" if title else ""
    return f'<table class="emobench">{caption}\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n'
