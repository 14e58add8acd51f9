"""Design-space sweeps: the spec, the points, fast counts equal to ``profile``'s, one stored row per point (also
across an interrupted run), bad specs as one line, the measured front, the chart."""

from __future__ import annotations

import json

import pytest

from emobench.errors import EmobenchError
from emobench.results.store import ResultStore
from emobench.runs.profile import profile_model
from emobench.runs.sweep import (Constraints, Point, SweepSpec, by_rank, evaluate_point, load_spec, overrides_for,
                                 pareto, points, run_sweep)
from tests.test_cli import assert_user_error, run

TINY = """
base = "emo_tiny"
resolution = 64
[axes]
"exp_ratios[2]" = [2.0, 3.0]
"dw_kss[2]" = { start = 3, stop = 5, step = 2 }
"depths[2]" = [1, 2]
"""


def write(tmp_path, text: str, name: str = "space.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_points_are_the_product_in_order_or_a_seeded_sample(tmp_path):
    spec, sweep_id = load_spec(write(tmp_path, TINY))
    assert sweep_id == "space"
    assert spec.axis_values()["dw_kss[2]"] == [3, 5]
    all_points = points(spec)
    assert len(all_points) == 8 and len({p.id for p in all_points}) == 8
    assert all_points[0].values == {"exp_ratios[2]": 2.0, "dw_kss[2]": 3, "depths[2]": 1}
    assert all_points[1].values == {"exp_ratios[2]": 2.0, "dw_kss[2]": 3, "depths[2]": 2}  # the last axis fastest
    sampled = points(spec.model_copy(update={"sample": 3, "seed": 1}))
    again = points(spec.model_copy(update={"sample": 3, "seed": 1}))
    assert [p.id for p in sampled] == [p.id for p in again] and len(sampled) == 3
    assert {p.id for p in sampled} <= {p.id for p in all_points}


def test_overrides_set_one_element_of_a_list_or_a_nested_field():
    config = {"depths": [2, 2, 8, 3], "attention": {"window_size": 7, "dim_head": 16}}
    assert overrides_for(config, {"depths[2]": 10}) == {"depths": [2, 2, 10, 3]}
    assert overrides_for(config, {"depths[0]": 1, "depths[2]": 10}) == {"depths": [1, 2, 10, 3]}
    assert overrides_for(config, {"attention.window_size": 5}) == {"attention": {"window_size": 5, "dim_head": 16}}
    assert config["depths"] == [2, 2, 8, 3]  # the base is not touched


@pytest.mark.parametrize("seq", [0, 5, 7])
def test_a_points_counts_equal_profiles(tmp_path, seq):
    spec, _ = load_spec(write(tmp_path, TINY))
    point = points(spec)[seq]
    row = evaluate_point(spec.base, point, spec.size, spec.constraints)
    assert row["status"] == "ok", row
    prof = profile_model(row["reference"], latency=False, memory=False, depth=0)
    m = prof.metrics
    assert (row["params"], row["macs"], row["activations"]) == (m["params"].value, m["macs"].value, m["activations"].value)
    assert row["rf"] > 0 and row["first_global"]


def test_invalid_and_over_budget_points_say_why():
    point = Point(0, {"dim_heads[2]": 7})
    row = evaluate_point("emo_tiny@64", point, None, Constraints())
    assert row["status"] == "invalid" and "must divide" in row["reason"]
    row = evaluate_point("emo_tiny@64", Point(1, {"depths[2]": 2}), None, Constraints(max_params=1000))
    assert row["status"] == "over budget" and "above 1,000" in row["reason"]
    # stage 1 has no attention, so the family accepts any width there; the constraint does not
    divisible = Constraints(divisible=[("embed_dims[0]", "dim_heads[0]")])
    assert evaluate_point("emo_tiny@64", Point(2, {"embed_dims[0]": 12}), None, Constraints())["status"] == "ok"
    row = evaluate_point("emo_tiny@64", Point(2, {"embed_dims[0]": 12}), None, divisible)
    assert row["status"] == "invalid" and row["reason"] == "embed_dims[0] = 12 is not a multiple of dim_heads[0] = 8"


def test_pareto_front_and_ranks():
    rows = [{"macs": 1, "params": 5}, {"macs": 2, "params": 4}, {"macs": 2, "params": 6}, {"macs": 3, "params": 1}]
    assert pareto(rows, ["macs", "params"]) == [rows[0], rows[1], rows[3]]
    assert by_rank(rows, ["macs", "params"]) == [rows[0], rows[1], rows[3], rows[2]]


def test_each_point_is_stored_once_and_an_interrupted_sweep_resumes(tmp_path):
    spec, sweep_id = load_spec(write(tmp_path, TINY))
    store_path = tmp_path / "s.sqlite"
    seen = []

    def stop_after_three(label, done, total):
        seen.append(done)
        if label == "counting" and done == 3:
            raise KeyboardInterrupt

    with ResultStore(store_path) as db, pytest.raises(KeyboardInterrupt):
        run_sweep(spec, sweep_id, db, workers=1, measure=False, progress=stop_after_three)
    with ResultStore(store_path) as db:
        assert len([r for r in db.sweep_points(sweep_id) if r["point"] != "__spec__"]) == 3
        outcome = run_sweep(spec, sweep_id, db, workers=1, measure=False)
        assert outcome.counted == 5  # only what was missing
        rows = [r for r in db.sweep_points(sweep_id) if r["point"] != "__spec__"]
        assert len(rows) == 8 and len({r["point"] for r in rows}) == 8
        assert run_sweep(spec, sweep_id, db, workers=1, measure=False).counted == 0
        other = spec.model_copy(update={"axes": {"depths[2]": [1]}})
        with pytest.raises(EmobenchError, match="another spec"):
            run_sweep(other, sweep_id, db, workers=1, measure=False)


def test_worker_processes_count_the_same(tmp_path):
    spec, _ = load_spec(write(tmp_path, TINY))
    with ResultStore(tmp_path / "a.sqlite") as a, ResultStore(tmp_path / "b.sqlite") as b:
        run_sweep(spec, "one", a, workers=1, measure=False)
        run_sweep(spec, "two", b, workers=2, measure=False)
        key = lambda rows: sorted((r["point"], r["params"], r["macs"], r["activations"], r["rf"]) for r in rows)  # noqa: E731
        assert key(a.sweep_points("one")) == key(b.sweep_points("two"))
        workers = {r["worker"] for r in b.sweep_points("two") if r["point"] != "__spec__"}
        assert len(workers) >= 1


@pytest.mark.parametrize("text, needles", [
    ("unknown = 1\n" + TINY, ["unknown", "Extra inputs"]),
    (TINY + "\nwidth = 1\n", ["'width' must be a list of values or a range"]),
    ('base = "emo_tiny"\n[axes]\n', ["no axes"]),
    ('base = "emo_tiny"\n[axes]\n"depths[2]" = []\n', ["has no values"]),
    (TINY + "\n[constraints]\nmin_params = 5e6\nmax_params = 1e6\n", ["no point can meet it"]),
    ('base = "emo_tiny"\n[axes]\n"depthz[2]" = [1]\n', ["no field 'depthz[2]'"]),
    ('base = "emo_tiny"\n[axes]\n"depths[9]" = [1]\n', ["no element 9"]),
    ('base = "no_such_model"\n[axes]\n"depths[2]" = [1]\n', ["no_such_model"]),
    (TINY + "\n[constraints]\nmax_params = 10\n", ["no point meets the budget"]),
    ('base = "emo_tiny"\n[axes]\n"dw_kss[2]" = { start = 7, stop = 3, step = 2 }\n', ["empty"]),
    ("not toml = = 1", ["not valid TOML"]),
])
def test_bad_specs_are_one_line(capsys, monkeypatch, tmp_path, text, needles):
    path = write(tmp_path, text)
    code, _, err = run(capsys, monkeypatch, "sweep", str(path), "--no-measure", "--store", str(tmp_path / "s.sqlite"))
    assert_user_error(code, err, *needles)


def test_cli_json_measured_front_and_chart(capsys, monkeypatch, tmp_path):
    spec = write(tmp_path, TINY + '\n[measure]\nbackends = ["torch"]\nfront = 2\nrounds = 1\nmin_time = 0.02\nthreads = 1\n')
    store, out, chart = tmp_path / "s.sqlite", tmp_path / "sweep.json", tmp_path / "sweep.html"
    code, _, err = run(capsys, monkeypatch, "sweep", str(spec), "--store", str(store), "-o", str(out),
                       "--plot", str(chart), "-j", "1")
    assert code == 0, err
    doc = json.loads(out.read_text())
    meta, rows = doc["meta"], doc["rows"]
    assert meta["schema"] == "emobench.sweep/1" and meta["points"] == 8 and meta["ok"] == 8
    assert meta["measured_now"] == 2 and len(meta["front"]) >= 1
    measured = [r for r in rows if r["torch_ms"] is not None]
    assert len(measured) == 2 and any(r["front"] for r in measured)
    ok = sorted(r["macs"] for r in rows)
    assert sorted(r["macs"] for r in measured) == ok[:2]  # here each front is one point: the fewest MACs first
    assert chart.exists() and "plotly" in chart.read_text()[:5000].lower()
    with ResultStore(store, readonly=True) as db:
        records = db.records()
        assert len(records) == 2 and set(records["model"]) == {r["reference"] for r in db.sweep_points("space")
                                                              if (r.get("measured") or {}).get("torch")}
    # run again: nothing counted or measured twice
    code, _, err = run(capsys, monkeypatch, "sweep", str(spec), "--store", str(store), "-o", str(out), "-j", "1")
    assert code == 0, err
    assert json.loads(out.read_text())["meta"]["measured_now"] == 0
    with ResultStore(store, readonly=True) as db:
        assert db.count() == 2


def test_spec_digest_ignores_measurement_settings():
    a = SweepSpec.model_validate({"base": "emo_tiny", "axes": {"depths[2]": [1, 2]}})
    b = SweepSpec.model_validate({"base": "emo_tiny", "axes": {"depths[2]": [1, 2]}, "measure": {"front": 3}})
    c = SweepSpec.model_validate({"base": "emo_tiny", "axes": {"depths[2]": [1, 3]}})
    assert a.digest() == b.digest() != c.digest()
