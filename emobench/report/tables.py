"""Comparison tables: the paper's rows, every reported number read from ``zoo/papers`` with its source, beside
what emobench measures for the models the zoo has, with the difference."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from emobench.errors import EmobenchError
from emobench.zoo.papers import ReportedTable, get_table, list_tables
from emobench.report.render import cell
from emobench.zoo.catalog import get_zoo

#: |measured − reported| / reported above this is flagged.
FLAG = 0.02
_SCALE = {"params_m": 1e6, "flops_m": 1e6, "flops_g": 1e9}
#: the typed columns of the input the measured columns were counted at (channels, height, width)
INPUT_COLUMNS = ("input_c", "input_h", "input_w")
TABLES = ("imagenet", "boost", "modules", "downstream", "speed")


#: fvcore operator names of the attention's two matmuls (q·kᵀ and attn·v) in emobench's count
ATTENTION_MATMULS = ("bmm", "matmul", "scaled_dot_product_attention")


def _count(model, shape: tuple[int, ...]) -> dict[str, float]:
    import torch

    from emobench.measure.counters import count_emobench

    result, _ = count_emobench(model.eval(), torch.zeros(shape))
    return {"params": sum(p.numel() for p in model.parameters()), "macs": result.macs,
            "attention_matmul_macs": sum(result.by_operator.get(op, 0) for op in ATTENTION_MATMULS),
            "input": tuple(int(v) for v in shape[1:])}  # C, H, W


_MEASURED: dict[tuple, dict[str, float]] = {}


def _measure(reference: str, resolution: int | None) -> dict[str, float]:
    """Parameters and MACs (emobench's count, reference form; = fvcore's on EMO) of a model reference (a zoo
    name, or ``timm:NAME`` for a peer: ``pretrained=False``, no download) at its own input (timm's default for
    EdgeNeXt and MobileViT: 256) or at ``resolution``; kept for the process, keyed by a zoo entry's content,
    since every format of a table counts the same models."""
    from emobench.models.references import resolve
    from emobench.zoo.catalog import content_key

    ref = resolve(reference)
    key = (reference, resolution, content_key(ref.entry.name) if ref.entry is not None else None)
    if key not in _MEASURED:
        _MEASURED[key] = _count(ref.build(seed=0), ref.input_shape((resolution, resolution) if resolution else None))
    return _MEASURED[key]


def timm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("timm") is not None


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


def _reading_notes(readings: list[tuple[str, float]], reported: float, unit: str, label: str, flag: float) -> list[str]:
    """What a measured figure says about the reported one, trying each reading (emobench's count first, then
    e.g. the count without the attention matmuls): nothing when the count rounds to it; how it reproduces
    (truncated, or only under a later reading); else a FLAG beyond ``flag``, naming the closest reading."""
    for i, (reading, m) in enumerate(readings):
        note = _truncation_note(m, reported, unit)
        prefix = f"{label} {reading}: " if i else ""
        if "rounds to" in note or (not note and math.isclose(m, reported)):
            return [prefix + note] if i else []
        if "truncated" in note:
            return [prefix + note]
    reading, m = min(readings, key=lambda r: abs(r[1] - reported))
    delta = (m - reported) / reported
    if abs(delta) <= flag:
        return []
    closest = f" (closest reading: {reading}, {m:.4g}{unit})" if reading else ""
    return [f"FLAG {label}: {delta:+.1%} beyond ±{flag:.0%}{closest}"]


def comparison_frame(table: ReportedTable, flag: float = FLAG, use_timm: bool | None = None) -> pd.DataFrame:
    """The typed form of a comparison table: one row per reported row, stable snake_case columns.

    ``group``/``task`` (where the table has them), ``model``; per reported column KEY: ``KEY_reported`` and, for
    parameters and MACs, ``KEY_measured`` (in the reported unit) and ``KEY_delta_pct``; ``input_c``, ``input_h``,
    ``input_w`` (the input those were counted at, where something was measured); ``measured_by`` ("zoo",
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
            measured, via = _measure(f"timm:{row.timm}", resolution), "timm"
        notes = [row.note] if row.note else []  # the data's own explanation of a known gap comes first
        for key, label in table.columns.items():
            value = values.get(key)
            out[f"{key}_reported"] = value
            if key in _SCALE:
                m = None if measured is None else measured["params" if key == "params_m" else "macs"] / _SCALE[key]
                delta = None if m is None or value is None else (m - value) / value
                out[f"{key}_measured"] = m
                out[f"{key}_delta_pct"] = None if delta is None else 100 * delta
                readings = [("", m)]
                if key.startswith("flops") and table.flops_without_attention_matmuls:
                    alt = None if m is None else (measured["macs"] - measured["attention_matmul_macs"]) / _SCALE[key]
                    out[f"{key}_without_attention_matmuls"] = alt
                    readings.append(("without the attention matmuls", alt))
                if delta is not None:
                    notes += _reading_notes(readings, value, "M" if key != "flops_g" else "G", label, flag)
        if measured is not None:  # the input the measured columns were counted at
            out["input_c"], out["input_h"], out["input_w"] = measured["input"]
        if measured is None:
            notes.append("reported only" + (f" (timm '{row.timm}': timm not installed; install timm to measure)"
                                            if row.timm else ""))
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
    for col in INPUT_COLUMNS if INPUT_COLUMNS[0] in df.columns else ():  # whole numbers, None where unmeasured
        df[col] = pd.Series([None if pd.isna(v) else int(v) for v in df[col]], index=df.index, dtype=object)
    return df


def display_labels(table: ReportedTable) -> dict[str, str]:
    """Typed column → the human label the screen, Markdown, LaTeX and HTML tables show."""
    labels = {"group": "group", "task": "task", "model": "model"}
    for key, label in table.columns.items():
        labels[f"{key}_reported"] = f"{label} reported"
        labels[f"{key}_measured"] = f"{label} measured"
        labels[f"{key}_delta_pct"] = f"{label} Δ %"
        labels[f"{key}_without_attention_matmuls"] = f"{label} measured without attention matmuls"
    labels.update({"input_c": "input C", "input_h": "input H", "input_w": "input W", "measured_by": "measured by", "note": "note", "source": "source", "measured_on": "measured on"})
    return labels


def display_frame(typed: pd.DataFrame, table: ReportedTable) -> pd.DataFrame:
    """The labelled table: "measured by" as ``zoo:NAME``/``timm:NAME``; columns with nothing in them left out
    (measured columns only where something was measured); latency columns (speed) as ``BACKEND ms (measured)``."""
    df = typed.copy()
    df["measured_by"] = [None if via is None or (isinstance(via, float) and math.isnan(via))
                         else f"{via}:{z if via == 'zoo' else t}"
                         for via, z, t in zip(df["measured_by"], df["zoo_name"], df["timm_name"])]
    df = df.drop(columns=["zoo_name", "timm_name"])
    if INPUT_COLUMNS[0] in df.columns:  # the measured input as one "3x224x224" column (the typed frame: 3 numbers)
        sizes = ["x".join(str(int(v)) for v in row) if all(pd.notna(v) for v in row) else None
                 for row in df[list(INPUT_COLUMNS)].itertuples(index=False)]
        at = df.columns.get_loc(INPUT_COLUMNS[0])
        df = df.drop(columns=list(INPUT_COLUMNS))
        df.insert(at, "input (measured)", pd.Series(sizes, index=df.index, dtype=object))
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


def stored_headline(store_path=None) -> pd.DataFrame:
    """The headline records of the store (:func:`emobench.results.query.headline`), read once per table."""
    from emobench.results.store import ResultStore, headline

    with ResultStore(store_path, readonly=True) as store:
        return headline(store.records())


def speed_frame(table: ReportedTable, store_path=None, latest: pd.DataFrame | None = None) -> pd.DataFrame:
    """The typed speed table: :func:`comparison_frame` and beside it ``latency_ms_BACKEND``, the newest stored
    ``emobench bench`` latency of each zoo model per backend (batch 1, fp32, the formulation ``--form auto``
    picked: :func:`emobench.results.store.headline`), and ``measured_on``, the machines those records name.
    ``latest``: those records, when the caller has read them already."""
    base = comparison_frame(table)
    latest = stored_headline(store_path) if latest is None else latest
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


#: the columns of the measured speed section (:func:`measured_speed_frame`)
MEASURED_SPEED_COLUMNS = ["emo", "peer", "backend", "threads", "emo_input", "peer_input", "emo_ms", "peer_ms",
                          "emo_over_peer", "noise", "verdict", "machine", "source"]


def speed_models(table: ReportedTable) -> list[str]:
    """Every model of the table's speed pairs, EMO first, each once (the ``emobench bench`` that measures them)."""
    names: list[str] = []
    for pair in table.pairs:
        for ref in (pair.emo, *pair.peers):
            if ref not in names:
                names.append(ref)
    return names


def measure_command(table: ReportedTable) -> str:
    return f"emobench bench {' '.join(speed_models(table))} -B all"


def measured_speed_frame(table: ReportedTable, store_path=None, latest: pd.DataFrame | None = None) -> pd.DataFrame:
    """EMO against its paired peers (``[[pairs]]`` of the speed file) on every backend the store has records
    for: each model's :func:`~emobench.results.store.headline` record (batch 1, fp32, ``--form auto``, the most threads,
    the newest), a pair only where both come from the same machine at the same thread count. ``emo_over_peer``
    = EMO ms / peer ms (< 1: EMO is faster); ``verdict`` says whether that leaves the band 1 ± noise (the
    larger relative IQR or round spread of the two records: :func:`emobench.results.query.verdict`)."""
    from emobench.results.query import _relative_noise, verdict

    latest = stored_headline(store_path) if latest is None else latest
    rows = []
    if not latest.empty:
        by = {(r["model"], r["backend"]): r for _, r in latest.iterrows()}
        backends = sorted(latest["backend"].unique())
        for pair in table.pairs:
            for peer in pair.peers:
                for backend in backends:
                    e, p = by.get((pair.emo, backend)), by.get((peer, backend))
                    if e is None or p is None or e["machine"] != p["machine"] or e["threads"] != p["threads"]:
                        continue
                    joined = {**{f"{k} A": v for k, v in p.items()}, **{f"{k} B": v for k, v in e.items()}}
                    noise = max(_relative_noise(joined, " A"), _relative_noise(joined, " B"))
                    ratio = float(e["median_ms"]) / float(p["median_ms"])
                    rows.append({"emo": pair.emo, "peer": peer, "backend": backend, "threads": int(e["threads"]),
                                 "emo_input": e["resolution"], "peer_input": p["resolution"],
                                 "emo_ms": float(e["median_ms"]), "peer_ms": float(p["median_ms"]),
                                 "emo_over_peer": ratio, "noise": noise,
                                 "verdict": {"faster": "EMO faster", "slower": "EMO slower", "same": "same within noise"}[verdict(ratio, noise)],
                                 "machine": e["machine"], "source": pair.source})
    return pd.DataFrame(rows, columns=MEASURED_SPEED_COLUMNS)


@dataclass
class ComparisonTable:
    """A comparison table both ways: ``data`` typed (stable snake_case columns, for JSON/CSV and the report)
    and :meth:`display` labelled (screen, Markdown, LaTeX, HTML)."""

    name: str
    data: pd.DataFrame
    meta: dict
    reported: ReportedTable | None = None
    #: further typed tables under a title: the speed table's measured section (:func:`measured_speed_frame`)
    sections: dict[str, pd.DataFrame] = field(default_factory=dict)

    def display(self) -> pd.DataFrame:
        return display_frame(self.data, self.reported) if self.reported is not None else self.data

    def document(self, kind: str) -> str:
        """The labelled table and its sections as one ``md``, ``latex`` or ``html`` document."""
        render = {"latex": to_latex, "html": to_html, "md": to_markdown}[kind]
        text = render(self.display(), self.meta["title"])
        for title, section in self.sections.items():  # the speed table's measured section
            text += "\n" + render(section, title)
        return text


def comparison_table(name: str, store_path=None, papers=None) -> ComparisonTable:
    """The table ``name`` (imagenet, boost, modules, downstream, speed, or a file in ``papers``) with its
    metadata (title, file, sources)."""
    if name == "modules":
        from emobench.analysis.modules import module_table

        return ComparisonTable(name, module_table(), {"title": "Module comparison: closed forms vs built and counted",
                                                      "sources": ["computed by emobench"]})
    if papers is not None and not list_tables(papers):
        raise EmobenchError(f"no reported-figure files (*.toml) in {papers}")
    if name not in list_tables(papers):
        raise EmobenchError(f"unknown table '{name}' (choose {', '.join(sorted(set(TABLES) | set(list_tables(papers))))})")
    table = get_table(name, papers)
    latest = stored_headline(store_path) if name == "speed" or table.pairs else None  # the store read once
    data = speed_frame(table, store_path, latest) if name == "speed" else comparison_frame(table)
    meta = {"title": table.title, "file": str(table.path), "sources": sorted(set(table.sources))}
    sections = {}
    if table.pairs:
        measured = measured_speed_frame(table, store_path, latest)
        title = "Measured here: EMO vs its paired peers, one row per backend (EMO ms / peer ms < 1: EMO is faster)"
        sections[title] = measured
        meta["measured_speed"] = {
            "title": title, "command": measure_command(table), "rows": measured.to_dict(orient="records"),
            "note": None if len(measured) else f"no stored pair measured on one machine: run `{measure_command(table)}`",
        }
    return ComparisonTable(name, data, meta, table, sections)


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
