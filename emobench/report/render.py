"""Rendering library results (pandas DataFrames) as a rich table, JSON, CSV or Markdown, to screen or file."""

from __future__ import annotations

import io
import json
import math
from enum import Enum
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from emobench.errors import EmobenchError
from emobench.columns import Column, column_for, machine_frame, snake  # noqa: F401 - re-exported for views
from emobench.paths import write_text  # noqa: F401 - the one safe writer, used by emit


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    md = "md"
    latex = "latex"  # comparison tables only (booktabs)
    html = "html"  # comparison tables only


#: what every table command writes; the comparison tables add LaTeX and HTML documents
DATA_FORMATS = (Format.table, Format.json, Format.csv, Format.md)
DOCUMENT_FORMATS = (*DATA_FORMATS, Format.latex, Format.html)
_ALIASES = {"tex": "latex", "htm": "html", "markdown": "md", "txt": "table"}
_SUFFIX_FORMATS = {".json": Format.json, ".csv": Format.csv, ".md": Format.md, ".markdown": Format.md,
                   ".txt": Format.table, ".tex": Format.latex, ".html": Format.html, ".htm": Format.html}


def parse_format(text: str | None, allowed: tuple[Format, ...] = DATA_FORMATS) -> Format | None:
    """``--format`` text (``tex``, ``htm``, ``markdown`` and ``txt`` are aliases) as one of ``allowed``."""
    if text is None:
        return None
    name = _ALIASES.get(text.lower(), text.lower())
    if name not in {f.value for f in allowed}:
        raise EmobenchError(f"unknown format '{text}' (choose {', '.join(f.value for f in allowed)})")
    return Format(name)


def format_for(fmt: Format | None, output: Path | None, allowed: tuple[Format, ...] = DATA_FORMATS) -> Format:
    """The explicit format, else the output file's suffix (one of ``allowed``: .json, .csv, .md, .txt; .tex and
    .html where documents are allowed), else a table on screen and Markdown for any other file."""
    if fmt is not None:
        return fmt
    by_suffix = _SUFFIX_FORMATS.get(output.suffix.lower()) if output is not None else None
    if by_suffix in allowed:
        return by_suffix
    return Format.table if output is None else Format.md


def cell(value: Any) -> str:
    """One value as text: – for missing, ∞, thousands separators, 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "∞" if math.isinf(value) else f"{value:,.4g}"
    return str(value)


def rich_table(df: pd.DataFrame, title: str | None = None, caption: str | None = None) -> Table:
    """Cells, titles and captions are literal text (a path holding ``[b]`` or ``:cat:`` is shown as written)."""
    table = Table(title=Text(title) if title else None, caption=Text(caption) if caption else None,
                  header_style="bold", title_justify="left")
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])
        # Short columns never wrap; only long free text (summaries, sources) folds on narrow terminals.
        short = df[col].map(lambda v: len(cell(v))).max() <= 24 if len(df) else True
        table.add_column(Text(str(col)), justify="right" if numeric else "left", overflow="fold", no_wrap=bool(short))
    for row in df.itertuples(index=False):
        table.add_row(*(Text(cell(v)) for v in row))
    return table


def to_text(df: pd.DataFrame, fmt: Format, meta: dict[str, Any] | None = None) -> str:
    """JSON is ``{"meta": {...}, "rows": [...]}`` so that units and sources travel with the numbers."""
    if fmt is Format.json:
        rows = json.loads(df.to_json(orient="records"))
        return json.dumps({"meta": meta or {}, "rows": rows}, indent=2) + "\n"
    if fmt is Format.csv:
        return df.to_csv(index=False)
    if fmt is Format.md:
        buf = io.StringIO()
        if meta and meta.get("title"):
            buf.write(f"**{meta['title']}**\n\n")
        clean = df.astype(object).where(df.notna(), None)  # NaN in text columns prints as "nan" otherwise
        buf.write(clean.to_markdown(index=False, floatfmt=",.6g", intfmt=",", missingval="–"))
        buf.write("\n")
        return buf.getvalue()
    raise ValueError(f"no text form for {fmt}")


def emit(
    df: pd.DataFrame,
    fmt: Format | None = None,
    output: Path | None = None,
    title: str | None = None,
    meta: dict[str, Any] | None = None,
    console: Console | None = None,
    schema: str | None = None,
    columns: list[Column] | tuple[Column, ...] = (),
) -> None:
    """Show ``df`` on screen or write it to ``output``.

    The screen and Markdown show ``df``'s display labels; JSON and CSV use the snake_case keys of ``columns``
    (see :func:`machine_frame`), and JSON's ``meta`` carries ``schema`` and the units by key."""
    fmt = format_for(fmt, output)
    meta = {"title": title, **(meta or {})} if title else dict(meta or {})
    if fmt in (Format.json, Format.csv):
        df, units = machine_frame(df, columns)
        # the schema first, so that a reader sees what it holds before anything else
        meta = {**({"schema": schema} if schema else {}), **meta, "units": {**units, **meta.get("units", {})}}
    else:  # a typed frame (columns are keys) shows its labels
        df = df.rename(columns={c.key: c.label for c in columns})
    if fmt is Format.table:
        table = rich_table(df, title=title, caption=meta.get("caption"))
        if output is None:
            (console or Console(emoji=False)).print(table)
            return
        buf = Console(file=io.StringIO(), width=200, record=True)
        buf.print(table)
        write_text(buf.export_text(), output)
        return
    text = to_text(df, fmt, meta)
    if output is None:
        print(text, end="")
    else:
        write_text(text, output)
