"""``emobench bench``: parity on every installed backend, skip and failure paths, caching, records."""

from __future__ import annotations

import json

import pytest
import torch
from test_cli import assert_user_error, run

from emobench.bench import BenchPlan, run_bench
from emobench.measure import backends as B
from emobench.store import ResultStore

CPU_BACKENDS = ["torch", "torch-cl", "onnxruntime", "openvino", "executorch", "litert"]
FAST = dict(warmup=1, min_time=0.0, min_runs=3)


@pytest.mark.slow
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backend_parity_on_a_small_emo(backend, tmp_path):
    reason = B.BACKENDS[backend].unavailable()
    if reason:
        pytest.skip(reason)
    # 256 pads the stage-3/4 windows; batch 2 checks the batch dimension survives export.
    plan = BenchPlan(["emo_tiny"], [backend], batches=[2], threads=[2], resolution=(256, 256), **FAST)
    with ResultStore(tmp_path / "s.sqlite") as store:
        (rec,) = run_bench(plan, store)
        assert rec.status == "ok", rec.error
        assert rec.parity_ok and rec.parity_max_abs <= 1e-4
        assert rec.median_ms > 0 and rec.runs >= 3 and rec.throughput == pytest.approx(2 / (rec.median_ms / 1e3))
        assert store.count() == 1


def test_records_carry_environment_and_parameters(tmp_path):
    plan = BenchPlan(["irmb"], ["torch"], batches=[1, 2], threads=[1, 2], **FAST)
    with ResultStore(tmp_path / "s.sqlite") as store:
        records = run_bench(plan, store)
        stored = store.records()
    assert [(r.batch, r.threads) for r in records] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert len(stored) == 4
    env = stored.iloc[0]["env"]
    for key in ("cpu", "cores", "threads", "os", "python", "torch", "backend_version", "emobench", "git"):
        assert key in env
    assert stored.iloc[0]["params"]["input_shape"] == [1, 64, 14, 14]
    assert all(r.export_s is None for r in records)  # eager torch converts nothing


def test_exports_are_cached(tmp_path):
    if B.BACKENDS["onnxruntime"].unavailable():
        pytest.skip("onnxruntime is not installed")
    plan = BenchPlan(["irmb_contiguous"], ["onnxruntime"], **FAST)
    first, = run_bench(plan)
    second, = run_bench(plan)
    assert not first.cached and second.cached
    assert second.export_s == first.export_s and second.artifact_bytes == first.artifact_bytes > 0


class _Missing(B.Backend):
    name = "missing"
    modules = ("emobench_no_such_runtime",)
    install = "missing"


class _Wrong(B.TorchEager):
    name = "wrong"

    def runner(self, artifact, threads, dtype):
        return lambda x: torch.zeros(x.shape[0], 64, 14, 14)


def test_missing_backend_is_skipped_with_install_hint(monkeypatch):
    monkeypatch.setitem(B.BACKENDS, "missing", _Missing())
    (rec,) = run_bench(BenchPlan(["irmb"], ["missing"], **FAST))
    assert rec.status == "skipped" and "pip install 'emobench[missing]'" in rec.error and rec.median_ms is None


def test_wrong_backend_fails_parity_and_gets_no_latency(monkeypatch):
    monkeypatch.setitem(B.BACKENDS, "wrong", _Wrong())
    (rec,) = run_bench(BenchPlan(["irmb"], ["wrong"], **FAST))
    assert rec.status == "parity-failed" and not rec.parity_ok and rec.median_ms is None and rec.parity_max_abs > 0


def test_cuda_backends_skip_without_a_gpu():
    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("a GPU is present")
    records = run_bench(BenchPlan(["irmb"], ["cuda", "cuda-compile"], **FAST))
    assert [r.status for r in records] == ["skipped", "skipped"]
    assert B.BACKENDS["cuda"].unavailable() == "no CUDA device"
    assert set(B.BACKENDS["cuda"].dtypes) == {"fp32", "fp16", "bf16"}
    assert B.BACKENDS["cuda"].sync() is torch.cuda.synchronize


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bench():  # pragma: no cover - runs only with a GPU
    for dtype in ("fp32", "fp16"):
        (rec,) = run_bench(BenchPlan(["irmb"], ["cuda"], dtype=dtype, **FAST))
        assert rec.status == "ok" and rec.median_ms > 0


