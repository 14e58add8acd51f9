"""Nothing already stored is lost: no output path overwrites a results store (or its -wal/-shm files), the
store in use, a read-only file or a plot someone protected; every output is checked before any work; user text
is printed as written."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from test_cli import assert_user_error, run

from emobench.results.record import BenchRecord
from emobench.results.store import ResultStore


def _store(path):
    with ResultStore(path) as db:
        db.add(BenchRecord(model="irmb", backend="torch", form="fused", batch=1, threads=1, resolution="14x14",
                           dtype="fp32", status="ok", median_ms=1.0))
    return path.read_bytes()


@pytest.mark.parametrize("args", [
    ("results", "list"), ("zoo", "list"), ("results", "compare", "backend=torch", "backend=onnxruntime"),
])
def test_an_output_onto_a_results_store_is_refused(capsys, monkeypatch, tmp_path, args):
    store = tmp_path / "v.sqlite"
    before = _store(store)
    for target in (store, tmp_path / "v.sqlite-wal"):
        if target.name.endswith("-wal"):
            target.write_bytes(b"wal")  # a sidecar of a store is never replaced either
        extra = ("--store", str(store)) if args[0] == "results" else ()
        code, out, err = run(capsys, monkeypatch, *args, *extra, "-o", str(target))
        assert_user_error(code, err, str(target))
        assert "SQLite" in err or "store" in err
    assert store.read_bytes() == before and (tmp_path / "v.sqlite-wal").read_bytes() == b"wal"
    with ResultStore(store, readonly=True) as db:
        assert db.count() == 1


def test_bench_refuses_its_own_store_as_output_before_measuring(capsys, monkeypatch, tmp_path):
    store = tmp_path / "new.sqlite"  # not there yet: the store bench would create
    code, _, err = run(capsys, monkeypatch, "bench", "irmb", "--store", str(store), "-o", str(store))
    assert_user_error(code, err, "results store in use")
    assert not store.exists()  # refused before the store was opened or anything measured
    code, _, err = run(capsys, monkeypatch, "bench", "irmb", "--no-store", "-o", str(tmp_path / "missing" / "x.json"))
    assert_user_error(code, err, "folder not found")


def test_plot_writers_respect_read_only_files(capsys, monkeypatch, tmp_path):
    plot = tmp_path / "ro.html"
    plot.write_text("mine")
    plot.chmod(stat.S_IRUSR)
    code, _, err = run(capsys, monkeypatch, "mpl", "-W", "7", "--plot", str(plot))
    assert_user_error(code, err, "read-only")
    assert plot.read_text() == "mine"
    heatmaps = tmp_path / "erf"
    heatmaps.mkdir()
    existing = heatmaps / "erf_irmb_32x32.html"
    existing.write_text("mine")
    existing.chmod(stat.S_IRUSR)
    code, _, err = run(capsys, monkeypatch, "erf", "irmb", "-r", "32", "-n", "1", "--out-dir", str(heatmaps))
    assert_user_error(code, err, "read-only")
    assert existing.read_text() == "mine"


def test_a_fifo_named_like_a_zoo_file_is_passed_over(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    os.mkfifo(zoo / "x.toml")
    done = subprocess.run([sys.executable, "-m", "emobench.cli", "zoo", "list", "irmb", "--zoo", str(zoo)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "irmb" in done.stdout


def test_user_text_is_printed_as_written(capsys, monkeypatch, tmp_path):
    code, _, err = run(capsys, monkeypatch, "zoo", "show", "a:b:c")
    assert_user_error(code, err, "a:b:c")
    folder = tmp_path / "x[bold]y:cat:"
    code, _, err = run(capsys, monkeypatch, "profile", f"{folder}/f.py:net")
    assert_user_error(code, err, "x[bold]y:cat:")


def test_an_output_device_is_written_as_a_stream(capsys, monkeypatch):
    code, _, err = run(capsys, monkeypatch, "table", "boost", "-o", "/dev/null")
    assert code == 0, err


def test_the_speed_table_reads_the_store_once(capsys, monkeypatch, tmp_path):
    """A corrupt row is reported once, not once per section of the table."""
    import sqlite3

    store = tmp_path / "c.sqlite"
    _store(store)
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE records SET env = '{not json'")
    code, _, err = run(capsys, monkeypatch, "table", "speed", "--store", str(store))
    assert code == 0 and len([line for line in err.splitlines() if "corrupt" in line]) == 1, err


def test_non_finite_preprocessing_and_empty_class_folders_are_refused(capsys, monkeypatch, tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    code, _, err = run(capsys, monkeypatch, "eval", "irmb", "--images", str(tmp_path), "--std", "nan,nan,nan")
    assert_user_error(code, err, "--std", "finite")
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "cats" / "a.png")
    code, _, err = run(capsys, monkeypatch, "eval", "irmb", "--images", str(tmp_path), "--no-store")
    assert_user_error(code, err, "dogs", "hold no image files")
