"""Output files and stores that a script can trust: nothing is replaced by something of another kind, nothing
stored is lost, readers create nothing, and `results compare --fail-above` guards a CI job."""

from __future__ import annotations

import os
import stat
import threading

from test_cli import assert_user_error, run

from emobench.results.store import BenchRecord, ResultStore


def test_output_to_a_fifo_streams_and_keeps_the_fifo(capsys, monkeypatch, tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    code, _, _ = run(capsys, monkeypatch, "zoo", "list", "emo_*", "-f", "csv", "-o", str(fifo))
    reader.join(timeout=30)
    assert code == 0 and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received and received[0].splitlines()[0].startswith("name") and "emo_1m" in received[0]


def test_output_through_a_symlink_writes_the_target_and_keeps_the_link(capsys, monkeypatch, tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    code, _, _ = run(capsys, monkeypatch, "zoo", "list", "emo_1m", "-f", "csv", "-o", str(link))
    assert code == 0 and link.is_symlink() and os.readlink(link) == str(target)
    assert "emo_1m" in target.read_text() and stat.S_IMODE(os.stat(target).st_mode) == 0o640


def test_a_read_only_output_is_refused_and_left_unchanged(capsys, monkeypatch, tmp_path):
    locked = tmp_path / "locked.csv"
    locked.write_text("keep me\n")
    os.chmod(locked, 0o444)
    code, _, err = run(capsys, monkeypatch, "zoo", "list", "-f", "csv", "-o", str(locked))
    assert_user_error(code, err, "read-only")
    assert locked.read_text() == "keep me\n"


def test_dash_and_character_devices_are_streams(capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, "zoo", "list", "emo_1m", "-f", "csv", "-o", "-")
    assert code == 0 and "emo_1m" in out
    if os.access("/dev/null", os.W_OK):
        code, _, _ = run(capsys, monkeypatch, "zoo", "list", "-f", "csv", "-o", "/dev/null")
        assert code == 0 and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_readers_create_no_store(capsys, monkeypatch, tmp_path):
    missing = tmp_path / "typo" / "dir" / "s.sqlite"
    code, out, _ = run(capsys, monkeypatch, "results", "list", "--store", str(missing))
    assert code == 0 and not (tmp_path / "typo").exists()
    code, _, err = run(capsys, monkeypatch, "results", "compare", "threads=2", "threads=1", "--store", str(missing))
    assert_user_error(code, err, "no stored 'ok' records")
    assert not (tmp_path / "typo").exists()


def test_too_many_threads_are_refused(capsys, monkeypatch):
    code, _, err = run(capsys, monkeypatch, "bench", "irmb", "-t", "999", "--no-store")
    assert_user_error(code, err, "999 threads on a machine with", "cores")


def _timed(threads: int, median: float, iqr: float, model: str = "emo_1m") -> BenchRecord:
    return BenchRecord(model=model, backend="onnxruntime", form="reference", form_requested="auto", batch=1,
                       threads=threads, resolution="224x224", dtype="fp32", status="ok", median_ms=median,
                       iqr_ms=iqr, round_spread=0.02, created=float(threads), machine="m")


def test_compare_fail_above_guards_a_regression(capsys, monkeypatch, tmp_path):
    """Two threads against one: the 1-thread candidate is slower beyond its noise, the other way round faster."""
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        for rec in (_timed(2, 6.0, 0.1), _timed(1, 10.0, 0.2), _timed(2, 12.0, 0.2, "emo_5m"), _timed(1, 12.2, 0.3, "emo_5m")):
            store.add(rec)
    code, out, err = run(capsys, monkeypatch, "results", "compare", "threads=2", "threads=1", "--fail-above", "10",
                         "--store", str(path), "-f", "json")
    import json

    rows = {r["model"]: r for r in json.loads(out)["rows"]}
    assert code == 1 and "1 pair(s) slower by more than 10 %" in err
    assert rows["emo_1m"]["verdict"] == "slower" and rows["emo_5m"]["verdict"] == "same"  # 1.7 % < its noise
    code, out, _ = run(capsys, monkeypatch, "results", "compare", "threads=1", "threads=2", "--fail-above", "10",
                       "--store", str(path), "-f", "json")
    assert code == 0 and {r["verdict"] for r in json.loads(out)["rows"]} == {"faster", "same"}
    code, _, err = run(capsys, monkeypatch, "results", "compare", "threads=2", "threads=1", "--fail-above", "-5",
                       "--store", str(path))
    assert_user_error(code, err, "--fail-above takes a percentage >= 0")


def test_the_command_line_starts_without_torch():
    """`emobench --help` must not pay for importing torch (about a second): the package loads names lazily."""
    import subprocess
    import sys

    code = "import sys, emobench, emobench.cli; print(sorted({'torch', 'pandas'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    import emobench

    assert callable(emobench.create_model) and emobench.formulate.__module__ == "emobench.nn.forms"


def test_messages_for_values_that_used_to_pass_silently(capsys, monkeypatch, tmp_path):
    code, _, err = run(capsys, monkeypatch, "modules", "-W", "7", "-w", "14")
    assert_user_error(code, err, "window w=14 is larger than the map W=7")
    code, _, err = run(capsys, monkeypatch, "mpl", "--blocks", "")
    assert_user_error(code, err, "--blocks names no block")
    code, _, err = run(capsys, monkeypatch, "table", "imagenet", "--papers", str(tmp_path))
    assert_user_error(code, err, "no reported-figure files (*.toml) in")
    code, out, _ = run(capsys, monkeypatch, "modules", "-C", "60", "-f", "md")
    assert code == 0 and "iRMB: 1 head(s) of 60 channels" in out


def test_ci_fails_instead_of_skipping_without_the_official_reference(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    env = {**os.environ, "CI": "true", "EMOBENCH_REFERENCE": str(tmp_path / "absent")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tests / "test_reference.py"), "-k", "official_logits and emo_1m and official"],
                          capture_output=True, text=True, env=env, cwd=tests.parent)
    assert proc.returncode == 1 and "is absent" in proc.stdout and " error" in proc.stdout  # not skipped
