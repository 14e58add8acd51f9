"""Composite views of library results for the CLI: several tables per result, in every output format."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
from rich.console import Console

from .render import Format, format_for, rich_table, to_text, write_text


def human(value, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "bytes":
        return f"{value / 2**20:,.2f} MiB"
    if unit in ("MACs", "FLOPs", "count", "elements"):
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
            if abs(value) >= scale:
                return f"{value:,} ({value / scale:.4g} {suffix})"
        return f"{value:,}"
    if unit == "ms":
        return f"{value:.3f}"
    return str(value)


def _metrics_view(profile) -> pd.DataFrame:
    rows = [
        {"metric": k, "value": human(m.value, m.unit), "unit": m.unit, "method": m.method, "status": m.status, "note": m.note}
        for k, m in profile.metrics.items()
    ]
    return pd.DataFrame(rows)


def _counters_view(profile) -> pd.DataFrame:
    df = profile.counters_frame().drop(columns=["model", "FLOPs (2×MACs)"])
    df["gap vs emobench"] = [None if pd.isna(g) else f"{g:+.3%}" for g in df["gap vs emobench"]]
    return df


def _layers_view(profile) -> pd.DataFrame:
    df = profile.layers.copy()
    df["share"] = [None if pd.isna(s) else f"{s:.1%}" for s in df["share"]]
    return df


def render_profiles(profiles: list, fmt: Format | None, output: Path | None, env: dict, layers: bool, console: Console) -> None:
    """table/md: per model, the metrics, the three counters and the per-layer table, then warnings.
    json: the whole structure (schema ``emobench.profile/1``). csv: one long metrics table, or with ``layers``
    the per-layer table of every model."""
    from .profile import SCHEMA

    fmt = format_for(fmt, output)
    if fmt is Format.json:
        text = json.dumps({"schema": SCHEMA, "environment": env, "profiles": [p.to_dict() for p in profiles]}, indent=2, default=str)
        _out(text + "\n", output)
        return
    if fmt is Format.csv:
        if layers:
            df = pd.concat([p.layers.assign(model=p.model) for p in profiles], ignore_index=True)
        else:
            frames = []
            for p in profiles:
                counters = p.counters_frame()
                frames.append(p.metrics_frame())
                frames.append(pd.DataFrame({
                    "model": p.model, "metric": [f"macs[{c}]" for c in counters["counter"]], "value": counters["MACs"],
                    "unit": "MACs", "method": [c.method for c in p.counters], "status": counters["status"], "note": "",
                }))
            df = pd.concat(frames, ignore_index=True)
        _out(to_text(df, Format.csv), output)
        return
    sections = []
    for p in profiles:
        title = f"{p.model} ({p.form}) at {'x'.join(map(str, p.input_shape))}"
        sections.append((title, _metrics_view(p)))
        sections.append((f"{p.model}: MACs by counter (unit MACs; FLOPs = 2 × MACs)", _counters_view(p)))
        if len(p.layers):
            sections.append((f"{p.model}: per layer (MACs by emobench)", _layers_view(p)))
    warnings = [f"{p.model}: {w}" for p in profiles for w in p.warnings]
    if fmt is Format.md:
        text = "".join(f"### {t}\n\n{to_text(df, Format.md)}\n" for t, df in sections)
        if warnings:
            text += "### Warnings\n\n" + "".join(f"- {w}\n" for w in warnings)
        _out(text, output)
        return
    target = console if output is None else Console(file=io.StringIO(), width=200, record=True)
    for t, df in sections:
        target.print(rich_table(df, title=t))
    for w in warnings:
        target.print(f"[yellow]warning:[/] {w}", highlight=False)
    target.print(f"[dim]torch {env['torch']}, {env['threads']} threads, {env['cpu']}[/]")
    if output is not None:
        write_text(target.export_text(), output)


def _out(text: str, output: Path | None) -> None:
    if output is None:
        print(text, end="")
    else:
        write_text(text, output)
