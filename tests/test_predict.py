"""Latency predicted from measured block tables: the pieces compose to the network in every formulation,
identical blocks share a table row, rows are measured once and reused from the store, the CLI reports the
prediction's error against the whole network measured in the same formulation."""

from __future__ import annotations

import json

import pytest
import torch

from emobench.models.references import resolve
from emobench.nn.forms import FORMULATIONS, formulate
from emobench.nn.forms.prefix import Piece, Prefix, Tail, block_count
from emobench.results.store import ResultStore
from emobench.runs.predict import (OVERHEAD, calibration_factor, error_summary, pair_piece, pieces_of, predict,
                                   rows_needed, whole_key)
from emobench.runtimes.backends import BACKENDS
from tests.test_cli import assert_user_error, run


@pytest.mark.parametrize("form", list(FORMULATIONS))
def test_stem_blocks_and_tail_compose_to_the_network(form):
    model = resolve("emo_tiny").build(None)
    if FORMULATIONS[form].unavailable(model):
        pytest.skip(FORMULATIONS[form].unavailable(model))
    formed = formulate(model, form)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = Prefix(formed, 0)(x)
        for k in range(block_count(formed)):
            y = Piece(formed, k)(y)
        assert torch.allclose(Tail(formed)(y), formed(x), atol=1e-5)
    # the tail holds none of the blocks' weights
    tail_params = sum(p.numel() for p in Tail(formed).parameters())
    assert tail_params < sum(p.numel() for p in formed.parameters()) / 2


def test_identical_blocks_share_a_table_row():
    specs = pieces_of("emo_tiny,depths=[1, 1, 4, 2]@64", "fused")
    kinds = [s.kind for s in specs]
    assert kinds[0] == "stem" and kinds[-1] == "tail" and kinds.count("block") == 1 + 1 + 1 + 4 + 2
    stage3 = [s for s in specs if s.label.startswith("stage3")]
    assert len(stage3) == 4 and len({s.key for s in stage3[1:]}) == 1 and stage3[0].key != stage3[1].key
    # drop-path rates differ block by block and do not split rows; another form or input does
    assert {s.key for s in pieces_of("emo_tiny,drop_path=0.3,depths=[1, 1, 4, 2]@64", "fused")} == {s.key for s in specs}
    assert not {s.key for s in pieces_of("emo_tiny,depths=[1, 1, 4, 2]@64", "reference")} & {s.key for s in specs}
    for s in specs:
        assert s.module.default_input_size == s.input_shape[1:]


@pytest.fixture(scope="module")
def table_store(tmp_path_factory):
    """A store whose ONNX Runtime table has emo_tiny@32's rows (measured once for the tests below)."""
    if BACKENDS["onnxruntime"].unavailable():
        pytest.skip(BACKENDS["onnxruntime"].unavailable())
    path = tmp_path_factory.mktemp("predict") / "s.sqlite"
    with ResultStore(path) as db:
        first = predict(["emo_tiny@32"], ["onnxruntime"], 1, db, rounds=1, min_time=0.02, method="pairs")
    return path, first


def test_tables_are_measured_once_and_reused(table_store):
    path, first = table_store
    specs = pieces_of("emo_tiny@32", "cpu-ort")
    with ResultStore(path) as db:
        (p,) = first
        assert p.form == "cpu-ort" and p.method == "pairs" and p.predicted_ms > 0 and p.overhead_ms is None
        # every piece but the stem alone, every adjacent pair: the distinct ones, once
        assert p.measured_now == len({s.name for s in rows_needed(specs, "pairs")})
        medians = dict(zip(db.records()["model"], db.records()["median_ms"]))
        # the pairs telescope: Σ [T(p_i → p_i+1) − T(p_i+1)] + T(tail)
        chained = sum(medians[pair_piece(a, b).name] - medians[b.name] for a, b in zip(specs, specs[1:]))
        assert p.predicted_ms == pytest.approx(chained + medians[specs[-1].name])
        assert p.predicted_ms == pytest.approx(sum(r["ms"] for r in p.rows))
        again = predict(["emo_tiny@32"], ["onnxruntime"], 1, db, rounds=1, min_time=0.02, method="pairs")
        assert again[0].measured_now == 0 and again[0].predicted_ms == pytest.approx(p.predicted_ms)
        # the isolated estimator shares the single pieces: only the stem alone and an empty call per input shape are new
        (iso,) = predict(["emo_tiny@32"], ["onnxruntime"], 1, db, rounds=1, min_time=0.02, method="isolated")
        assert iso.measured_now == 1 + len({s.input_shape for s in specs})
        assert iso.predicted_ms == pytest.approx(sum(r["ms"] for r in iso.rows) - iso.overhead_ms) and iso.overhead_ms > 0
        models = set(db.records()["model"])
    assert any(m.startswith(OVERHEAD) for m in models) and all(m.startswith("piece:") for m in models)


