"""Queries over stored benchmark records."""

from __future__ import annotations

import pandas as pd

from .errors import EmobenchError
from .store import COMPARABLE_KEYS, comparable, select

#: What identifies a measurement's conditions; records are matched on those a comparison leaves free.
MATCH_KEYS = COMPARABLE_KEYS


def compare(df: pd.DataFrame, a: dict, b: dict) -> pd.DataFrame:
    """Latency of the records matching ``b`` over those matching ``a``, joined on the match keys the filters
    leave free (the :func:`~emobench.store.comparable` record of each). Filters may name any stored field,
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
