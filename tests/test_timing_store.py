"""Timing statistics on synthetic timings; the results store under concurrency and interruption."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from emobench.errors import EmobenchError
from emobench.measure.timing import percentile, summarize, time_calls
from emobench.results.query import compare
from emobench.results.store import BenchRecord, ResultStore


def test_summary_statistics_by_hand():
    # 1..10 ms: median 5.5; linear-interpolated p10 = 1.9, p90 = 9.1; IQR = 7.75 - 3.25 = 4.5
    stats = summarize([i / 1000 for i in range(10, 0, -1)])
    assert stats.runs == 10
    assert stats.median_ms == pytest.approx(5.5)
    assert stats.p10_ms == pytest.approx(1.9) and stats.p90_ms == pytest.approx(9.1)
    assert stats.iqr_ms == pytest.approx(4.5)
    assert stats.min_ms == pytest.approx(1) and stats.max_ms == pytest.approx(10)
    # sample standard deviation of 1..10 is sqrt(55/6); mean 5.5
    assert stats.cv == pytest.approx((55 / 6) ** 0.5 / 5.5)
    assert stats.noisy  # CV 0.55 > 0.10
    steady = summarize([0.010, 0.0101, 0.0099, 0.010])
    assert not steady.noisy and steady.cv < 0.01
    assert percentile([1.0], 50) == 1.0


def test_time_calls_respects_minimum_count_and_duration():
    clock_now = [0.0]

    def clock():
        return clock_now[0]

    calls = []

    def call():
        calls.append(1)
        clock_now[0] += 0.01  # every call takes 10 ms of fake time

    times = time_calls(call, warmup=3, min_time=0.5, min_runs=5, clock=clock)
    assert len(calls) == 3 + len(times)
    assert len(times) == 50 and all(t == pytest.approx(0.01) for t in times)  # the 0.5 s floor decides
    calls.clear()
    times = time_calls(call, warmup=0, min_time=0.0, min_runs=7, clock=clock)
    assert len(times) == 7  # the count floor decides
    synced = []
    time_calls(call, warmup=1, min_time=0, min_runs=2, clock=clock, sync=lambda: synced.append(1))
    assert len(synced) == 1 + 2  # after the warm-up and inside every timed call
    assert time_calls(call, warmup=0, min_time=0, min_runs=3, clock=clock, measure=lambda f: (f(), 0.25)[1]) == [0.25] * 3


def _record(i: int, backend: str = "torch", **kw) -> BenchRecord:
    base = dict(model="irmb", backend=backend, form="fused", batch=1, threads=2, resolution="14x14", dtype="fp32",
                status="ok", median_ms=1.0 + i, created=float(i), machine="m")
    base.update(kw)
    return BenchRecord(**base)


def test_store_roundtrip_filters_and_merge(tmp_path):
    with ResultStore(tmp_path / "a.sqlite") as a:
        a.add(_record(0, env={"cpu": "x"}, params={"warmup": 5}, noisy=False))
        a.add(_record(1, backend="onnxruntime", median_ms=0.5))
        df = a.records()
        assert len(df) == 2 and df.iloc[0]["env"] == {"cpu": "x"} and df.iloc[0]["params"] == {"warmup": 5}
        assert len(a.records(backend="onnxruntime")) == 1
        with pytest.raises(EmobenchError, match="unknown record field"):
            a.records(colour="red")
    with ResultStore(tmp_path / "b.sqlite") as b:
        b.add(_record(5, machine="other"))
        assert b.merge([tmp_path / "a.sqlite"]) == 2
        assert b.merge([tmp_path / "a.sqlite"]) == 0  # merging again adds nothing
        assert b.count() == 3


def test_compare_as_ratios(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as s:
        s.add(_record(0, median_ms=2.0))
        s.add(_record(1, backend="onnxruntime", median_ms=0.5))
        s.add(_record(2, backend="onnxruntime", median_ms=1.0))  # newest wins
        records = s.records()
    out = compare(records, {"backend": "torch"}, {"backend": "onnxruntime"})
    assert len(out) == 1 and out.iloc[0]["B / A"] == pytest.approx(0.5)
    with pytest.raises(EmobenchError, match="no stored 'ok' records match A"):
        compare(records, {"backend": "tvm"}, {"backend": "torch"})
    with pytest.raises(EmobenchError, match="unknown record field"):
        compare(records, {"colour": "red"}, {"backend": "torch"})


def _writer(path: str, worker: int, n: int) -> None:
    with ResultStore(path) as s:
        for i in range(n):
            s.add(_record(i, backend=f"w{worker}"))


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ResultStore(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 40)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    with ResultStore(path) as s:
        assert s.count() == 120
        assert sorted(s.records()["backend"].value_counts().tolist()) == [40, 40, 40]


def test_killed_writer_keeps_every_committed_record(tmp_path):
    path = tmp_path / "k.sqlite"
    script = (
        "import sys, time\n"
        "from emobench.results.store import ResultStore, BenchRecord\n"
        "s = ResultStore(sys.argv[1])\n"
        "i = 0\n"
        "while True:\n"
        "    s.add(BenchRecord(model='m', backend='b', form='f', batch=1, threads=1, resolution='1x1', dtype='fp32', status='ok', created=float(i)))\n"
        "    print(i, flush=True); i += 1\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
    committed = -1
    deadline = time.time() + 60
    while committed < 30 and time.time() < deadline:
        committed = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with ResultStore(path) as s:
        assert s.count() >= committed + 1  # every record it reported committed survived
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_unreadable_store_is_a_clear_error(tmp_path):
    bad = tmp_path / "not.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(EmobenchError, match="cannot use results store"):
        ResultStore(bad)
    assert bad.read_bytes().startswith(b"this is not")  # nothing stored is touched
    with pytest.raises(EmobenchError, match="folder"):
        ResultStore(tmp_path)


def test_merge_reads_sources_without_changing_them(tmp_path):
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE unrelated (x INTEGER)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    with ResultStore(tmp_path / "mine.sqlite") as mine:
        with pytest.raises(EmobenchError, match="not an emobench"):
            mine.merge([other])
    assert other.read_bytes() == before
    with pytest.raises(EmobenchError, match="not an emobench results store"):
        ResultStore(other)  # opening it as a store does not add a table to someone else's database
    assert other.read_bytes() == before


def _old_store(path):
    """A store as the first emobench wrote it: no form_requested, cold-start, precision or explain columns."""
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("CREATE TABLE records (model TEXT, backend TEXT, form TEXT, batch INTEGER, threads INTEGER, "
                "resolution TEXT, dtype TEXT, status TEXT, median_ms REAL, env TEXT, params TEXT, created REAL, "
                "machine TEXT, uuid TEXT PRIMARY KEY)")
    con.execute("INSERT INTO records VALUES ('emo_1m', 'torch', 'fused', 1, 2, '224x224', 'fp32', 'ok', 9.5, '{}', "
                "'{}', 1.0, 'old box', 'abc')")
    con.commit()
    con.close()


def test_an_older_store_reads_as_it_is_and_gains_the_new_columns_when_written(tmp_path):
    path = tmp_path / "old.sqlite"
    _old_store(path)
    before = path.read_bytes()
    with ResultStore(path, readonly=True) as store:
        df = store.records()
    assert path.read_bytes() == before  # a reader changes nothing
    assert df.loc[0, "median_ms"] == 9.5 and df.loc[0, "precision"] is None and df.loc[0, "explain"] == {}
    with ResultStore(path) as store:  # a writer migrates additively and keeps every row
        store.add(BenchRecord(model="emo_1m", backend="onnxruntime", form="mobile", batch=1, threads=2,
                              resolution="224x224", dtype="fp32", status="ok", median_ms=4.0, precision="fp32",
                              explain={"summary": "s"}, created=2.0))
        df = store.records()
    assert list(df["median_ms"]) == [9.5, 4.0] and list(df["precision"])[1] == "fp32"
    assert df.loc[1, "explain"] == {"summary": "s"} and df.loc[0, "uuid"] == "abc"


def test_headline_records_are_batch_1_fp32_auto_and_newest():
    import pandas as pd

    from emobench.results.store import headline

    def rec(created, **kw):
        base = dict(model="emo_1m", backend="torch", form="fused", form_requested="auto", batch=1, dtype="fp32",
                    threads=2, status="ok", median_ms=10.0, created=created)
        return {**base, **kw}

    df = pd.DataFrame([
        rec(1.0, median_ms=11.0),
        rec(2.0, median_ms=10.0),  # the newest auto fp32 batch-1 measurement: the headline
        rec(3.0, dtype="bf16", median_ms=5.0),
        rec(4.0, form="official", form_requested="official", median_ms=20.0),
        rec(5.0, batch=8, median_ms=50.0),
        rec(6.0, status="parity-failed", median_ms=None),
        rec(7.0, backend="onnxruntime", form="mobile", median_ms=4.0),
        rec(0.5, backend="litert", form="fused", form_requested=None, median_ms=3.0),  # a store from before forms
        rec(8.0, threads=1, median_ms=15.0),  # newer, but 1 thread where 2 threads were measured
    ])
    picked = headline(df).set_index("backend")["median_ms"].to_dict()
    assert picked == {"torch": 10.0, "onnxruntime": 4.0, "litert": 3.0}
