"""Sweeps on a real local Ray cluster (no mock): the same counts as a local run, every point stored once, the
front measured through the cluster's one measurement slot per node, results streamed into the driver's store."""

from __future__ import annotations

import os

import pytest

ray = pytest.importorskip("ray")

from emobench.results.store import ResultStore  # noqa: E402
from emobench.runs.cluster import BENCH_RESOURCE, nodes_env  # noqa: E402
from emobench.runs.sweep import load_spec, run_sweep  # noqa: E402

SPEC = """
base = "emo_tiny"
resolution = 32
[axes]
"exp_ratios[2]" = [2.0, 3.0]
"dw_kss[2]" = [3, 5]
"depths[2]" = [1, 2, 3]
[measure]
backends = ["torch"]
front = 2
rounds = 1
min_time = 0.02
threads = 1
"""


@pytest.fixture(scope="module")
def cluster():
    # address "local": a private instance even where a `ray start` cluster was left on this machine
    ray.init(address="local", num_cpus=2, resources={BENCH_RESOURCE: 1}, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_counts_on_ray_equal_local_and_each_point_is_stored_once(cluster, tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(SPEC)
    spec, _ = load_spec(path)
    with ResultStore(tmp_path / "local.sqlite") as a, ResultStore(tmp_path / "ray.sqlite") as b:
        run_sweep(spec, "s", a, workers=1, measure=False)
        outcome = run_sweep(spec, "s", b, measure=False, ray="auto")
        assert outcome.counted == 12
        key = lambda db: sorted((r["point"], r["status"], r["params"], r["macs"], r["activations"], r["rf"])  # noqa: E731
                                for r in db.sweep_points("s") if r["point"] != "__spec__")
        assert key(a) == key(b) and len(key(b)) == 12
        workers = {r["worker"] for r in b.sweep_points("s") if r["point"] != "__spec__"}
        assert all(not w.endswith(f":{os.getpid()}") for w in workers)  # counted in Ray's workers, not here
        assert run_sweep(spec, "s", b, measure=False, ray="auto").counted == 0  # resumed: nothing twice


def test_the_front_is_measured_once_through_the_nodes_measurement_slot(cluster, tmp_path):
    assert sum(n["bench"] for n in nodes_env(ray)) == 1
    path = tmp_path / "space.toml"
    path.write_text(SPEC)
    spec, _ = load_spec(path)
    with ResultStore(tmp_path / "s.sqlite") as db:
        outcome = run_sweep(spec, "s", db, ray="auto")
        assert outcome.measured == 2
        records = db.records()
        assert len(records) == 2 and set(records["status"]) == {"ok"}
        measured = [r for r in db.sweep_points("s") if (r.get("measured") or {}).get("torch")]
        assert len(measured) == 2 and set(records["uuid"]) == {r["measured"]["torch"]["uuid"] for r in measured}
        assert run_sweep(spec, "s", db, ray="auto").measured == 0 and db.count() == 2
