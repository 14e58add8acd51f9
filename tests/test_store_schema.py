"""The results store's schema: versions and additive migrations, newer stores, corrupt rows, inserts that do not
land, unknown columns through export and merge, dedup by uuid, the writability check and the environment
columns. Every store here is made by hand with the sqlite3 module, as an older or newer emobench (or someone
else) would have left it."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from test_cli import assert_user_error, run
from emobench.errors import EmobenchError
from emobench.results.store import (SCHEMA_VERSION, BenchRecord, ResultStore, check_writable, comparable, headline)

ENV = {"cpu": "Test CPU 9000", "cores": 8, "cpu_flags": ["avx2", "avx512f", "amx_bf16"], "torch": "2.13.0",
       "emobench": "0.1.0", "git": "abc1234", "backend": "onnxruntime", "backend_version": "1.22.0", "threads": 2}

#: the records table as the first emobench wrote it: no version, no key on uuid, no env or cold-start columns
OLD_COLUMNS = ("model TEXT, backend TEXT, form TEXT, batch INTEGER, threads INTEGER, resolution TEXT, dtype TEXT, "
               "status TEXT, median_ms REAL, iqr_ms REAL, round_spread REAL, env TEXT, params TEXT, created REAL, "
               "machine TEXT, uuid TEXT")


def make_store(path, columns: str = OLD_COLUMNS, rows: list[dict] = (), version: int = 0, extra_sql: str = "") -> None:
    con = sqlite3.connect(path)
    con.execute(f"CREATE TABLE records ({columns})")
    for row in rows:
        con.execute(f"INSERT INTO records ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", list(row.values()))
    if extra_sql:
        con.executescript(extra_sql)
    con.execute(f"PRAGMA user_version = {version}")
    con.commit()
    con.close()


def row(uuid: str, created: float, **kw) -> dict:
    base = dict(model="emo_1m", backend="onnxruntime", form="reference", batch=1, threads=2, resolution="224x224",
                dtype="fp32", status="ok", median_ms=10.0, iqr_ms=0.1, round_spread=0.01, env=json.dumps(ENV),
                params="{}", created=created, machine="box", uuid=uuid)
    return {**base, **kw}


def stored(path, sql: str = "SELECT uuid, median_ms FROM records ORDER BY created") -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def version_of(path) -> int:
    return stored(path, "PRAGMA user_version")[0][0]


def record(uuid: str = None, **kw) -> BenchRecord:
    base = dict(model="emo_1m", backend="torch", form="fused", batch=1, threads=2, resolution="224x224", dtype="fp32",
                status="ok", median_ms=5.0, created=100.0, machine="box")
    return BenchRecord(**{**base, **kw}, **({"uuid": uuid} if uuid else {}))


# --- 1. versions and migrations -------------------------------------------------------------------------


def test_an_old_store_is_read_without_change_and_migrated_additively_by_a_writer(tmp_path):
    path = tmp_path / "old.sqlite"
    make_store(path, rows=[row("a", 1.0), row("b", 2.0, env="{}")])
    before = path.read_bytes()
    with ResultStore(path, readonly=True) as db:
        df = db.records()
    assert path.read_bytes() == before and version_of(path) == 0  # readers never migrate
    # the environment columns read from the env JSON even without migrating
    assert df.set_index("uuid").loc["a", "cpu_flags"] == "avx2,avx512f,amx_bf16"
    with ResultStore(path) as db:
        assert db.version == SCHEMA_VERSION
    assert version_of(path) == SCHEMA_VERSION
    assert stored(path) == [("a", 10.0), ("b", 10.0)]  # every row kept, values as they were
    cols = stored(path, "SELECT torch_version, runtime_version, cpu_model, cpu_cores, cpu_flags, emobench_version, "
                        "git_revision FROM records ORDER BY created")
    assert cols[0] == ("2.13.0", "1.22.0", "Test CPU 9000", 8, "avx2,avx512f,amx_bf16", "0.1.0", "abc1234")
    assert cols[1] == (None,) * 7  # an env without those keys backfills nothing
    with ResultStore(path) as db:  # opening a current store again changes no row
        assert db.count() == 2


def test_a_newer_store_with_nullable_extra_columns_is_read_and_written(tmp_path):
    path = tmp_path / "newer.sqlite"
    make_store(path, OLD_COLUMNS + ", gpu TEXT, watts REAL DEFAULT 0", [row("a", 1.0, gpu="H100")], SCHEMA_VERSION + 5)
    with ResultStore(path, readonly=True) as db:
        df = db.records()
    assert df.loc[0, "gpu"] == "H100"  # unknown columns are kept
    with ResultStore(path) as db:
        assert db.add(record("new"))
    assert version_of(path) == SCHEMA_VERSION + 5  # never turned into an older version
    assert stored(path, "SELECT uuid, gpu, watts, form_requested FROM records ORDER BY created") == [
        ("a", "H100", 0, None), ("new", None, 0, None)]
    assert stored(path, "SELECT cpu_model FROM records WHERE uuid = 'a'") == [("Test CPU 9000",)]


def test_a_newer_store_with_a_not_null_column_is_read_but_writing_is_refused(tmp_path, capsys, monkeypatch):
    path = tmp_path / "newer.sqlite"
    make_store(path, OLD_COLUMNS + ", gpu TEXT NOT NULL", [row("a", 1.0, gpu="H100")], SCHEMA_VERSION + 1)
    before = path.read_bytes()
    code, out, _ = run(capsys, monkeypatch, "results", "list", "--store", str(path), "-f", "json")
    assert code == 0 and [r["gpu"] for r in json.loads(out)["rows"]] == ["H100"]
    with pytest.raises(EmobenchError, match="NOT NULL without default"):
        check_writable(path)
    source = tmp_path / "src.sqlite"
    with ResultStore(source) as db:
        db.add(record("x"))
    code, out, err = run(capsys, monkeypatch, "results", "merge", str(source), "--store", str(path))
    assert_user_error(code, err, f"schema version {SCHEMA_VERSION + 1}", "gpu", "NOT NULL without default")
    assert "added" not in out and path.read_bytes() == before  # nothing written, nothing lost
    code, out, err = run(capsys, monkeypatch, "bench", "irmb", "--store", str(path))
    assert_user_error(code, err, "NOT NULL without default")  # refused before anything is measured
    assert "stored" not in out + err and stored(path) == [("a", 10.0)]


# --- 3. an insert that does not land -------------------------------------------------------------------


def test_an_insert_a_trigger_swallows_is_an_error_not_stored(tmp_path):
    path = tmp_path / "t.sqlite"
    with ResultStore(path) as db:
        db.add(record("kept"))
    con = sqlite3.connect(path)
    con.execute("CREATE TRIGGER swallow BEFORE INSERT ON records BEGIN SELECT RAISE(IGNORE); END")
    con.commit()
    con.close()
    with ResultStore(path) as db:
        with pytest.raises(EmobenchError, match="did not keep record lost"):
            db.add(record("lost"))
        assert db.add(record("kept")) is False  # an already stored uuid is left as it is, and says so
    assert [u for u, _ in stored(path)] == ["kept"]


def test_a_not_null_column_with_a_default_is_writable(tmp_path):
    path = tmp_path / "d.sqlite"
    make_store(path, OLD_COLUMNS + ", site TEXT NOT NULL DEFAULT 'lab'", [row("a", 1.0, site="home")])
    with ResultStore(path) as db:
        assert db.add(record("b", created=2.0))
    assert stored(path, "SELECT uuid, site FROM records ORDER BY created") == [("a", "home"), ("b", "lab")]


# --- 2. corrupt rows -------------------------------------------------------------------------------------


def corrupt_store(path) -> None:
    make_store(path, rows=[
        row("good1", 1.0, threads=2, median_ms=6.0),
        row("badjson", 2.0, env="{not json"),
        row("badnum", 3.0, median_ms="fast"),
        row("badparams", 4.0, params="[1, 2]"),  # JSON, but not an object
        row("good2", 5.0, threads=1, median_ms=9.0),
    ])


def test_corrupt_rows_are_reported_and_skipped_everywhere(tmp_path, capsys, monkeypatch):
    path = tmp_path / "c.sqlite"
    corrupt_store(path)
    before = path.read_bytes()

    def warned(err: str) -> None:
        lines = [line for line in err.splitlines() if "corrupt" in line]
        assert len(lines) == 1 and "3 corrupt record(s)" in lines[0] and "Traceback" not in err
        assert all(u in lines[0] for u in ("badjson", "badnum", "badparams"))

    code, out, err = run(capsys, monkeypatch, "results", "list", "--store", str(path), "-f", "json")
    assert code == 0 and [r["uuid"] for r in json.loads(out)["rows"]] == ["good1", "good2"]
    warned(err)
    target = tmp_path / "out.json"
    code, _, err = run(capsys, monkeypatch, "results", "export", str(target), "--store", str(path))
    assert code == 0 and [r["uuid"] for r in json.loads(target.read_text())] == ["good1", "good2"]
    warned(err)
    code, out, err = run(capsys, monkeypatch, "results", "compare", "threads=2", "threads=1", "--store", str(path), "-f", "json")
    assert code == 0 and json.loads(out)["rows"][0]["ratio"] == pytest.approx(9.0 / 6.0)
    warned(err)
    merged = tmp_path / "m.sqlite"
    code, out, err = run(capsys, monkeypatch, "results", "merge", str(path), "--store", str(merged))
    assert code == 0 and "2 record(s) added" in out
    warned(err)
    assert path.read_bytes() == before  # readers and merge sources are left as they are


def test_the_table_and_chart_headline_skips_corrupt_rows_and_never_takes_1_thread_bf16_or_batch_8(tmp_path, capsys):
    # what the speed table and the latency chart read: headline(store.records()) on a read-only store
    path = tmp_path / "s.sqlite"
    make_store(path, rows=[
        row("t2", 1.0, backend="torch", threads=2, median_ms=6.0),
        row("t1", 2.0, backend="torch", threads=1, median_ms=9.0),  # newer, but 1 thread where 2 exist
        row("bf16", 3.0, backend="torch", dtype="bf16", median_ms=3.0),
        row("b8", 4.0, backend="torch", batch=8, median_ms=30.0),
        row("bad", 5.0, backend="torch", median_ms="oops"),
        row("ort1", 6.0, backend="onnxruntime", threads=1, median_ms=4.0),  # the only onnxruntime record
    ])
    with ResultStore(path, readonly=True) as db:
        picked = headline(db.records())
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "1 corrupt record(s)" in err and "bad" in err
    assert dict(zip(picked["backend"], picked["uuid"])) == {"torch": "t2", "onnxruntime": "ort1"}


# --- 4, 5. unknown columns through export and merge; dedup by uuid -------------------------------------


def test_unknown_columns_survive_export_and_merge(tmp_path, capsys, monkeypatch):
    source = tmp_path / "newer.sqlite"
    make_store(source, OLD_COLUMNS + ", gpu TEXT, \"odd name\" INTEGER NOT NULL",
               [row("a", 1.0, gpu="H100", **{'"odd name"': 7})], SCHEMA_VERSION + 1)
    for suffix in ("json", "csv"):
        target = tmp_path / f"out.{suffix}"
        code, _, _ = run(capsys, monkeypatch, "results", "export", str(target), "--store", str(source))
        assert code == 0
        got = json.loads(target.read_text())[0] if suffix == "json" else pd.read_csv(target).iloc[0].to_dict()
        assert got["gpu"] == "H100" and got["odd name"] == 7 and got["uuid"] == "a"
    mine = tmp_path / "mine.sqlite"
    with ResultStore(mine) as db:
        db.add(record("m"))
    code, out, _ = run(capsys, monkeypatch, "results", "merge", str(source), "--store", str(mine))
    assert code == 0 and "1 record(s) added" in out
    assert stored(mine, 'SELECT uuid, gpu, "odd name" FROM records ORDER BY created') == [("a", "H100", 7), ("m", None, None)]
    code, out, _ = run(capsys, monkeypatch, "results", "merge", str(source), "--store", str(mine))
    assert code == 0 and "0 record(s) added" in out and len(stored(mine)) == 2


def test_merge_deduplicates_by_uuid_without_a_unique_key_and_replaces_nothing(tmp_path, capsys, monkeypatch):
    target = tmp_path / "t.sqlite"
    make_store(target, rows=[row("same", 1.0, median_ms=1.0)])  # uuid is a plain column here
    source = tmp_path / "s.sqlite"
    with ResultStore(source) as db:
        db.add(record("same", median_ms=99.0, created=1.0))  # same id, other content: the target's stays
        db.add(record("new", created=2.0))
    for expected in ("1 record(s) added", "0 record(s) added"):
        code, out, _ = run(capsys, monkeypatch, "results", "merge", str(source), str(source), "--store", str(target))
        assert code == 0 and expected in out
    assert stored(target) == [("same", 1.0), ("new", 5.0)]


# --- 6. writability before measuring --------------------------------------------------------------------


def test_check_writable(tmp_path):
    path = tmp_path / "new" / "dir" / "s.sqlite"
    assert check_writable(path) == path and path.is_file() and version_of(path) == SCHEMA_VERSION
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EmobenchError, match="cannot create results store"):
        check_writable(blocker / "s.sqlite")
    with pytest.raises(EmobenchError, match="folder"):
        check_writable(tmp_path)
    other = tmp_path / "other.sqlite"
    make_store(other, "x INTEGER")
    con = sqlite3.connect(other)
    con.execute("ALTER TABLE records RENAME TO unrelated")
    con.commit()
    con.close()
    before = other.read_bytes()
    with pytest.raises(EmobenchError, match="not an emobench results store"):
        check_writable(other)
    assert other.read_bytes() == before


# --- 7. environment columns ----------------------------------------------------------------------------


def test_environment_columns_are_filled_filtered_and_compared(tmp_path, capsys, monkeypatch):
    path = tmp_path / "e.sqlite"
    old_env = {**ENV, "torch": "2.12.0", "cpu_flags": ["avx2"]}
    with ResultStore(path) as db:
        db.add(record("old", env=old_env, median_ms=5.0, iqr_ms=0.05, created=1.0))
        db.add(record("new", env=ENV, median_ms=7.0, iqr_ms=0.05, created=2.0))
    assert stored(path, "SELECT uuid, torch_version, cpu_flags, cpu_cores FROM records ORDER BY created") == [
        ("old", "2.12.0", "avx2", 8), ("new", "2.13.0", "avx2,avx512f,amx_bf16", 8)]
    with ResultStore(path, readonly=True) as db:
        assert db.records().loc[1, "env"] == ENV  # the env JSON is kept beside the columns
    code, out, _ = run(capsys, monkeypatch, "results", "list", "cpu_flags=avx512f+amx_bf16", "--store", str(path), "-f", "json")
    assert code == 0 and [r["uuid"] for r in json.loads(out)["rows"]] == ["new"]
    code, out, _ = run(capsys, monkeypatch, "results", "list", "torch_version=2.12.0", "--store", str(path), "-f", "csv")
    assert code == 0 and len(pd.read_csv(__import__("io").StringIO(out))) == 1
    code, out, err = run(capsys, monkeypatch, "results", "compare", "torch_version=2.12.0", "torch_version=2.13.0",
                         "--fail-above", "10", "--store", str(path), "-f", "json")
    assert code == 1 and json.loads(out)["rows"][0]["verdict"] == "slower"  # 7 / 5 = +40 %, noise 1 %
    code, out, _ = run(capsys, monkeypatch, "results", "compare", "torch_version=2.13.0", "torch_version=2.12.0",
                       "--fail-above", "10", "--store", str(path), "-f", "json")
    assert code == 0 and json.loads(out)["rows"][0]["verdict"] == "faster"
    code, _, err = run(capsys, monkeypatch, "results", "list", "gpu_model=x", "--store", str(path))
    assert_user_error(code, err, "unknown record field")


# --- 8. one definition of comparable records -----------------------------------------------------------


def test_comparable_takes_whole_newest_rows_of_measured_records():
    df = pd.DataFrame([
        dict(model="m", backend="b", status="ok", median_ms=2.0, precision="fp32", created=1.0, machine=None),
        dict(model="m", backend="b", status="ok", median_ms=3.0, precision=None, created=2.0, machine=None),
        dict(model="m", backend="b", status="error", median_ms=None, precision="x", created=3.0, machine=None),
    ])
    out = comparable(df, ["model", "backend", "machine"])  # an empty key (machine None) is a key like any other
    assert len(out) == 1 and out.iloc[0]["median_ms"] == 3.0 and pd.isna(out.iloc[0]["precision"])  # not mixed
    assert headline(df.assign(batch=1, dtype="fp32", threads=1, form_requested="auto")).iloc[0]["median_ms"] == 3.0


#: the columns schema 2 added (accuracy on images, int8)
SCHEMA_2_COLUMNS = ["images", "images_skipped", "image_source", "top1", "top5", "top1_agreement", "logit_cosine", "calibration"]
#: the columns schema 3 added (where the time goes, the vendor tool's figures)
SCHEMA_3_COLUMNS = ["breakdown", "crosscheck", "sentinel_ms", "sentinel_spread", "host_varied", "ci_pct", "stop"]
#: the column schema 4 added (the cost of a training step)
SCHEMA_4_COLUMNS = ["train"]
#: the column schema 6 added (the median in units of the run's host sentinel)
SCHEMA_6_COLUMNS = ["sentinel_ratio"]


def test_a_version_1_store_gains_the_accuracy_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v1.sqlite"
    from emobench.results.store import _TYPES

    columns = ", ".join(f"{name} {kind}" for name, kind in _TYPES.items() if name not in SCHEMA_2_COLUMNS + SCHEMA_3_COLUMNS + SCHEMA_4_COLUMNS + SCHEMA_6_COLUMNS)
    make_store(path, columns, [row("a", 1.0)], version=1)
    with ResultStore(path) as db:
        assert db.version == SCHEMA_VERSION == 6
        assert db.add(record("new", dtype="int8", top1_agreement=0.97, logit_cosine=0.995, calibration="random (32 inputs)"))
        df = db.records().set_index("uuid")
    assert stored(path) == [("a", 10.0), ("new", 5.0)]
    assert all(df.loc["a", c] is None or df.loc["a", c] != df.loc["a", c] for c in SCHEMA_2_COLUMNS)  # NULL, not invented
    assert (df.loc["new", "top1_agreement"], df.loc["new", "calibration"]) == (0.97, "random (32 inputs)")


def test_a_version_2_store_gains_the_breakdown_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v2.sqlite"
    from emobench.results.store import _TYPES

    columns = ", ".join(f"{name} {kind}" for name, kind in _TYPES.items() if name not in SCHEMA_3_COLUMNS + SCHEMA_4_COLUMNS + SCHEMA_6_COLUMNS)
    make_store(path, columns, [row("a", 1.0)], version=2)
    breakdown = {"profiler": {"schema": "breakdown/1", "closure": 0.97, "rows": [{"block": "stage1.0", "ms": 0.5}]}}
    with ResultStore(path) as db:
        assert db.version == SCHEMA_VERSION
        assert db.add(record("new", breakdown=breakdown))
        df = db.records().set_index("uuid")
    assert stored(path) == [("a", 10.0), ("new", 5.0)]
    assert df.loc["a", "breakdown"] == {} and df.loc["a", "crosscheck"] == {}  # NULL read as empty, not invented
    assert df.loc["new", "breakdown"] == breakdown


def test_a_version_3_store_gains_the_train_column_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v3.sqlite"
    from emobench.results.store import _TYPES

    columns = ", ".join(f"{name} {kind}" for name, kind in _TYPES.items() if name not in SCHEMA_4_COLUMNS + SCHEMA_6_COLUMNS)
    make_store(path, columns, [row("a", 1.0)], version=3)
    train = {"model": "m", "metrics": {"step_macs": {"value": 10, "unit": "MACs"}}}
    with ResultStore(path) as db:
        assert db.version == SCHEMA_VERSION == 6
        assert db.add(record("new", form="train:adamw", form_requested="train", train=train))
        df = db.records().set_index("uuid")
    assert stored(path) == [("a", 10.0), ("new", 5.0)]
    assert df.loc["a", "train"] == {} and df.loc["new", "train"] == train
    assert set(headline(df.reset_index())["uuid"]) == {"a"}  # a training step never stands for inference latency


def test_a_version_5_store_gains_the_sentinel_ratio_column_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v5.sqlite"
    from emobench.results.store import _TYPES

    columns = ", ".join(f"{name} {kind}" for name, kind in _TYPES.items() if name not in SCHEMA_6_COLUMNS)
    make_store(path, columns, [row("a", 1.0)], version=5)
    with ResultStore(path) as db:
        assert db.version == SCHEMA_VERSION == 6
        assert db.add(record("new", sentinel_ms=0.1, sentinel_ratio=50.0))
        df = db.records().set_index("uuid")
    assert stored(path) == [("a", 10.0), ("new", 5.0)]
    assert pd.isna(df.loc["a", "sentinel_ratio"]) and df.loc["new", "sentinel_ratio"] == 50.0