def test_cli_prediction_error_and_bad_backend(capsys, monkeypatch, tmp_path, table_store):
    store, out = table_store[0], tmp_path / "p.json"
    code, _, err = run(capsys, monkeypatch, "predict", "emo_tiny@32", "-B", "onnxruntime", "--measure", "--rounds", "1",
                       "--min-time", "0.02", "--store", str(store), "-o", str(out))
    assert code == 0, err
    doc = json.loads(out.read_text())
    (row,) = doc["rows"]
    # --measure re-times every row the network needs in the same passes as the network, stored ones included
    assert row["measured_now"] == len({s.name for s in rows_needed(pieces_of("emo_tiny@32", "cpu-ort"), "isolated")})
    assert doc["meta"]["schema"] == "emobench.predict/3" and row["method"] == "isolated"
    assert row["measured_ms"] > 0 and row["error"] == pytest.approx(row["predicted_ms"] / row["measured_ms"] - 1)
    assert doc["meta"]["summary"]["onnxruntime"]["n"] == 1
    code, _, err = run(capsys, monkeypatch, "predict", "emo_tiny@32", "-B", "nosuch", "--store", str(store))
    assert_user_error(code, err, "unknown backend 'nosuch'")
    code, _, err = run(capsys, monkeypatch, "predict", "emo_tiny@32", "-B", "onnxruntime", "--method", "nosuch",
                       "--store", str(store))
    assert_user_error(code, err, "unknown prediction method 'nosuch'")


def test_calibrated_is_the_isolated_estimate_times_the_factor_of_the_other_networks(table_store):
    nets = ["emo_tiny@32", "emo_tiny,depths=[1, 1, 3, 2]@32"]
    with ResultStore(table_store[0]) as db:
        preds = predict(nets, ["onnxruntime"], 1, db, rounds=1, min_time=0.02, method="isolated,calibrated",
                        calibration=nets)
        medians = dict(zip(db.records()["model"], db.records()["median_ms"]))
        (alone,) = predict(nets[:1], ["onnxruntime"], 1, db, method="calibrated", calibration=nets[:1])
    iso = {p.model: p for p in preds if p.method == "isolated"}
    cal = {p.model: p for p in preds if p.method == "calibrated"}
    for net, other in (nets, nets[::-1]):
        whole = medians[f"piece:whole:{whole_key(pieces_of(other, iso[other].form))}"]  # measured whole, stored
        pieces, calls = sum(r["ms"] for r in iso[other].rows), iso[other].overhead_ms
        # predicting one, the other is the only calibration network: S − k·O = W exactly on it
        assert cal[net].calibrated_on == [other] and cal[net].factor == pytest.approx((pieces - whole) / calls)
        assert cal[net].rows == iso[net].rows and cal[net].overhead_ms == pytest.approx(cal[net].factor * iso[net].overhead_ms)
        assert cal[net].predicted_ms == pytest.approx(sum(r["ms"] for r in cal[net].rows) - cal[net].overhead_ms)
    # a network is never its own calibration
    assert alone.predicted_ms is None and "no calibration network" in alone.error


def test_calibration_factor_by_hand():
    # (S, O, W) = (10, 1, 8), (20, 2, 17): k = Σ (S − W)·O / Σ O² = (2·1 + 3·2) / (1 + 4)
    assert calibration_factor([(10.0, 1.0, 8.0), (20.0, 2.0, 17.0)]) == pytest.approx(1.6)
    assert calibration_factor([(10.0, 2.0, 7.0)]) == pytest.approx(1.5)  # one network: S − k·O = W exactly


def test_error_summary():
    rows = [{"backend": "a", "error": 0.05}, {"backend": "a", "error": -0.2}, {"backend": "b", "error": None}]
    summary = error_summary(rows)
    assert summary["a"] == {"n": 2, "within": 1, "share_within": 0.5, "median_abs_error": pytest.approx(0.125)}
    assert summary["b"]["n"] == 0


