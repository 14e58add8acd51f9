"""Rendering library results (pandas DataFrames) as a rich table, JSON, CSV or Markdown, to screen or file."""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import sys
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Column:
    """One column of a result: ``key`` names it in JSON and CSV (snake_case, stable), ``label`` heads it on
    screen and in Markdown, ``unit`` goes to ``meta.units`` (one definition drives both views)."""

    key: str
    label: str
    unit: str | None = None


_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_LABELLED_UNIT = re.compile(r"^(?P<name>[^()]+?) \((?P<unit>[^()]+)\)(?: (?P<suffix>.+))?$")
_SYMBOLS = {"Δ %": "delta pct", "Δ": "delta", "%": "pct", "×": "x", "→": " to ", "|": " ", "²": "2"}


def snake(label: str) -> str:
    """A display label as a snake_case key: ``"rf unclipped"`` → ``rf_unclipped``, ``"in→mid→out"`` →
    ``in_to_mid_to_out``."""
    text = str(label)
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, f" {word} ")
    key = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return key if key and not key[0].isdigit() else f"c_{key}"


def column_for(label: str) -> Column:
    """The column a label stands for when no definition names it: ``"Params (M) reported"`` is key
    ``params_reported`` in unit ``M`` (the paper tables' ``name (unit) suffix`` convention), a ``Δ %`` column is
    in ``%``; anything else is its snake_case form without a unit."""
    m = _LABELLED_UNIT.match(str(label))
    if m:
        suffix = m["suffix"] or ""
        unit = "%" if "%" in suffix else m["unit"]
        return Column(snake(f"{m['name']} {suffix}"), str(label), unit)
    return Column(snake(label), str(label))


def machine_frame(df: pd.DataFrame, columns: list[Column] | tuple[Column, ...] = ()) -> tuple[pd.DataFrame, dict[str, str]]:
    """``df`` (columns are display labels) with its columns renamed to keys, and the units by key. A column
    named by a :class:`Column`'s label or key takes that definition; any other is derived by :func:`column_for`."""
    by_name = {c.label: c for c in columns} | {c.key: c for c in columns}
    defs = [by_name.get(str(col)) or column_for(str(col)) for col in df.columns]
    keys = [c.key for c in defs]
    clash = {k for k in keys if keys.count(k) > 1}
    if clash:  # two labels mapping to one key would silently lose a column
        raise ValueError(f"columns {sorted(clash)} map to the same key")
    return df.set_axis(keys, axis=1), {c.key: c.unit for c in defs if c.unit}


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
