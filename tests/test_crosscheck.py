"""``bench --crosscheck``: the runtime's own tool on the measured artifact, per round, beside emobench's median.
The agreement rule on hand-made figures; the real tools through bench (no timing asserted beyond finiteness)."""

from __future__ import annotations

import json
import math

import pytest

from emobench.runs.crosscheck import AGREEMENT, available, summarise
from emobench.runtimes.backends import BACKENDS
from emobench.runtimes.vendor import find_tool
from tests.test_cli import run


def vendor_run(ms: float, **settings) -> dict:
    return {"tool": "benchmark_app", "version": "2026.4", "command": ["benchmark_app"], "statistic": "median",
            "latency_ms": ms, "runs": 20, "settings": {"threads": 2, "precision": "f32", **settings}}


def test_agreement_uses_the_larger_of_the_tolerance_and_the_rounds_spread():
    close = summarise([vendor_run(1.04), vendor_run(1.06)], 1.0, 0.02, threads=2, dtype="fp32", warmup=10)
    assert close["tool_median_ms"] == pytest.approx(1.05) and close["ratio"] == pytest.approx(1.05)
    assert close["agree"] and close["allowed"] == AGREEMENT and "differences" not in close
    noisy = summarise([vendor_run(1.2), vendor_run(1.3)], 1.0, 0.3, threads=2, dtype="fp32", warmup=10)
    assert noisy["agree"] and noisy["allowed"] == pytest.approx(0.3)  # emobench's own rounds varied by 30 %


def test_a_disagreement_says_which_settings_differed():
    far = summarise([vendor_run(1.5, threads=4, precision="bf16")], 1.0, 0.01, threads=2, dtype="fp32", warmup=10)
    assert not far["agree"] and far["ratio"] == pytest.approx(1.5)
    said = " | ".join(far["differences"])
    assert "threads: the tool ran 4, emobench 2" in said and "precision: the tool ran bf16" in said
    assert "warm-up: benchmark_app runs 1 untimed inference, emobench 10" in said


def test_failed_tool_runs_are_kept_not_averaged():
    out = summarise([{"error": "benchmark_app failed (exit 1): boom"}, vendor_run(1.0)], 1.0, 0.0, threads=2,
                    dtype="fp32", warmup=10)
    assert out["rounds"] == 1 and out["errors"] == ["benchmark_app failed (exit 1): boom"]
    assert summarise([{"error": "x"}], 1.0, 0.0, threads=2, dtype="fp32", warmup=10) == {"error": "x"}


def test_backends_without_a_tool():
    assert available("openvino") is None and available("litert") is None
    assert "onnxruntime ships no benchmark tool" in available("onnxruntime")


@pytest.mark.parametrize("backend, tool", [("openvino", "benchmark_app"), ("litert", "litert-benchmark")])
def test_bench_crosscheck_runs_the_tool_on_the_measured_artifact(backend, tool, capsys, monkeypatch, tmp_path):
    if BACKENDS[backend].unavailable() or find_tool(tool) is None:
        pytest.skip(f"{backend} or {tool} is not installed")
    code, out, err = run(capsys, monkeypatch, "bench", "irmb", "-B", f"{backend},torch", "--crosscheck", "--rounds", "2",
                         "--min-time", "0.05", "--min-runs", "5", "--warmup", "2", "-t", "1", "--no-store",
                         "--format", "json")
    assert code == 0, err
    rows = {r["backend"]: r for r in json.loads(out)["rows"]}
    check = rows[backend]["crosscheck"]
    assert check["tool"] == tool and check["rounds"] == 2 and len(check["tool_ms"]) == 2
    assert all(math.isfinite(v) and v > 0 for v in check["tool_ms"])
    assert check["emobench_median_ms"] == rows[backend]["median_ms"]  # the same run's median
    assert check["ratio"] == pytest.approx(check["tool_median_ms"] / rows[backend]["median_ms"])
    assert check["settings"]["threads"] == 1  # what the tool says it ran
    assert "ships no benchmark tool" in rows["torch"]["crosscheck"]["error"]
    code, out, err = run(capsys, monkeypatch, "bench", "irmb", "-B", backend, "--crosscheck", "--rounds", "1",
                         "--min-time", "0.05", "--min-runs", "5", "--warmup", "1", "-t", "1", "--no-store")
    assert code == 0 and tool in out and "ratio" in out
