"""``emobench bench``: parity on every installed backend, skip and failure paths, caching, records."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
import torch
from test_cli import assert_user_error, run

import fake_backends as fake
from emobench.runs import bench as bench_module
from emobench.runs.bench import BenchPlan, run_bench
from emobench.runtimes import backends as B
from emobench.nn import forms
from emobench.nn.registry import FAMILIES
from emobench.results.store import ResultStore

CPU_BACKENDS = ["torch", "torch-cl", "onnxruntime", "openvino", "executorch", "litert"]
FAST = dict(warmup=1, min_time=0.0, min_runs=3, rounds=1)


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
        assert rec.median_ms > 0 and rec.runs >= 3 and rec.throughput > 0  # its arithmetic: test_throughput_…
        # fp32 means fp32 on every backend (OpenVINO computes bf16 by default on CPUs with AVX512_BF16/AMX)
        assert rec.precision == "fp32"
        assert rec.form_requested == "auto" and rec.form in B.BACKENDS[backend].form_preference
        assert rec.load_s >= 0 and rec.first_ms > 0 and rec.peak_rss_mb >= rec.rss_base_mb > 0
        assert rec.explain["summary"]
        assert store.count() == 1
        stored = store.records().iloc[0]
        assert stored["precision"] == "fp32" and stored["explain"] == rec.explain


def test_worker_results_reach_the_store_with_environment_and_parameters(tmp_path):
    plan = BenchPlan(["irmb"], ["torch"], batches=[1, 2], threads=[1], **{**FAST, "rounds": 2})
    with ResultStore(tmp_path / "s.sqlite") as store:
        records = run_bench(plan, store)
        stored = store.records()
    assert [(r.batch, r.threads) for r in records] == [(1, 1), (2, 1)]
    assert len(stored) == 2 and set(stored["status"]) == {"ok"}
    # two rounds, each a fresh worker process, pooled: at least min_runs calls from each
    assert list(stored["rounds"]) == [2, 2] and all(stored["runs"] >= 6) and all(stored["round_spread"] >= 0)
    env = stored.iloc[0]["env"]
    for key in ("cpu", "cpu_flags", "cores", "threads", "os", "python", "torch", "backend_version", "emobench", "git"):
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


def test_edited_formulation_code_is_exported_anew(monkeypatch, tmp_path):
    """The cache key holds a hash of emobench's network/exporter sources: an artifact exported by other code
    (an edited formulation under the same version number) is not reused."""
    if B.BACKENDS["onnxruntime"].unavailable():
        pytest.skip("onnxruntime is not installed")
    plan = BenchPlan(["irmb_contiguous"], ["onnxruntime"], **FAST)
    first, = run_bench(plan)
    monkeypatch.setattr(bench_module, "code_fingerprint", lambda: "edited")
    second, = run_bench(plan)
    assert not second.cached


def test_the_code_fingerprint_changes_with_any_formulation_file(tmp_path):
    """The fingerprint covers every source file under the packages named, nested ones (nn/forms) included."""
    import shutil

    from emobench.paths import PACKAGE_DIR, source_fingerprint

    shutil.copytree(PACKAGE_DIR / "nn", tmp_path / "nn")
    before = source_fingerprint("nn", root=tmp_path)
    assert source_fingerprint("nn", root=tmp_path) == before  # a hash of the files, not of the moment
    mobile = tmp_path / "nn" / "forms" / "mobile.py"
    mobile.write_text(mobile.read_text() + "\n# edited\n")
    source_fingerprint.cache_clear()
    assert source_fingerprint("nn", root=tmp_path) != before
    (tmp_path / "nn" / "forms" / "extra.py").write_text("")  # a new file too
    source_fingerprint.cache_clear()
    assert len({before, source_fingerprint("nn", root=tmp_path)}) == 2


def test_missing_backend_is_skipped_with_install_hint(monkeypatch):
    monkeypatch.setitem(B.BACKENDS, "missing", fake.Missing())
    (rec,) = run_bench(BenchPlan(["irmb"], ["missing"], **FAST))
    assert rec.status == "skipped" and "pip install 'emobench[missing]'" in rec.error and rec.median_ms is None


def test_wrong_backend_fails_parity_and_gets_no_latency(monkeypatch):
    monkeypatch.setitem(B.BACKENDS, "wrong", fake.Wrong())
    (rec,) = run_bench(BenchPlan(["irmb"], ["wrong"], forms=["fused"], **FAST))
    assert rec.status == "parity-failed" and not rec.parity_ok and rec.median_ms is None and rec.parity_max_abs > 0
    assert "tolerance" in rec.error


def test_a_precision_other_than_asked_fails_parity(monkeypatch):
    monkeypatch.setitem(B.BACKENDS, "silent-bf16", fake.SilentBf16())
    (rec,) = run_bench(BenchPlan(["irmb"], ["silent-bf16"], forms=["fused"], **FAST))
    assert rec.status == "parity-failed" and rec.median_ms is None
    assert rec.error == "silent-bf16 ran bf16, not fp32" and rec.precision == "bf16"


def test_crashing_and_hanging_workers_become_error_records_and_the_sweep_goes_on(monkeypatch, tmp_path):
    monkeypatch.setitem(B.BACKENDS, "crash", fake.Crash())
    monkeypatch.setitem(B.BACKENDS, "hang", fake.Hang())
    plan = BenchPlan(["irmb"], ["crash", "hang", "torch"], forms=["fused"], timeout=10, **FAST)
    with ResultStore(tmp_path / "s.sqlite") as store:
        crash, hang, ok = run_bench(plan, store)
        assert store.count() == 3
    assert crash.status == "error" and crash.error == "worker died (exit code 3)"
    assert hang.status == "error" and hang.error == "worker timed out after 10 s and was killed"
    assert ok.status == "ok" and ok.median_ms > 0
    assert bench_module.failed([crash, hang, ok]) == [crash, hang]


def test_auto_measures_the_first_formulation_that_passes_parity(monkeypatch):
    if B.BACKENDS["onnxruntime"].unavailable():
        pytest.skip("onnxruntime is not installed")

    class Doubled(torch.nn.Module):  # exported by this process, so the worker needs no knowledge of it
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x) * 2

    broken = forms.Formulation("broken", "wrong on purpose", Doubled, lambda m: None)
    monkeypatch.setitem(forms.FORMULATIONS, "broken", broken)
    monkeypatch.setattr(B.BACKENDS["onnxruntime"], "form_preference", ("broken", "fused"))
    m2 = FAMILIES["m2"]  # the family's record says which forms it offers
    monkeypatch.setitem(FAMILIES, "m2", dataclasses.replace(m2, forms=(*m2.forms, "broken")))
    (rec,) = run_bench(BenchPlan(["irmb"], ["onnxruntime"], **FAST))
    assert rec.status == "ok" and rec.form == "fused" and rec.form_requested == "auto"
    assert rec.error.startswith("broken: parity-failed (max |Δ|")


def test_a_forced_form_the_model_lacks_is_an_error():
    (rec,) = run_bench(BenchPlan(["irmb"], ["torch"], forms=["official"], **FAST))
    assert rec.status == "error" and rec.form == "official" and "the m2 family offers no official form" in rec.error


def test_cuda_backends_skip_without_a_gpu():
    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("a GPU is present")
    records = run_bench(BenchPlan(["irmb"], ["cuda", "cuda-compile"], **FAST))
    assert [r.status for r in records] == ["skipped", "skipped"]
    assert all(r.error and "no CUDA device" in r.error and r.median_ms is None for r in records)


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
                       "--min-runs", "3", "--warmup", "1", "--rounds", "1", "--store", str(store), "-f", "json")
    assert code == 0
    data = json.loads(out)
    rows = data["rows"]
    assert data["meta"]["schema"] == "emobench.bench/1" and data["meta"]["units"]["median_ms"] == "ms"
    assert [r["backend"] for r in rows] == ["torch", "torch-cl"]
    # eager torch is its own baseline; torch-cl finds it at the same settings (values: test_ratios_pair_…)
    assert rows[0]["ratio_to_torch"] == 1.0 and rows[1]["ratio_to_torch"] is not None
    code, out, _ = run(capsys, monkeypatch, "results", "list", "--store", str(store), "-f", "csv")
    assert code == 0 and out.count("\n") == 3
    target = tmp_path / "all.json"
    code, _, _ = run(capsys, monkeypatch, "results", "export", str(target), "--store", str(store))
    exported = {r["backend"]: r for r in json.loads(target.read_text())}
    assert code == 0 and len(exported) == 2
    # nothing lost on the way: the stored medians are the ones bench printed
    assert [exported[b]["median_ms"] for b in ("torch", "torch-cl")] == [r["median_ms"] for r in rows]
    code, out, _ = run(capsys, monkeypatch, "results", "compare", "backend=torch", "backend=torch-cl", "--store", str(store), "-f", "json")
    assert code == 0
    (pair,) = json.loads(out)["rows"]  # A is the stored torch record, B the torch-cl one
    assert (pair["a_ms"], pair["b_ms"]) == (rows[0]["median_ms"], rows[1]["median_ms"])
    other = tmp_path / "other.sqlite"
    code, out, _ = run(capsys, monkeypatch, "results", "merge", str(store), "--store", str(other))
    assert code == 0 and "2 record(s) added" in out


def test_throughput_and_statistics_come_from_the_worker_times(monkeypatch):
    """Workers that report known per-call times (batch 2, two rounds): round 1 took 4, 5, 6 ms, round 2 5 and
    8 ms. Pooled and sorted: 4, 5, 5, 6, 8 ms, so by hand the median is 5 ms, the mean 28 / 5 = 5.6 ms, p10
    4 + 0.4·(5 − 4) = 4.4 ms, p90 6 + 0.6·(8 − 6) = 7.2 ms (linear interpolation); 2 images per 5 ms are
    400 images/s; the round medians 5 and 6.5 ms spread by 1.5 / 5.75."""
    times = iter([[0.004, 0.005, 0.006], [0.005, 0.008]])

    def worker(spec, workdir, timeout):
        return {"status": "ok", "times": next(times), "parity_max_abs": 0.0, "precision": "fp32", "explain": {}}

    monkeypatch.setattr(bench_module, "run_worker", worker)
    (rec,) = run_bench(BenchPlan(["irmb"], ["torch"], batches=[2], threads=[1], **{**FAST, "rounds": 2}))
    assert rec.status == "ok" and rec.runs == 5 and rec.rounds == 2
    assert rec.median_ms == pytest.approx(5.0) and rec.throughput == pytest.approx(400.0)
    assert (rec.mean_ms, rec.p10_ms, rec.p90_ms) == pytest.approx((5.6, 4.4, 7.2))
    assert rec.round_spread == pytest.approx(1.5 / 5.75)


def _record(backend: str, threads: int, median: float, created: float, machine: str = "m"):
    from emobench.results.record import BenchRecord

    return BenchRecord(model="emo_1m", backend=backend, form="reference", form_requested="auto", batch=1,
                       threads=threads, resolution="224x224", dtype="fp32", status="ok", median_ms=median,
                       iqr_ms=0.01, round_spread=0.01, created=created, machine=machine)


def test_ratios_pair_records_with_known_medians(capsys, monkeypatch, tmp_path):
    """ratio_to_torch is over eager torch's newest record at the same threads and machine: 6 / 8 = 0.75 and
    4 / 5 = 0.8 (the older 100 ms torch record is superseded); none where torch has no such record (4 threads,
    another machine). ``results compare`` pairs the same records: B / A = 0.75 at 1 thread, 0.8 at 2."""
    from emobench.results.record import records_table

    records = [_record("torch", 1, 100.0, 1.0), _record("torch", 1, 8.0, 2.0), _record("torch", 2, 5.0, 3.0),
               _record("onnxruntime", 1, 6.0, 4.0), _record("onnxruntime", 2, 4.0, 5.0),
               _record("onnxruntime", 4, 3.0, 6.0), _record("onnxruntime", 1, 2.0, 7.0, machine="other")]
    table = records_table(records)
    ratios = [None if r != r else r for r in table["ratio_to_torch"]]  # NaN as None
    assert ratios == [pytest.approx(12.5), 1.0, 1.0, pytest.approx(0.75), pytest.approx(0.8), None, None]
    assert table["ratio_to_official"].isna().all()  # no record of the official form
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        for rec in records:
            store.add(rec)
    code, out, err = run(capsys, monkeypatch, "results", "compare", "backend=torch", "backend=onnxruntime",
                         "--store", str(path), "-f", "json")
    assert code == 0, err
    pairs = {(r["machine"], r["threads"]): r["ratio"] for r in json.loads(out)["rows"]}
    assert pairs == {("m", 1): pytest.approx(0.75), ("m", 2): pytest.approx(0.8)}


@pytest.mark.parametrize(
    "args, needle",
    [
        (["bench", "irmb", "-B", "tensorrt"], "unknown backend tensorrt (known: torch"),
        (["bench", "irmb", "-b", "0"], "batch must be >= 1"),
        (["bench", "irmb", "-t", "0,2"], "threads must be >= 1"),
        (["bench", "irmb", "--dtype", "int4"], "unknown dtype"),
        (["bench", "emo_7m"], "unknown model"),
        (["bench", "irmb", "--form", "fastest"], "unknown form 'fastest'"),
        (["bench", "irmb", "--rounds", "0"], "--rounds"),
        (["bench", "irmb", "--timeout", "0"], "timeout must be > 0"),
        (["bench", "irmb", "--tolerance", "-1"], "--tolerance"),
        (["bench", "irmb", "-B", ""], "no backend given"),
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


def test_measurements_leave_this_process_alone():
    """Runtimes set process-wide state (thread pools); workers keep it out of the calling process."""
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    backends = ["torch"] + ([] if B.BACKENDS["executorch"].unavailable() else ["executorch"])
    loaded = {m for m in ("executorch.runtime", "onnxruntime") if m in sys.modules}  # by earlier tests (int8 exports)
    records = run_bench(BenchPlan(["irmb"], backends, threads=[wanted], forms=["fused"], **FAST))
    assert all(r.status == "ok" and r.threads == wanted for r in records)
    assert torch.get_num_threads() == before
    assert {m for m in ("executorch.runtime", "onnxruntime") if m in sys.modules} == loaded  # the sweep loaded none


def test_executorch_reports_its_fallback_operators():
    if B.BACKENDS["executorch"].unavailable():
        pytest.skip("executorch is not installed")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    class WithCumsum(torch.nn.Module):  # XNNPACK has no cumulative sum: it must stay on a portable kernel
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return torch.cumsum(self.conv(x), dim=1) + 1

    program = torch.export.export(WithCumsum().eval(), (torch.randn(1, 3, 8, 8),))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    report = B.executorch_delegation(lowered.exported_program().graph_module)
    assert report["fallback"]["cumsum"] == 1 and "convolution" not in report["fallback"]
    assert report["accelerated"]["convolution"] == 1 and report["subgraphs"] >= 1
    assert f"{sum(report['fallback'].values())} on portable kernels" in report["summary"]


@pytest.mark.slow
def test_litert_reports_its_fallback_operators(tmp_path):
    if B.BACKENDS["litert"].unavailable():
        pytest.skip("litert is not installed")

    class WithCumsum(torch.nn.Module):  # XNNPACK has no cumulative sum: TFLite's built-in kernel runs it
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return torch.cumsum(self.conv(x), dim=1) * 2 + 1

    backend = B.BACKENDS["litert"]
    x = torch.randn(1, 3, 8, 8)
    artifact = backend.prepare(WithCumsum().eval(), x, "cumsum-test")
    session = backend.session(artifact, 1, "fp32")
    assert session.run(x).shape == (1, 4, 8, 8)
    report = session.report()
    assert report["fallback"] == {"CUMSUM": 1} and report["accelerated"]["CONV_2D"] == 1 and report["subgraphs"] == 2


def test_litert_delegation_walks_each_partition_back_to_its_inputs():
    # t0 → CONV → t1 → CUMSUM → t2 → MUL → t3 → ADD → t4, with XNNPACK taking CONV and (MUL, ADD)
    ops = [
        {"op_name": "CONV_2D", "inputs": [0, 10], "outputs": [1]},
        {"op_name": "CUMSUM", "inputs": [1, 11], "outputs": [2]},
        {"op_name": "MUL", "inputs": [2, 12], "outputs": [3]},
        {"op_name": "ADD", "inputs": [3, 13], "outputs": [4]},
        {"op_name": "DELEGATE", "inputs": [0, 10], "outputs": [1]},
        {"op_name": "DELEGATE", "inputs": [2, 12, 13], "outputs": [4]},
    ]
    report = B.litert_delegation(ops)
    assert report["accelerated"] == {"ADD": 1, "CONV_2D": 1, "MUL": 1}
    assert report["fallback"] == {"CUMSUM": 1} and report["subgraphs"] == 2


def test_cli_bench_exits_1_with_the_reason_when_a_measurement_fails(capsys, monkeypatch):
    monkeypatch.setitem(B.BACKENDS, "silent-bf16", fake.SilentBf16())
    code, out, err = run(capsys, monkeypatch, "bench", "irmb", "-B", "torch,silent-bf16", "--rounds", "1",
                         "--min-time", "0", "--min-runs", "3", "--warmup", "1", "--no-store", "-f", "json")
    assert code == 1
    rows = json.loads(out)["rows"]
    assert [r["status"] for r in rows] == ["ok", "parity-failed"] and "silent-bf16 ran bf16, not fp32" in rows[1]["error"]
    assert "parity-failed" in err


def test_worker_memory_is_the_workers_own():
    """The peak resident memory is the worker's, not inherited from a large parent (ru_maxrss survives exec)."""
    import psutil

    ballast = torch.ones(256, 2**20)  # 1 GiB, touched, in this process only
    parent_rss = psutil.Process().memory_info().rss / 2**20
    (rec,) = run_bench(BenchPlan(["irmb"], ["torch"], forms=["fused"], **FAST))
    assert rec.status == "ok" and ballast.sum() > 0
    assert 0 < rec.rss_base_mb <= rec.peak_rss_mb < parent_rss - 512


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--min-time", "inf"], "--min-time must be a finite number, got inf"),
        (["--min-time", "nan"], "--min-time"),  # refused by click's range check or by the plan
        (["--timeout", "inf"], "--timeout must be a finite number"),
        (["--tolerance", "inf"], "--tolerance must be a finite number"),
        (["--dtype", "fp32,,int8"], "dtype: empty item in 'fp32,,int8'"),
        (["--dtype", "int8,int8"], "dtype: 'int8' is listed twice in 'int8,int8'"),
        (["-B", "torch,torch"], "backend: 'torch' is listed twice in 'torch,torch'"),
        (["-B", "torch,"], "backend: empty item in 'torch,'"),
        (["--form", "fused,,reference"], "empty item in 'fused,,reference'"),
        (["--form", "fused,fused"], "'fused' is listed twice in 'fused,fused'"),
        (["-b", "1,2,1"], "batch: '1' is listed twice in '1,2,1'"),
        (["-t", "1,,2"], "threads: empty item in '1,,2'"),
        (["-t", "2, 2"], "threads: '2' is listed twice in '2, 2'"),
    ],
)
def test_cli_bench_refuses_non_finite_numbers_and_empty_or_repeated_items(capsys, monkeypatch, args, needle):
    code, _, err = run(capsys, monkeypatch, "bench", "irmb", *args, "--no-store")
    assert_user_error(code, err, needle)


def test_a_plan_refuses_repeated_items_and_non_finite_numbers():
    from emobench.errors import EmobenchError

    for plan, needle in [(BenchPlan(["irmb"], ["torch", "torch"]), "backend: 'torch' is listed twice"),
                         (BenchPlan(["irmb"], batches=[2, 2]), "batch: '2' is listed twice"),
                         (BenchPlan(["irmb"], dtype="fp32,"), "dtype: empty item"),
                         (BenchPlan(["irmb"], timeout=float("inf")), "--timeout must be a finite number")]:
        with pytest.raises(EmobenchError, match=needle):
            plan.validate()
