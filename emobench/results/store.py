"""The results store: every benchmark measurement as a record with its environment, in SQLite.

One file (default: the user's data directory; ``--store`` or ``EMOBENCH_STORE`` override). Each record is
written in its own transaction in WAL mode, so concurrent benchmark processes and a run killed mid-way lose
no stored record. Stores from several machines merge by record id.

Schema versions live in ``PRAGMA user_version`` (see :data:`SCHEMA_VERSION` and docs/benchmarking.md): a writer
migrates an older store additively (new columns, existing rows kept, environment columns backfilled from the
``env`` JSON); readers open read-only and never migrate; a newer store is read with its unknown columns kept.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from emobench.errors import EmobenchError
from emobench.results.query import COMPARABLE_KEYS, comparable, headline, newest, select  # noqa: F401 - re-exported
from emobench.results.record import ENV_COLUMNS, JSON_FIELDS, BenchRecord, env_columns  # noqa: F401 - BenchRecord re-exported

ENV_STORE = "EMOBENCH_STORE"

#: The store schema this emobench writes. 0: stores from before versioning (any older column set);
#: 1: every :class:`BenchRecord` field below, the environment as columns, a uuid index;
#: 2: accuracy on images and int8 (``images`` … ``calibration``), added to older stores as NULL columns;
#: 3: ``breakdown`` and ``crosscheck`` (JSON objects), the host sentinel and the rounds' interval
#:    (``sentinel_ms`` … ``stop``), added likewise;
#: 4: ``train`` (JSON: a training step's cost from ``emobench train-cost``), added likewise;
#: 5: the ``sweep_points`` table (``emobench sweep``: one row per design point of a sweep, written once);
#: 6: ``sentinel_ratio`` (the median in units of the run's host sentinel), added likewise.
SCHEMA_VERSION = 6

#: a sweep's points: counted once (the primary key refuses a second row), predicted and measured filled in later
SWEEP_COLUMNS = {
    "sweep": "TEXT NOT NULL", "point": "TEXT NOT NULL", "seq": "INTEGER", "reference": "TEXT", "values_json": "TEXT",
    "status": "TEXT", "reason": "TEXT", "params": "INTEGER", "macs": "INTEGER", "activations": "INTEGER",
    "rf": "INTEGER", "first_global": "TEXT", "predicted": "TEXT", "measured": "TEXT", "worker": "TEXT",
    "created": "REAL",
}
_SWEEP_JSON = ("values_json", "predicted", "measured")


def _create_sweep_table() -> str:
    cols = ", ".join(f"{name} {kind}" for name, kind in SWEEP_COLUMNS.items())
    return f"CREATE TABLE IF NOT EXISTS sweep_points ({cols}, PRIMARY KEY (sweep, point))"


def default_store_path() -> Path:
    env = os.environ.get(ENV_STORE)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("emobench", appauthor=False)) / "results.sqlite"


_COLUMNS = [f.name for f in fields(BenchRecord)]


def _column_type(f) -> str:
    if f.name in JSON_FIELDS:
        return "TEXT"
    base = str(f.type).split("|")[0].strip()
    return {"int": "INTEGER", "float": "REAL", "bool": "INTEGER"}.get(base, "TEXT")


_TYPES = {f.name: _column_type(f) for f in fields(BenchRecord)}
#: columns whose stored value must be a number (or NULL); text there marks a corrupt row
_NUMERIC = {name for name, kind in _TYPES.items() if kind in ("INTEGER", "REAL")}


def _q(name: str) -> str:
    """An SQL identifier, quoted (column names of someone else's store may hold anything)."""
    return '"' + name.replace('"', '""') + '"'


def _create_table() -> str:
    cols = ["uuid TEXT PRIMARY KEY" if name == "uuid" else f"{name} {kind}" for name, kind in _TYPES.items()]
    return f"CREATE TABLE IF NOT EXISTS records ({', '.join(cols)})"


#: columns every emobench store has had; newer ones are added to older stores (additive migration)
_CORE_COLUMNS = {"uuid", "model", "backend", "form", "batch", "threads", "resolution", "dtype", "status", "created"}


def _warn(message: str) -> None:
    # one line on stderr, from the library itself so that every reader (tables, report) reports alike
    print(f"warning: {message}", file=sys.stderr, flush=True)


class ResultStore:
    """An SQLite file of :class:`BenchRecord` rows."""

    def __init__(self, path: str | os.PathLike | None = None, readonly: bool = False) -> None:
        """Open (or, unless ``readonly``, create and migrate) a store. A read-only open changes nothing in the
        file, and a store that does not exist reads as empty. A writer checks that it can write, before
        anything is measured."""
        self.path = Path(path).expanduser() if path else default_store_path()
        if self.path.is_dir():
            raise EmobenchError(f"results store is a folder, not a file: {self.path}")
        self.readonly = readonly
        self._conn = None
        self.columns: list[str] = []  # the table's columns as they are in the file
        self.version = 0
        self.corrupt: list[str] = []  # uuids of the rows the last read skipped
        if readonly and not self.path.exists():
            return  # a reader treats a store that does not exist as empty, and creates nothing
        try:
            if readonly:
                self._conn = _connect_readonly(self.path)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
                self._conn.execute("PRAGMA busy_timeout = 30000")
                # Check an existing file before writing anything into it.
                tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if tables and "records" not in tables:
                    raise EmobenchError(f"{self.path} is an SQLite file but not an emobench results store")
                self._migrate()  # first: a store refused for writing is left byte for byte as it was
                self._conn.execute("PRAGMA journal_mode = WAL")
            self._load_schema()
            if _CORE_COLUMNS - set(self.columns):
                raise EmobenchError(f"results store {self.path} lacks columns {sorted(_CORE_COLUMNS - set(self.columns))}: not an emobench store")
        except sqlite3.DatabaseError as err:
            self.close()
            raise EmobenchError(f"cannot use results store {self.path}: {err}") from None
        except OSError as err:
            self.close()
            raise EmobenchError(f"cannot create results store {self.path}: {err.strerror or err}") from None
        except EmobenchError:
            self.close()
            raise

    # --- schema ---------------------------------------------------------------------------------------------

    def _load_schema(self) -> None:
        self.version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        self.columns = [row[1] for row in self._conn.execute("PRAGMA table_info(records)")]

    def _migrate(self) -> None:
        """Create, or bring an older store to :data:`SCHEMA_VERSION` additively, in one write transaction
        (which also proves the file is writable); refuse a store this emobench cannot write valid rows to."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")  # re-read inside the lock: another writer may have migrated meanwhile
        try:
            exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'").fetchone()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if not exists:
                conn.execute(_create_table())
            info = list(conn.execute("PRAGMA table_info(records)"))
            present = {row[1] for row in info}
            if _CORE_COLUMNS - present:
                raise EmobenchError(f"results store {self.path} lacks columns {sorted(_CORE_COLUMNS - present)}: not an emobench store")
            # cid, name, type, notnull, default, pk: a NOT NULL column without default that emobench does not
            # fill would make every insert fail (or, with OR IGNORE, vanish)
            blocking = [row[1] for row in info if row[1] not in _TYPES and row[3] and row[4] is None and not row[5]]
            if blocking:
                newer = f"schema version {version} (this emobench writes {SCHEMA_VERSION})" if version > SCHEMA_VERSION else f"schema version {version}"
                raise EmobenchError(f"cannot write to results store {self.path}: {newer}, column(s) {', '.join(blocking)} "
                                    f"NOT NULL without default are unknown to emobench {_version()} (upgrade emobench, or use another --store)")
            missing = [name for name in _TYPES if name not in present]
            sweeps = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sweep_points'").fetchone()
            if version >= SCHEMA_VERSION and exists and not missing and sweeps:
                # nothing to migrate; a no-op header write (rolled back) checks that the file is writable
                conn.execute(f"PRAGMA user_version = {version}")
                conn.execute("ROLLBACK")
                return
            for name in missing:  # also into a newer store that lacks one: adding a column is additive
                conn.execute(f"ALTER TABLE records ADD COLUMN {name} {_TYPES[name]}")
            conn.execute(_create_sweep_table())
            if exists:
                self._backfill_env(conn)
            # merge and add look records up by uuid; a store without a key on it gets an index (not UNIQUE:
            # an old store may already hold duplicates, and migration never rejects stored rows)
            conn.execute("CREATE INDEX IF NOT EXISTS records_uuid ON records (uuid)")
            conn.execute(f"PRAGMA user_version = {max(version, SCHEMA_VERSION)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _backfill_env(conn: sqlite3.Connection) -> None:
        """Fill the environment columns of older rows from their ``env`` JSON, where it has them."""
        rows = conn.execute("SELECT rowid, env FROM records WHERE env IS NOT NULL AND emobench_version IS NULL "
                            "AND cpu_model IS NULL").fetchall()
        for rowid, text in rows:
            try:
                values = env_columns(json.loads(text)) if isinstance(text, str) else {}
            except ValueError:
                continue  # a corrupt env stays as it is (readers report it)
            values = {k: v for k, v in values.items() if v is not None}
            if values:
                sets = ", ".join(f"{k} = COALESCE({k}, ?)" for k in values)
                conn.execute(f"UPDATE records SET {sets} WHERE rowid = ?", [*values.values(), rowid])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- sweeps ---------------------------------------------------------------------------------------------

    def add_sweep_point(self, row: dict[str, Any]) -> bool:
        """Store one counted point of a sweep; False when the sweep already has it (a point is done once)."""
        if self._conn is None or self.readonly:
            raise EmobenchError(f"results store {self.path} is open read-only")
        values = {k: (json.dumps(v, default=str) if k in _SWEEP_JSON and v is not None else v)
                  for k, v in row.items() if k in SWEEP_COLUMNS}
        cur = self._conn.execute(
            f"INSERT OR IGNORE INTO sweep_points ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            list(values.values()))
        return cur.rowcount == 1

    def update_sweep_point(self, sweep: str, point: str, **fields: Any) -> None:
        """Fill in a stored point's ``predicted`` or ``measured`` (JSON objects, merged into what is there)."""
        current = self.sweep_points(sweep, point)
        if not current:
            raise EmobenchError(f"sweep {sweep} has no point {point}")
        sets, params = [], []
        for key, value in fields.items():
            if key in _SWEEP_JSON and isinstance(value, dict):
                value = json.dumps({**(current[0].get(key) or {}), **value}, default=str)
            sets.append(f"{key} = ?")
            params.append(value)
        self._conn.execute(f"UPDATE sweep_points SET {', '.join(sets)} WHERE sweep = ? AND point = ?",
                           [*params, sweep, point])

    def sweep_points(self, sweep: str | None = None, point: str | None = None) -> list[dict[str, Any]]:
        """The stored points (of one sweep, or one point of it) in the order they were counted."""
        if self._conn is None:
            return []
        if not self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sweep_points'").fetchone():
            return []  # a store from before sweeps
        where, params = [], []
        for key, value in (("sweep", sweep), ("point", point)):
            if value is not None:
                where.append(f"{key} = ?")
                params.append(value)
        sql = "SELECT * FROM sweep_points" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY sweep, seq"
        cur = self._conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        rows = []
        for values in cur.fetchall():
            row = dict(zip(names, values))
            for key in _SWEEP_JSON:
                try:
                    row[key] = json.loads(row[key]) if isinstance(row.get(key), str) else row.get(key)
                except ValueError:
                    row[key] = None
            rows.append(row)
        return rows

    # --- writing --------------------------------------------------------------------------------------------

    def add(self, record: BenchRecord) -> bool:
        """Insert one record in its own transaction (atomic: all of it or nothing). False when a record with
        its uuid is already stored (nothing is replaced); an insert that does not land is an error."""
        row = asdict(record)
        for key in JSON_FIELDS:
            row[key] = json.dumps(row[key], sort_keys=True, default=str)
        return self._insert_rows([row]) == 1

    def _insert_rows(self, rows: list[dict[str, Any]]) -> int:
        """Insert rows whose uuid is not stored yet, in one transaction; each insert is checked by uuid."""
        if self._conn is None or self.readonly:
            raise EmobenchError(f"results store {self.path} is open read-only")
        added = 0
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    key = row.get("uuid")
                    if key is None:
                        raise EmobenchError("a record without uuid cannot be stored")
                    if self._conn.execute("SELECT 1 FROM records WHERE uuid = ? LIMIT 1", [key]).fetchone():
                        continue  # dedup by uuid, whether or not the table has a UNIQUE key on it
                    cols = [c for c in row if c in self.columns]
                    self._conn.execute(f"INSERT INTO records ({', '.join(map(_q, cols))}) VALUES ({', '.join('?' for _ in cols)})",
                                       [row[c] for c in cols])
                    # a trigger (RAISE(IGNORE)) or a conflict clause can drop an insert without an error
                    if not self._conn.execute("SELECT 1 FROM records WHERE uuid = ? LIMIT 1", [key]).fetchone():
                        raise EmobenchError(f"results store {self.path} did not keep record {key} (a trigger or "
                                            f"constraint of that store dropped the insert): nothing was stored")
                    added += 1
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as err:
            raise EmobenchError(f"cannot write to results store {self.path}: {err}") from None
        return added

    def _add_columns(self, decl: dict[str, str]) -> None:
        """Add the columns another store has and this one lacks (nullable, no default: purely additive)."""
        new = {k: v for k, v in decl.items() if k not in self.columns}
        if not new:
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            present = {row[1] for row in self._conn.execute("PRAGMA table_info(records)")}
            for name, kind in new.items():
                if name not in present:
                    safe_type = "".join(ch for ch in kind if ch.isalnum() or ch in " ()")  # a type name, nothing more
                    self._conn.execute(f"ALTER TABLE records ADD COLUMN {_q(name)} {safe_type}")
            self._conn.execute("COMMIT")
        except sqlite3.DatabaseError as err:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise EmobenchError(f"cannot add columns to results store {self.path}: {err}") from None
        self._load_schema()

    def merge(self, others: Iterable[str | os.PathLike]) -> int:
        """Copy every record of other stores into this one, by uuid: records already here are kept as they
        are, columns unknown to emobench come along (the target gains them), corrupt rows are skipped."""
        added = 0
        for other in others:
            other = Path(other).expanduser()
            if not other.is_file():
                raise EmobenchError(f"no results store at {other}")
            with ResultStore(other, readonly=True) as src:
                rows, decl = src._raw_rows()
            for row in rows:  # a source read without migrating: its environment columns from its env JSON
                if row.get("emobench_version") is None and row.get("cpu_model") is None and isinstance(row.get("env"), str):
                    filled = env_columns(json.loads(row["env"])) if row["env"] else {}
                    row.update({k: v for k, v in filled.items() if v is not None})
            self._add_columns({k: v for k, v in decl.items() if k not in _TYPES})
            added += self._insert_rows(rows)
        return added

    # --- reading --------------------------------------------------------------------------------------------

    def _declared(self) -> dict[str, str]:
        return {row[1]: row[2] or "" for row in self._conn.execute("PRAGMA table_info(records)")}

    def _raw_rows(self) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Every valid row as stored (JSON as text), known columns first, and the declared column types;
        corrupt rows are reported and left out."""
        if self._conn is None:
            return [], {}
        decl = self._declared()
        extra = [c for c in self.columns if c not in _TYPES]
        known = [c for c in _COLUMNS if c in self.columns]
        select = ", ".join([*(_q(c) if c in known else f"NULL AS {c}" for c in _COLUMNS), *map(_q, extra)])
        order = " ORDER BY created" if "created" in self.columns else ""
        try:
            fetched = self._conn.execute(f"SELECT {select} FROM records{order}").fetchall()
        except sqlite3.DatabaseError as err:
            raise EmobenchError(f"cannot read results store {self.path}: {err}") from None
        names = [*_COLUMNS, *extra]
        rows, self.corrupt = [], []
        for values in fetched:
            row = dict(zip(names, values))
            if _corrupt(row):
                self.corrupt.append(str(row.get("uuid")))
            else:
                rows.append(row)
        if self.corrupt:
            shown = ", ".join(self.corrupt[:10]) + (f" and {len(self.corrupt) - 10} more" if len(self.corrupt) > 10 else "")
            _warn(f"{len(self.corrupt)} corrupt record(s) in {self.path} skipped (bad JSON or text in a numeric column): {shown}")
        return rows, decl

    def records(self, **filters: Any) -> pd.DataFrame:
        """All valid records (oldest first), every :class:`BenchRecord` field plus any column this emobench does
        not know, filtered by :func:`select` (``model="emo_1m"``, ``cpu_flags="avx512f"``, …). Corrupt rows
        are reported on stderr (count and uuids) and skipped."""
        known = [*_COLUMNS, *(c for c in self.columns if c not in _TYPES)]
        unknown = set(filters) - set(known)
        if unknown:
            raise EmobenchError(f"unknown record field(s) {sorted(unknown)}; fields: {', '.join(known)}")
        rows, _ = self._raw_rows()
        df = pd.DataFrame(rows, columns=known)
        for key in JSON_FIELDS:
            df[key] = [json.loads(v) if isinstance(v, str) and v else {} for v in df[key]]
        if len(df):
            # rows from before the environment columns (a store read without migrating): fill from ``env``
            filled = pd.DataFrame([env_columns(e) for e in df["env"]], index=df.index, columns=list(ENV_COLUMNS))
            for column in ENV_COLUMNS:
                df[column] = df[column].astype(object).where(df[column].notna(), filled[column])
        return select(df, filters)

    def count(self) -> int:
        if self._conn is None:
            return 0
        return self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """Open without writing anything; a WAL store in a folder this user cannot write to (where SQLite cannot
    create its shared-memory file) is read as an immutable snapshot."""
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30.0)
    try:
        conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if os.access(path.parent, os.W_OK):
            raise
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=30.0)


def _corrupt(row: dict[str, Any]) -> bool:
    for key in JSON_FIELDS:
        value = row.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            return True
        try:
            if not isinstance(json.loads(value), dict):
                return True
        except ValueError:
            return True
    # SQLite keeps text that is not a number as text even in a REAL/INTEGER column
    return any(isinstance(row.get(c), (str, bytes)) for c in _NUMERIC)


def check_writable(path: str | os.PathLike | None = None) -> Path:
    """Make sure records can be stored at ``path`` (default: the default store) before anything is measured:
    creates the folder and the store (or migrates an older one), proves a write transaction goes through,
    and returns the path. Raises :class:`EmobenchError` with the reason otherwise."""
    with ResultStore(path) as store:
        return store.path


# --- which records stand for a measurement ---------------------------------------------------------------

def _version() -> str:
    from emobench.version import __version__

    return __version__