def test_unsupported_dtype_is_skipped():
    (rec,) = run_bench(BenchPlan(["irmb"], ["onnxruntime"], dtype="fp16", **FAST))
    assert rec.status == "skipped"


def test_cli_bench_and_results(capsys, monkeypatch, tmp_path):
    store = tmp_path / "r.sqlite"
    code, out, _ = run(capsys, monkeypatch, "bench", "irmb", "-B", "torch,torch-cl", "-t", "1", "--min-time", "0",
                       "--min-runs", "3", "--warmup", "1", "--store", str(store), "-f", "json")
    assert code == 0
    rows = json.loads(out)["rows"]
    assert [r["backend"] for r in rows] == ["torch", "torch-cl"] and rows[0]["× torch"] == 1.0
    code, out, _ = run(capsys, monkeypatch, "results", "list", "--store", str(store), "-f", "csv")
    assert code == 0 and out.count("\n") == 3
    code, out, _ = run(capsys, monkeypatch, "results", "compare", "backend=torch", "backend=torch-cl", "--store", str(store), "-f", "json")
    assert code == 0 and json.loads(out)["rows"][0]["B / A"] > 0
    target = tmp_path / "all.json"
    code, _, _ = run(capsys, monkeypatch, "results", "export", str(target), "--store", str(store))
    assert code == 0 and len(json.loads(target.read_text())) == 2
    other = tmp_path / "other.sqlite"
    code, out, _ = run(capsys, monkeypatch, "results", "merge", str(store), "--store", str(other))
    assert code == 0 and "2 record(s) added" in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["bench", "irmb", "-B", "tensorrt"], "unknown backend tensorrt (known: torch"),
        (["bench", "irmb", "-b", "0"], "batch must be >= 1"),
        (["bench", "irmb", "-t", "0,2"], "threads must be >= 1"),
        (["bench", "irmb", "--dtype", "int4"], "unknown dtype"),
        (["bench", "emo_7m"], "unknown model"),
    ],
)
def test_cli_bench_bad_input(capsys, monkeypatch, args, needle):
    code, _, err = run(capsys, monkeypatch, *args, "--no-store")
    assert_user_error(code, err, needle)


def test_cli_unreadable_store(capsys, monkeypatch, tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_text("garbage" * 200)
    code, _, err = run(capsys, monkeypatch, "results", "list", "--store", str(bad))
    assert_user_error(code, err, "cannot use results store")
    code, _, err = run(capsys, monkeypatch, "bench", "irmb", "--store", str(bad))
    assert_user_error(code, err, "cannot use results store")


def test_executorch_threadpool_is_restored():
    if B.BACKENDS["executorch"].unavailable():
        pytest.skip("executorch is not installed")
    from executorch.extension.pybindings import portable_lib

    before = portable_lib._threadpool_get_thread_count()
    wanted = 1 if before != 1 else 2
    (rec,) = run_bench(BenchPlan(["irmb"], ["executorch"], threads=[wanted], **FAST))
    assert rec.status == "ok" and rec.threads == wanted
    assert portable_lib._threadpool_get_thread_count() == before


def test_torch_thread_count_is_set_for_the_measurement_and_restored():
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    backend = B.BACKENDS["torch"]
    seen = []
    import emobench

    artifact = backend.prepare(emobench.create_model("irmb").eval(), torch.randn(1, 64, 14, 14), "unused")
    run = backend.session(artifact, wanted, "fp32")
    run(torch.randn(1, 64, 14, 14))
    seen.append(torch.get_num_threads())
    backend.release()
    assert seen == [wanted] and torch.get_num_threads() == before
    (rec,) = run_bench(BenchPlan(["irmb"], ["torch"], threads=[wanted], **FAST))
    assert rec.status == "ok" and torch.get_num_threads() == before
