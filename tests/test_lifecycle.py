"""A sweep's life and death, with real processes and real signals: SIGTERM and Ctrl-C kill the worker and remove
the temporary folder; after SIGKILL the worker dies with its parent and the sweep's reaper removes the folder (and
should even the reaper be gone, the next sweep does). Nothing here is timed: the waits are bounded poll loops for a process to appear or disappear."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

import fake_backends as fake
from emobench.runs.bench import BenchPlan, run_bench
from emobench.runtimes import backends as B

TESTS = Path(__file__).resolve().parent
#: ``emobench`` with the fake backends registered (``hang``: a worker that sleeps in ``open``)
FAKE_CLI = ("import sys; sys.path.insert(0, {tests!r}); import fake_backends; from emobench.runtimes import backends as B; "
            "B.BACKENDS['hang'] = fake_backends.Hang(); from emobench.cli import main; main()").format(tests=str(TESTS))
SLOW_BENCH = ["bench", "irmb", "-B", "torch", "--form", "fused", "--no-store", "--min-time", "30", "--rounds", "1"]


def start(tmp: Path, args: list[str], fake_backends: bool = False) -> subprocess.Popen:
    """``emobench ARGS`` in a process of its own, with ``tmp`` as its system temporary folder."""
    head = [sys.executable, "-c", FAKE_CLI] if fake_backends else [sys.executable, "-m", "emobench.cli"]
    env = {**os.environ, "TMPDIR": str(tmp)}
    return subprocess.Popen(head + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def poll(condition, what: str, limit: float = 180.0, every: float = 0.1):
    """Wait (bounded) until ``condition()`` is true; returns its value."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"gave up waiting: {what}")


def worker_of(proc: subprocess.Popen) -> psutil.Process | None:
    """The measurement worker ``proc`` runs now, if any."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            if "emobench.runtimes.worker" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def wait_for_worker(proc: subprocess.Popen) -> psutil.Process:
    def found():
        assert proc.poll() is None, f"emobench exited early ({proc.returncode}): {proc.communicate()[1]}"
        return worker_of(proc)

    return poll(found, "a worker process")


def gone(process: psutil.Process) -> bool:
    """Exited (a zombie no parent has reaped yet counts: it runs nothing)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def running_in(tmp: Path) -> list[psutil.Process]:
    """Live processes whose command line names something in ``tmp`` (a worker's spec file does)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if str(tmp) in " ".join(p.info["cmdline"] or ()) and not gone(p):
                found.append(p)
        except psutil.Error:
            continue
    return found


def folders(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("emobench-*"))


def test_sigterm_kills_the_worker_and_removes_the_temporary_folder(tmp_path):
    proc = start(tmp_path, SLOW_BENCH)
    worker = wait_for_worker(proc)
    assert len(folders(tmp_path)) == 1 and folders(tmp_path)[0].name.startswith(f"emobench-{proc.pid}-")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "terminated: nothing stored (--no-store)" in err
    poll(lambda: gone(worker), "the worker to go", limit=5)
    poll(lambda: running_in(tmp_path) == [], "every process of the sweep to go", limit=5)
    assert folders(tmp_path) == []


def test_after_sigkill_the_worker_dies_too_and_the_folder_is_removed(tmp_path):
    proc = start(tmp_path, SLOW_BENCH)
    worker = wait_for_worker(proc)
    assert folders(tmp_path)[0].name.startswith(f"emobench-{proc.pid}-")
    proc.kill()
    proc.communicate(timeout=30)
    poll(lambda: gone(worker), "the worker to die with its parent", limit=5)
    poll(lambda: running_in(tmp_path) == [], "the reaper to finish", limit=5)
    poll(lambda: folders(tmp_path) == [], "the folder to be removed", limit=5)


def test_the_next_sweep_removes_a_folder_whose_owner_is_gone(monkeypatch, tmp_path):
    """Should a folder outlive its sweep and its reaper (both killed), the next sweep's start removes it; the
    folders of live processes are left alone."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    stale = tmp_path / f"emobench-{ended.pid}-abc"
    live = tmp_path / f"emobench-{os.getppid()}-def"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "model0-x.npy").write_bytes(b"")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setitem(B.BACKENDS, "missing", fake.Missing())
    (rec,) = run_bench(BenchPlan(["irmb"], ["missing"]))  # no worker runs: its only backend is skipped
    assert rec.status == "skipped"
    assert folders(tmp_path) == [live]


def test_ctrl_c_kills_the_worker_keeps_what_was_measured_and_says_so(tmp_path):
    """Ctrl-C while the second measurement runs (a worker that would sleep for an hour): the first is stored."""
    store = tmp_path / "store.sqlite"
    args = ["bench", "irmb", "-B", "torch,hang", "--form", "fused", "--rounds", "1", "--min-time", "0",
            "--min-runs", "3", "--warmup", "1", "--store", str(store)]
    proc = start(tmp_path, args, fake_backends=True)

    def stored() -> int:
        try:
            with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
                return db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        except sqlite3.Error:
            return 0

    poll(lambda: stored() == 1 or proc.poll() is not None, "the first record")
    hang = wait_for_worker(proc)  # the torch worker is done (its record is in): this is the hanging one
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"interrupted: 1 record(s) stored in {store}"]
    poll(lambda: gone(hang), "the worker to go", limit=5)
    assert running_in(tmp_path) == [] and folders(tmp_path) == []
    assert stored() == 1


def test_a_worker_whose_parent_cannot_arm_the_death_signal_watches_it(tmp_path):
    """The watchdog (the fallback where Linux's parent-death signal is not available): a process watching its
    parent exits once that parent is SIGKILLed."""
    child = ("import os, time; from emobench.runtimes.worker import watch_parent; "
             "watch_parent(os.getppid(), 0.05); print('watching', flush=True); time.sleep(600)")
    parent = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', sys.argv[1]]); "
              "print(p.pid, flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", parent, child], stdout=subprocess.PIPE, text=True)
    watcher = psutil.Process(int(proc.stdout.readline()))
    assert proc.stdout.readline().strip() == "watching"  # the child's output: the watchdog is running
    proc.kill()
    proc.communicate(timeout=30)
    poll(lambda: gone(watcher), "the orphan to exit", limit=5)
