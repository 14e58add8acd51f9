"""Queries over stored benchmark records: selection, the comparable record per conditions, A-vs-B comparisons with
noise-aware verdicts."""

from __future__ import annotations

from typing import Any

import pandas as pd

from emobench.columns import Column
from emobench.errors import EmobenchError

#: what identifies a measurement's conditions (compare matches records on the keys its filters leave free)
COMPARABLE_KEYS = ["model", "backend", "form", "batch", "threads", "resolution", "dtype", "machine"]

#: What identifies a measurement's conditions; records are matched on those a comparison leaves free.
MATCH_KEYS = COMPARABLE_KEYS

#: ``emobench results compare``'s columns and schema (B vs A per matched pair)
COMPARE_SCHEMA = "emobench.compare/1"
COMPARE_COLUMNS = (
    Column("a_ms", "A ms", "ms"), Column("b_ms", "B ms", "ms"), Column("ratio", "B / A", "B median / A median"),
    Column("noise", "noise", "relative (IQR / median or round spread, the larger of A and B)"),
    Column("verdict", "verdict"),
)


def compare(df: pd.DataFrame, a: dict, b: dict) -> pd.DataFrame:
    """Latency of the records matching ``b`` over those matching ``a``, joined on the match keys the filters
    leave free (the :func:`~emobench.results.store.comparable` record of each). Filters may name any stored field,
    the environment columns included (``torch_version=2.13.0``, ``cpu_flags=avx512f``)."""
    for key in [*a, *b]:
        if key not in df.columns:
            raise EmobenchError(f"unknown record field '{key}'; fields: {', '.join(df.columns)}")
    free = [k for k in MATCH_KEYS if k not in a and k not in b]
    if not free:
        raise EmobenchError("A and B fix every matching key; leave at least one (e.g. model) free to compare on")
    left, right = comparable(select(df, a), free), comparable(select(df, b), free)
    if left.empty or right.empty:
        raise EmobenchError(f"no stored 'ok' records match {'A' if left.empty else 'B'}")
    joined = left.merge(right, on=free, suffixes=(" A", " B"))
    if joined.empty:
        raise EmobenchError("A and B have no records under matching conditions (" + ", ".join(free) + ")")
    out = joined[free + ["median_ms A", "median_ms B"]].rename(columns={"median_ms A": "A ms", "median_ms B": "B ms"})
    out["A ms"] = out["A ms"].astype(float)
    out["B ms"] = out["B ms"].astype(float)
    out["B / A"] = out["B ms"] / out["A ms"]
    out["noise"] = [max(_relative_noise(row, " A"), _relative_noise(row, " B")) for _, row in joined.iterrows()]
    out["verdict"] = [verdict(r, n) for r, n in zip(out["B / A"], out["noise"])]
    return out


def _relative_noise(row: pd.Series, side: str) -> float:
    """How much this measurement varies by itself, relative to its median: the larger of its IQR / median and
    its round-to-round spread (records from before rounds have only the IQR)."""
    median = row.get(f"median_ms{side}")
    parts = []
    iqr = row.get(f"iqr_ms{side}")
    if iqr is not None and iqr == iqr and median:
        parts.append(iqr / median)
    spread = row.get(f"round_spread{side}")
    if spread is not None and spread == spread:
        parts.append(spread)
    return max(parts, default=0.0)


def verdict(ratio: float, noise: float) -> str:
    """``slower`` / ``faster`` when B / A leaves the band 1 ± noise, else ``same`` (within the measurements'
    own variation)."""
    if ratio > 1 + noise:
        return "slower"
    if ratio < 1 - noise:
        return "faster"
    return "same"


def regressions(comparison: pd.DataFrame, fail_above_pct: float) -> pd.DataFrame:
    """The pairs where B is slower beyond its noise and by more than ``fail_above_pct`` percent."""
    return comparison[(comparison["verdict"] == "slower") & ((comparison["B / A"] - 1) * 100 > fail_above_pct)]



def select(records: pd.DataFrame, filters: dict[str, Any]) -> pd.DataFrame:
    """Records whose fields equal the filters, compared as text (``batch=1`` matches 1); ``cpu_flags=X``
    matches records whose flag list contains every flag of X (``avx512f+amx_bf16``)."""
    sel = records
    for key, value in filters.items():
        if key not in sel.columns:
            raise EmobenchError(f"unknown record field '{key}'; fields: {', '.join(records.columns)}")
        if key == "cpu_flags":
            wanted = {f for f in str(value).split("+") if f}
            mask = [isinstance(v, str) and wanted <= set(v.split(",")) for v in sel[key]]
        else:
            mask = [v is not None and v == v and str(v) == str(value) for v in sel[key]]
        sel = sel[mask]
    return sel


def comparable(records: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """The one definition of "the record that stands for a measurement": measured (status ok, a numeric
    median), then the newest per combination of ``keys`` (default :data:`COMPARABLE_KEYS`), whole rows (never
    fields mixed from several records). Every consumer (compare, ratios, tables, report, charts) uses this."""
    keys = list(keys or COMPARABLE_KEYS)
    if records.empty:
        return records
    ok = records[(records["status"] == "ok") & pd.to_numeric(records["median_ms"], errors="coerce").notna()]
    return newest(ok, keys)


def newest(records: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The newest record for each combination of ``keys``, as a whole row (no status filter: see
    :func:`comparable`). Records with an empty key (None) group together."""
    if records.empty:
        return records
    ordered = records.sort_values("created", kind="stable")
    return ordered.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)


def headline(records: pd.DataFrame) -> pd.DataFrame:
    """The records that stand for "this model's latency on this backend" in the speed table and the latency
    chart: :func:`comparable` records at batch 1 in fp32 with the formulation ``--form auto`` chose (or, for
    records older than formulations, the default of the day), at the most threads measured for that (model,
    backend), the newest per (model, backend). A bf16 or batch-8 run, a forced formulation or a 1-thread run
    where a 2-thread one exists never stands in."""
    if records.empty:
        return records
    sel = records[(records["batch"].astype(str) == "1") & (records["dtype"] == "fp32")]
    if "form_requested" in sel:
        sel = sel[sel["form_requested"].isna() | (sel["form_requested"] == "auto")]
    sel = sel[(sel["status"] == "ok") & pd.to_numeric(sel["median_ms"], errors="coerce").notna()]
    if sel.empty:
        return sel
    if "threads" in sel:
        sel = sel[sel["threads"] == sel.groupby(["model", "backend"])["threads"].transform("max")]
    return comparable(sel, ["model", "backend"])
