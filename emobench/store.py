"""The results store: every benchmark measurement as a record with its environment, in SQLite.

One file (default: the user's data directory; ``--store`` or ``EMOBENCH_STORE`` override). Each record is
written in its own transaction in WAL mode, so concurrent benchmark processes and a run killed mid-way lose
no stored record. Stores from several machines merge by record id.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .errors import EmobenchError

ENV_STORE = "EMOBENCH_STORE"


def default_store_path() -> Path:
    env = os.environ.get(ENV_STORE)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("emobench", appauthor=False)) / "results.sqlite"


@dataclass
class BenchRecord:
    """One measurement: a model on a backend at one batch size, thread count, resolution and dtype."""

    model: str
    backend: str
    form: str
    batch: int
    threads: int
    resolution: str
    dtype: str
    status: str  # ok | parity-failed | error | skipped
    form_requested: str | None = None  # what --form asked for (auto, or a formulation); ``form`` is what ran
    median_ms: float | None = None
    mean_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    iqr_ms: float | None = None
    cv: float | None = None
    noisy: bool | None = None
    runs: int | None = None
    throughput: float | None = None  # images / s
    parity_max_abs: float | None = None
    parity_ok: bool | None = None
    tolerance: float | None = None
    export_s: float | None = None
    artifact_bytes: int | None = None
    cached: bool | None = None
    error: str | None = None
    rounds: int | None = None  # fresh worker processes whose timings were pooled
    round_spread: float | None = None  # (max - min) / median of the per-round medians
    import_s: float | None = None  # cold start: importing the runtime
    load_s: float | None = None  # cold start: loading the artifact and creating the session
    first_ms: float | None = None  # cold start: the first inference
    rss_base_mb: float | None = None  # worker's resident memory after the imports (MiB)
    peak_rss_mb: float | None = None  # worker's peak resident memory (MiB)
    precision: str | None = None  # what the runtime reports computing in
    explain: dict[str, Any] = field(default_factory=dict)  # what the runtime ran (delegation, fallbacks, precisions)
    machine: str = ""
    env: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex)


_JSON_FIELDS = {"env", "params", "explain"}
_COLUMNS = [f.name for f in fields(BenchRecord)]


def _column_type(f) -> str:
    if f.name in _JSON_FIELDS:
        return "TEXT"
    base = str(f.type).split("|")[0].strip()
    return {"int": "INTEGER", "float": "REAL", "bool": "INTEGER"}.get(base, "TEXT")


def _create_table() -> str:
    cols = ["uuid TEXT PRIMARY KEY" if f.name == "uuid" else f"{f.name} {_column_type(f)}" for f in fields(BenchRecord)]
    return f"CREATE TABLE IF NOT EXISTS records ({', '.join(cols)})"


#: columns every emobench store has had; newer ones are added to older stores (additive migration)
_CORE_COLUMNS = {"uuid", "model", "backend", "form", "batch", "threads", "resolution", "dtype", "status", "created"}


class ResultStore:
    """An SQLite file of :class:`BenchRecord` rows."""

    def __init__(self, path: str | os.PathLike | None = None, readonly: bool = False) -> None:
        """Open (or, unless ``readonly``, create) a store. A read-only open changes nothing in the file, and a
        store that does not exist reads as empty."""
        self.path = Path(path).expanduser() if path else default_store_path()
        if self.path.is_dir():
            raise EmobenchError(f"results store is a folder, not a file: {self.path}")
        self._conn = None
        self._missing = []
        if readonly and not self.path.exists():
            return  # a reader treats a store that does not exist as empty, and creates nothing
        try:
            if readonly:
                self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
                self._conn.execute("PRAGMA busy_timeout = 30000")
                # Check an existing file before writing anything into it.
                tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if tables and "records" not in tables:
                    raise EmobenchError(f"{self.path} is an SQLite file but not an emobench results store")
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute(_create_table())
            present = {row[1] for row in self._conn.execute("PRAGMA table_info(records)")}
            if _CORE_COLUMNS - present:
                raise EmobenchError(f"results store {self.path} lacks columns {sorted(_CORE_COLUMNS - present)}: not an emobench store")
            self._missing = [f for f in fields(BenchRecord) if f.name not in present]
            if self._missing and not readonly:
                with self._conn:  # an older store: add the newer columns (existing rows read as empty)
                    for f in self._missing:
                        self._conn.execute(f"ALTER TABLE records ADD COLUMN {f.name} {_column_type(f)}")
                self._missing = []
        except sqlite3.DatabaseError as err:
            self.close()
            raise EmobenchError(f"cannot use results store {self.path}: {err}") from None
        except OSError as err:
            self.close()
            raise EmobenchError(f"cannot create results store {self.path}: {err.strerror or err}") from None
        except EmobenchError:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, record: BenchRecord) -> None:
        """Insert one record in its own transaction (atomic: all of it or nothing)."""
        row = asdict(record)
        for key in _JSON_FIELDS:
            row[key] = json.dumps(row[key], sort_keys=True, default=str)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute(
                    f"INSERT OR IGNORE INTO records ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                    [row[c] for c in _COLUMNS],
                )
                self._conn.execute("COMMIT")
        except sqlite3.DatabaseError as err:
            raise EmobenchError(f"cannot write to results store {self.path}: {err}") from None

    def records(self, **filters: Any) -> pd.DataFrame:
        """All records (newest last), filtered by equality on any column (``model="emo_1m"``, ``backend=...``)."""
        unknown = set(filters) - set(_COLUMNS)
        if unknown:
            raise EmobenchError(f"unknown record field(s) {sorted(unknown)}; fields: {', '.join(_COLUMNS)}")
        where = " AND ".join(f"{k} = ?" for k in filters)
        missing = {f.name for f in self._missing}
        if self._conn is None or missing & set(filters):
            return pd.DataFrame(columns=_COLUMNS)
        select = ", ".join(f"NULL AS {c}" if c in missing else c for c in _COLUMNS)
        sql = f"SELECT {select} FROM records" + (f" WHERE {where}" if where else "") + " ORDER BY created"
        try:
            rows = self._conn.execute(sql, list(filters.values())).fetchall()
        except sqlite3.DatabaseError as err:
            raise EmobenchError(f"cannot read results store {self.path}: {err}") from None
        df = pd.DataFrame(rows, columns=_COLUMNS)
        for key in _JSON_FIELDS:
            df[key] = [json.loads(v) if isinstance(v, str) and v else {} for v in df[key]]
        return df

    def merge(self, others: Iterable[str | os.PathLike]) -> int:
        """Copy every record of other stores into this one (records already here are kept as they are)."""
        added = 0
        for other in others:
            other = Path(other).expanduser()
            if not other.is_file():
                raise EmobenchError(f"no results store at {other}")
            with ResultStore(other, readonly=True) as src:
                df = src.records()
            before = self.count()
            for row in df.to_dict(orient="records"):
                self.add(BenchRecord(**{k: (None if _isnan(v) else v) for k, v in row.items()}))
            added += self.count() - before
        return added

    def count(self) -> int:
        if self._conn is None:
            return 0
        return self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]


def newest(records: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The newest record for each combination of ``keys`` (records as ``ResultStore.records`` returns them)."""
    return records.sort_values("created").groupby(keys, as_index=False).last()


def headline(records: pd.DataFrame) -> pd.DataFrame:
    """The records that stand for "this model's latency on this backend" in tables and charts: measured (ok) at
    batch 1 in fp32 with the formulation ``--form auto`` chose (or, for records older than formulations, the
    default of the day), the newest per (model, backend). A bf16 run or a forced formulation never stands in."""
    if records.empty:
        return records
    sel = records[(records["status"] == "ok") & (records["batch"] == 1) & (records["dtype"] == "fp32")]
    if "form_requested" in sel:
        sel = sel[sel["form_requested"].isna() | (sel["form_requested"] == "auto")]
    return newest(sel, ["model", "backend"]) if not sel.empty else sel


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and value != value
