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
from emobench.runs.predict import OVERHEAD, error_summary, pieces_of, predict
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
        first = predict(["emo_tiny@32"], ["onnxruntime"], 1, db, rounds=1, min_time=0.02)
    return path, first


def test_tables_are_measured_once_and_reused(table_store):
    path, first = table_store
    with ResultStore(path) as db:
        (p,) = first
        assert p.form == "cpu-ort" and p.predicted_ms > 0 and p.overhead_ms > 0
        distinct = len({r["key"] for r in p.rows})
        shapes = len({s.input_shape for s in pieces_of("emo_tiny@32", "cpu-ort")})
        assert p.measured_now == distinct + shapes  # and an empty call per input shape
        assert p.predicted_ms == pytest.approx(sum(r["ms"] for r in p.rows) - p.overhead_ms)
        again = predict(["emo_tiny@32"], ["onnxruntime"], 1, db, rounds=1, min_time=0.02)
        assert again[0].measured_now == 0 and again[0].predicted_ms == pytest.approx(p.predicted_ms)
        models = set(db.records()["model"])
    assert any(m.startswith(OVERHEAD) for m in models) and all(m.startswith("piece:") for m in models)


def test_cli_prediction_error_and_bad_backend(capsys, monkeypatch, tmp_path, table_store):
    store, out = table_store[0], tmp_path / "p.json"
    code, _, err = run(capsys, monkeypatch, "predict", "emo_tiny@32", "-B", "onnxruntime", "--measure", "--rounds", "1",
                       "--min-time", "0.02", "--store", str(store), "-o", str(out))
    assert code == 0, err
    doc = json.loads(out.read_text())
    (row,) = doc["rows"]
    assert row["measured_now"] == 0  # the table came from the store
    assert doc["meta"]["schema"] == "emobench.predict/1"
    assert row["measured_ms"] > 0 and row["error"] == pytest.approx(row["predicted_ms"] / row["measured_ms"] - 1)
    assert doc["meta"]["summary"]["onnxruntime"]["n"] == 1
    code, _, err = run(capsys, monkeypatch, "predict", "emo_tiny@32", "-B", "nosuch", "--store", str(store))
    assert_user_error(code, err, "unknown backend 'nosuch'")


def test_error_summary():
    rows = [{"backend": "a", "error": 0.05}, {"backend": "a", "error": -0.2}, {"backend": "b", "error": None}]
    summary = error_summary(rows)
    assert summary["a"] == {"n": 2, "within": 1, "share_within": 0.5, "median_abs_error": pytest.approx(0.125)}
    assert summary["b"]["n"] == 0


def test_a_sweep_predicts_every_point_from_the_table(table_store, tmp_path):
    """A deeper stage 3 repeats a block the table already has: predicted without measuring anything more, and
    exactly that row (less one call's overhead) slower."""
    from emobench.runs.sweep import load_spec, run_sweep

    path = tmp_path / "deeper.toml"
    path.write_text('base = "emo_tiny@32"\n[axes]\n"depths[2]" = [2, 3]\n'
                    '[measure]\nbackends = ["onnxruntime"]\nthreads = 1\nfront = 0\npredict = true\n')
    spec, sweep_id = load_spec(path)
    with ResultStore(table_store[0]) as db:
        before = db.count()
        outcome = run_sweep(spec, sweep_id, db, workers=1)
        assert db.count() == before  # no table row measured
        medians = dict(zip(db.records()["model"], db.records()["median_ms"]))
    (p,) = table_store[1]
    rows = sorted(outcome.rows, key=lambda r: r["values_json"]["depths[2]"])
    two, three = (r["predicted"]["onnxruntime"] for r in rows)
    assert two == pytest.approx(p.predicted_ms)
    block = next(s for s in pieces_of("emo_tiny@32", "cpu-ort") if s.label == "stage3.1")  # what a third one repeats
    call = medians[f"{OVERHEAD}:{'x'.join(map(str, block.input_shape))}"]
    assert three - two == pytest.approx(medians[block.name] - call)


def test_in_memory_modules_that_print_and_weigh_the_same_do_not_share_an_export():
    """Blocks of emo_5m, emo_5m_post and emo_5m_parallel print alike and get the same seeded weights, but compute
    differently (attention before or after the expansion, cascaded or parallel): their exports' cache keys differ."""
    from emobench.runs.bench import model_identity
    from emobench.runtimes.base import weights_fingerprint

    blocks = [next(p.module for p in pieces_of(name, "reference") if p.label == "stage4.1")
              for name in ("emo_5m", "emo_5m_post", "emo_5m_parallel")]
    assert len({repr(b) for b in blocks}) == 1 and len({weights_fingerprint(b) for b in blocks}) == 1
    assert len({json.dumps(model_identity(b), sort_keys=True) for b in blocks}) == 3
