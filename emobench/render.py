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

from .errors import EmobenchError


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    md = "md"


_SUFFIX_FORMATS = {".json": Format.json, ".csv": Format.csv, ".md": Format.md}


def format_for(fmt: Format | None, output: Path | None) -> Format:
    """The explicit format, else the output file's suffix (.json, .csv, .md), else a table on screen and Markdown
    for any other file."""
    if fmt is not None:
        return fmt
    if output is not None and output.suffix.lower() in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[output.suffix.lower()]
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
    table = Table(title=title, caption=caption, header_style="bold", title_justify="left")
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])
        # Short columns never wrap; only long free text (summaries, sources) folds on narrow terminals.
        short = df[col].map(lambda v: len(cell(v))).max() <= 24 if len(df) else True
        table.add_column(str(col), justify="right" if numeric else "left", overflow="fold", no_wrap=bool(short))
    for row in df.itertuples(index=False):
        table.add_row(*(cell(v) for v in row))
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


def write_text(text: str, output: Path) -> None:
    """Write atomically (temp file + rename), so a failure never leaves a half-written or emptied file."""
    output = output.expanduser()
    if output.is_dir():
        raise EmobenchError(f"output path is a folder: {output}")
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(output)
    except OSError as err:
        tmp.unlink(missing_ok=True) if tmp.parent.is_dir() else None
        raise EmobenchError(f"cannot write {output}: {err.strerror or err}") from None


def emit(
    df: pd.DataFrame,
    fmt: Format | None = None,
    output: Path | None = None,
    title: str | None = None,
    meta: dict[str, Any] | None = None,
    console: Console | None = None,
) -> None:
    """Show ``df`` on screen or write it to ``output``."""
    fmt = format_for(fmt, output)
    meta = {"title": title, **(meta or {})} if title else (meta or {})
    if fmt is Format.table:
        table = rich_table(df, title=title, caption=meta.get("caption"))
        if output is None:
            (console or Console()).print(table)
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
