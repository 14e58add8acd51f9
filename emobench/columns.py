"""Typed result columns: each result names its columns once (a JSON/CSV key, a screen label, a unit), so
every output format is derived from one definition (torchscan's habit: unit and method on every metric).
A leaf: results at every layer declare their columns with it."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd


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
