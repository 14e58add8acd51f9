"""Queries over stored benchmark records."""

from __future__ import annotations

import pandas as pd

from .errors import EmobenchError
from .store import newest

#: What identifies a measurement's conditions; records are matched on those a comparison leaves free.
MATCH_KEYS = ["model", "backend", "form", "batch", "threads", "resolution", "dtype", "machine"]


def compare(df: pd.DataFrame, a: dict, b: dict) -> pd.DataFrame:
    """Latency of the records matching ``b`` over those matching ``a``, joined on the other keys."""
    for key in [*a, *b]:
        if key not in df.columns:
            raise EmobenchError(f"unknown record field '{key}'; fields: {', '.join(MATCH_KEYS)}")
    ok = df[df["status"] == "ok"]

    def pick(filters: dict) -> pd.DataFrame:
        sel = ok
        for k, v in filters.items():
            sel = sel[sel[k].astype(str) == str(v)]
        return sel

    free = [k for k in MATCH_KEYS if k not in a and k not in b]
    if not free:
        raise EmobenchError("A and B fix every matching key; leave at least one (e.g. model) free to compare on")
    left, right = pick(a), pick(b)
    if left.empty or right.empty:
        raise EmobenchError(f"no stored 'ok' records match {'A' if left.empty else 'B'}")
    left, right = newest(left, free), newest(right, free)
    joined = left.merge(right, on=free, suffixes=(" A", " B"))
    if joined.empty:
        raise EmobenchError("A and B have no records under matching conditions (" + ", ".join(free) + ")")
    out = joined[free + ["median_ms A", "median_ms B"]].rename(columns={"median_ms A": "A ms", "median_ms B": "B ms"})
    out["B / A"] = out["B ms"] / out["A ms"]
    return out
