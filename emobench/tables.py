"""Comparison tables: the paper's rows, every reported number read from ``zoo/papers`` with its source, beside
what emobench measures for the models the zoo has, with the difference."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .errors import EmobenchError
from .papers import ReportedTable, get_table, list_tables
from .render import cell
from .zoo import get_zoo

#: |measured − reported| / reported above this is flagged.
FLAG = 0.02
_SCALE = {"params_m": 1e6, "flops_m": 1e6, "flops_g": 1e9}
TABLES = ("imagenet", "boost", "modules", "downstream", "speed")


def _count(model, shape: tuple[int, ...]) -> dict[str, float]:
    import torch

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


def comparison_frame(table: ReportedTable, flag: float = FLAG, use_timm: bool | None = None) -> pd.DataFrame:
    """The typed form of a comparison table: one row per reported row, stable snake_case columns.

    ``group``/``task`` (where the table has them), ``model``; per reported column KEY: ``KEY_reported`` and, for
    parameters and MACs, ``KEY_measured`` (in the reported unit) and ``KEY_delta_pct``; ``measured_by`` ("zoo",
    "timm" or missing), ``zoo_name``, ``timm_name`` (what was built), ``note``, ``source``. Numbers stay numbers;
    :func:`display_frame` turns this into the labelled screen table."""
    zoo = get_zoo()
    use_timm = timm_available() if use_timm is None else use_timm
    keyed = [k for k in ("group", "task") if any(getattr(r, k) for r in table.rows)]
    rows = []
    for i, row in enumerate(table.rows):
        out: dict[str, object] = {k: getattr(row, k) for k in keyed}
        out["model"] = row.model
        values = row.values
        measured, via = None, None
        resolution = int(values["resolution"]) if "resolution" in values else None
        if row.zoo and row.zoo in zoo.files:
            measured, via = _measure(row.zoo, resolution), "zoo"
        elif row.timm and use_timm:
            measured, via = _measure_timm(row.timm, resolution), "timm"
        notes = []
        for key, label in table.columns.items():
            value = values.get(key)
            out[f"{key}_reported"] = value
            if key in _SCALE:
                m = None if measured is None else measured["params" if key == "params_m" else "macs"] / _SCALE[key]
                delta = None if m is None or value is None else (m - value) / value
                out[f"{key}_measured"] = m
                out[f"{key}_delta_pct"] = None if delta is None else 100 * delta
                if delta is not None:
                    note = _truncation_note(m, value, "M" if key != "flops_g" else "G")
                    if abs(delta) > flag and "rounds to" not in note:
                        notes.append(note or f"FLAG {label}: {delta:+.1%} beyond ±{flag:.0%}")
                    elif "truncated" in note:
                        notes.append(note)
        if measured is None:
            notes.append("reported only" + (f" (timm '{row.timm}': install timm to measure)" if row.timm else ""))
        out["measured_by"] = via
        out["zoo_name"] = row.zoo if via == "zoo" else None
        out["timm_name"] = row.timm if via == "timm" else None
        out["note"] = "; ".join(notes)
        out["source"] = table.source_of(i)
        rows.append(out)
    df = pd.DataFrame(rows)
    for col in df.columns:  # all-missing numeric columns stay float, not object, so the schema is stable
        if col.endswith(("_reported", "_measured", "_delta_pct")) and df[col].isna().all():
            df[col] = df[col].astype(float)
    return df


def display_labels(table: ReportedTable) -> dict[str, str]:
    """Typed column → the human label the screen, Markdown, LaTeX and HTML tables show."""
    labels = {"group": "group", "task": "task", "model": "model"}
    for key, label in table.columns.items():
        labels[f"{key}_reported"] = f"{label} reported"
        labels[f"{key}_measured"] = f"{label} measured"
        labels[f"{key}_delta_pct"] = f"{label} Δ %"
    labels.update({"measured_by": "measured by", "note": "note", "source": "source", "measured_on": "measured on"})
    return labels


def display_frame(typed: pd.DataFrame, table: ReportedTable) -> pd.DataFrame:
    """The labelled table: "measured by" as ``zoo:NAME``/``timm:NAME``; columns with nothing in them left out
    (measured columns only where something was measured); latency columns (speed) as ``BACKEND ms (measured)``."""
    df = typed.copy()
    df["measured_by"] = [None if via is None or (isinstance(via, float) and math.isnan(via))
                         else f"{via}:{z if via == 'zoo' else t}"
                         for via, z, t in zip(df["measured_by"], df["zoo_name"], df["timm_name"])]
    df = df.drop(columns=["zoo_name", "timm_name"])
    latency = [c for c in df.columns if c.startswith("latency_ms_") or c in ("measured_on", "measured_latency")]
    base = df.drop(columns=latency).dropna(axis=1, how="all")
    df = pd.concat([base, df[latency]], axis=1)
    labels = display_labels(table)
    labels.update({c: f"{c.removeprefix('latency_ms_')} ms (measured)" for c in latency if c.startswith("latency_ms_")})
    labels["measured_latency"] = "measured latency"
    return df.rename(columns=labels)


def reported_vs_measured(table: ReportedTable, flag: float = FLAG, use_timm: bool | None = None) -> pd.DataFrame:
    """The labelled comparison table (:func:`display_frame` of :func:`comparison_frame`)."""
    return display_frame(comparison_frame(table, flag, use_timm), table)


def speed_frame(table: ReportedTable, store_path=None) -> pd.DataFrame:
    """The typed speed table: :func:`comparison_frame` and beside it ``latency_ms_BACKEND``, the newest stored
    ``emobench bench`` latency of each zoo model per backend (batch 1, fp32, the formulation ``--form auto``
    picked: :func:`emobench.store.headline`), and ``measured_on``, the machines those records name."""
    from .store import ResultStore, headline

    base = comparison_frame(table)
    with ResultStore(store_path, readonly=True) as store:
        latest = headline(store.records())
    if latest.empty:
        base["measured_latency"] = "no stored measurement: run `emobench bench`"
        return base
    for backend in sorted(latest["backend"].unique()):
        sel = latest[latest["backend"] == backend].set_index("model")
        base[f"latency_ms_{backend}"] = [
            float(sel.loc[z, "median_ms"]) if isinstance(z, str) and z in sel.index else None for z in base["zoo_name"]
        ]
    base["measured_on"] = "; ".join(sorted(latest["machine"].unique()))
    return base


def speed_table(table: ReportedTable, store_path=None) -> pd.DataFrame:
    """The labelled speed table (:func:`speed_frame`)."""
    return display_frame(speed_frame(table, store_path), table)


@dataclass
class ComparisonTable:
    """A comparison table both ways: ``data`` typed (stable snake_case columns, for JSON/CSV and the report)
    and :meth:`display` labelled (screen, Markdown, LaTeX, HTML)."""

    name: str
    data: pd.DataFrame
    meta: dict
    reported: ReportedTable | None = None

    def display(self) -> pd.DataFrame:
        return display_frame(self.data, self.reported) if self.reported is not None else self.data


def comparison_table(name: str, store_path=None, papers=None) -> ComparisonTable:
    """The table ``name`` (imagenet, boost, modules, downstream, speed, or a file in ``papers``) with its
    metadata (title, file, sources)."""
    if name == "modules":
        from .analysis.modules import module_table

        return ComparisonTable(name, module_table(), {"title": "Module comparison: closed forms vs built and counted",
                                                      "sources": ["computed by emobench"]})
    if papers is not None and not list_tables(papers):
        raise EmobenchError(f"no reported-figure files (*.toml) in {papers}")
    if name not in list_tables(papers):
        raise EmobenchError(f"unknown table '{name}' (choose {', '.join(sorted(set(TABLES) | set(list_tables(papers))))})")
    table = get_table(name, papers)
    data = speed_frame(table, store_path) if name == "speed" else comparison_frame(table)
    return ComparisonTable(name, data, {"title": table.title, "file": str(table.path), "sources": sorted(set(table.sources))},
                           table)


def build_table(name: str, store_path=None, papers=None) -> tuple[pd.DataFrame, dict]:
    """The labelled table ``name`` and its metadata (see :func:`comparison_table` for the typed one)."""
    result = comparison_table(name, store_path, papers)
    return result.display(), result.meta


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


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame, title: str = "",
                footnote_columns: tuple[str, ...] = ("note", "source", "measured latency", "measured on"),
                width: int = 24) -> str:
    """A Markdown table narrow enough to read on a code host: numbers to 4 significant digits, and the text of
    ``footnote_columns`` longer than ``width`` characters moved to numbered footnotes (``[^n]``) below the table,
    each distinct text once."""
    numbers: dict[str, int] = {}
    notes: list[str] = []

    def ref(text: str) -> str:
        if text not in numbers:
            numbers[text] = len(numbers) + 1
            notes.append(text)
        return f"[^{numbers[text]}]"

    numeric = {c: pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns}
    lines = [f"**{_md_escape(title)}**", ""] if title else []
    lines.append("| " + " | ".join(_md_escape(str(c)) for c in df.columns) + " |")
    lines.append("|" + "|".join(" ---: " if numeric[c] else " --- " for c in df.columns) + "|")
    for row in df.itertuples(index=False):
        cells = []
        for col, value in zip(df.columns, row):
            text = cell(value)
            if col in footnote_columns and text != "–" and len(text) > width:
                text = ref(text)
            cells.append(_md_escape(text) if not text.startswith("[^") else text)
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines.append("")
        lines += [f"[^{i}]: {_md_escape(text)}" for i, text in enumerate(notes, start=1)]
    return "\n".join(lines) + "\n"
