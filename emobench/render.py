"""Rendering library results (pandas DataFrames) as a rich table, JSON, CSV or Markdown, to screen or file."""

from __future__ import annotations

import io
import json
import math
import os
import stat
import sys
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
    """Write ``text`` to ``output`` without ever turning what is there into something else.

    ``-`` is standard output. A FIFO, a character device (``/dev/stdout``, ``/dev/null``, ``>(…)``) or any other
    file that is not a regular file is written to as a stream. A symbolic link is followed: its target is
    written and the link stays a link. A regular file is replaced atomically (temporary file + rename, its
    permission bits kept), so a failure never leaves it half-written; a read-only file is refused, unchanged."""
    if str(output) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    output = output.expanduser()
    try:
        st = os.stat(output)  # follows links
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise EmobenchError(f"cannot write {output}: {err.strerror or err}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise EmobenchError(f"output path is a folder: {output}")
    try:
        if st is not None and not stat.S_ISREG(st.st_mode):
            with open(output, "w") as stream:
                stream.write(text)
            return
        if st is not None and not st.st_mode & 0o222:
            raise EmobenchError(f"{output} is read-only: left unchanged")
        target = Path(os.path.realpath(output)) if output.is_symlink() else output
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text)
            if st is not None:
                os.chmod(tmp, stat.S_IMODE(st.st_mode))
            tmp.replace(target)
        except OSError:
            tmp.unlink(missing_ok=True) if tmp.parent.is_dir() else None
            raise
    except OSError as err:
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