def test_a_sweep_predicts_every_point_from_the_table(table_store, tmp_path):
    """A stage 3 one block shorter needs only rows the deeper network's table has: predicted without measuring
    anything. With the default estimator the deeper one is slower by exactly the repeated block less one empty
    call at its input; with pairs, by the block chained to itself less the block alone."""
    from emobench.runs.sweep import load_spec, run_sweep

    base = "emo_tiny,depths=[1, 1, 3, 2]@32"
    with ResultStore(table_store[0]) as db:
        deeper = predict([base], ["onnxruntime"], 1, db, rounds=1, min_time=0.02, method="isolated,pairs")
        shorter = predict([base.replace("3, 2", "2, 2")], ["onnxruntime"], 1, db, method="isolated,pairs")
        assert {p.measured_now for p in shorter} == {0}
    path = tmp_path / "deeper.toml"
    path.write_text(f'base = "{base}"\n[axes]\n"depths[2]" = [2, 3]\n'
                    '[measure]\nbackends = ["onnxruntime"]\nthreads = 1\nfront = 0\npredict = true\n')
    spec, sweep_id = load_spec(path)
    with ResultStore(table_store[0]) as db:
        before = db.count()
        outcome = run_sweep(spec, sweep_id, db, workers=1)
        assert db.count() == before  # no table row measured
        medians = dict(zip(db.records()["model"], db.records()["median_ms"]))
    rows = sorted(outcome.rows, key=lambda r: r["values_json"]["depths[2]"])
    two, three = (r["predicted"]["onnxruntime"] for r in rows)
    assert (two, three) == (pytest.approx(shorter[0].predicted_ms), pytest.approx(deeper[0].predicted_ms))
    block = next(s for s in pieces_of(base, "cpu-ort") if s.label == "stage3.2")  # what the third one repeats
    call = medians[f"{OVERHEAD}:{'x'.join(map(str, block.input_shape))}"]
    assert three - two == pytest.approx(medians[block.name] - call)
    assert deeper[1].method == "pairs" and deeper[1].predicted_ms - shorter[1].predicted_ms == pytest.approx(
        medians[pair_piece(block, block).name] - medians[block.name])


def test_in_memory_modules_that_print_and_weigh_the_same_do_not_share_an_export():
    """Blocks of emo_5m, emo_5m_post and emo_5m_parallel print alike and get the same seeded weights, but compute
    differently (attention before or after the expansion, cascaded or parallel): their exports' cache keys differ."""
    from emobench.runs.bench import model_identity
    from emobench.runtimes.base import weights_fingerprint

    blocks = [next(p.module for p in pieces_of(name, "reference") if p.label == "stage4.1")
              for name in ("emo_5m", "emo_5m_post", "emo_5m_parallel")]
    assert len({repr(b) for b in blocks}) == 1 and len({weights_fingerprint(b) for b in blocks}) == 1
    assert len({json.dumps(model_identity(b), sort_keys=True) for b in blocks}) == 3


class _Unexportable(torch.nn.Module):
    def forward(self, x):
        if torch.compiler.is_exporting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            raise RuntimeError("this module refuses to be exported")
        return x * 2


class _Constant(torch.nn.Module):
    """Exports, but computes something else than eager torch (a buffer changed after the export is cached is
    not it; a module whose export is made on another input is): parity catches it."""

    def forward(self, x):
        return x * 2 if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export() else x * 3


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_modules_timed_together_in_one_worker(backend):
    """Every module loaded in one worker and timed in each pass; one that cannot export, or whose export computes
    something else, is its own failure."""
    from emobench.runs.bench import time_together

    if BACKENDS[backend].unavailable():
        pytest.skip(BACKENDS[backend].unavailable())
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    modules = {"conv": (conv, (1, 3, 16, 16)), "bad": (_Unexportable(), (1, 3, 16, 16)),
               "wrong": (_Constant(), (1, 3, 8, 8)),
               "linear": (torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 4)), (1, 3, 4, 4))}
    timing = time_together(modules, backend, 1, rounds=2, min_time=0.01, warmup=1, min_runs=3)
    assert timing.error is None and set(timing.failed) == {"bad", "wrong"}
    assert timing.failed["bad"].startswith("export:") and timing.failed["wrong"].startswith("parity-failed")
    assert set(timing.passes) == {"conv", "linear"} and all(len(v) == 2 and min(v) > 0 for v in timing.passes.values())
    rec = timing.to_record("linear", (1, 3, 4, 4))
    assert rec.status == "ok" and rec.rounds == 2 and rec.resolution == "4x4" and rec.backend == backend
    assert rec.median_ms == pytest.approx(timing.median_ms("linear")) and rec.parity_max_abs < 1e-4
    assert timing.to_record("bad", (1, 3, 16, 16)).status == "error"
