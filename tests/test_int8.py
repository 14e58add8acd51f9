"""``--dtype int8``: each runtime's static quantization, calibrated; parity as top-1 agreement and logit cosine
against eager fp32 torch; latency and size beside the fp32 record; what stayed in float."""

from __future__ import annotations


import pytest
import torch
from digits import shared_digits
from test_cli import assert_user_error, run
from test_eval import eval_json

from emobench.results.record import records_table
from emobench.runs.bench import BenchPlan, run_bench
from emobench.measure.images import RANDOM_CALIBRATION
from emobench.runtimes.parity import MIN_LOGIT_COSINE, MIN_TOP1_AGREEMENT
from emobench.runtimes.pt2e import pt2e_precisions

FAST = dict(rounds=1, warmup=0, min_runs=1, min_time=0.0, threads=[1])


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    return shared_digits(tmp_path_factory)


def test_emo_tiny_int8_on_xnnpack_and_onnxruntime_agrees_with_fp32_and_is_smaller():
    # fp32 and int8 in one interleaved sweep: int8 / fp32 is a ratio from one run
    records = records_table(run_bench(BenchPlan(models=["emo_tiny"], backends=["executorch", "onnxruntime", "torch"],
                                                dtype="fp32,int8", **FAST)))
    assert [(r.dtype, r.backend) for r in records.itertuples()] == [
        (d, b) for d in ("fp32", "int8") for b in ("executorch", "onnxruntime", "torch")]  # the plan's order
    fp32 = records[records["dtype"] == "fp32"].set_index("backend")
    table = records[records["dtype"] == "int8"].set_index("backend")
    assert (fp32["status"] == "ok").all() and fp32["ratio_to_fp32"].isna().all()
    assert table.loc["torch", "status"] == "skipped"  # eager torch has no int8 path: said, not faked
    for backend in ("executorch", "onnxruntime"):
        r = table.loc[backend]
        assert r["status"] == "ok", r["error"]
        assert r["precision"] == "int8" and r["calibration"] == f"random ({RANDOM_CALIBRATION} inputs)"
        assert r["image_source"] == "random inputs" and r["images"] == RANDOM_CALIBRATION
        assert r["top1_agreement"] >= MIN_TOP1_AGREEMENT and MIN_LOGIT_COSINE <= r["logit_cosine"] <= 1 + 1e-6
        assert r["explain"]["precisions"]["int8"] > 0 and isinstance(r["explain"]["float"], dict)
    ort, ort_fp32 = table.loc["onnxruntime"], fp32.loc["onnxruntime"]
    assert ort["size_ratio_to_fp32"] == pytest.approx(ort["artifact_bytes"] / ort_fp32["artifact_bytes"])
    assert ort["size_ratio_to_fp32"] < 1  # int8 weights take a byte where fp32 takes four
    assert ort["ratio_to_fp32"] == pytest.approx(ort["median_ms"] / ort_fp32["median_ms"])
    et = table.loc["executorch"]
    assert et["ratio_to_fp32"] == pytest.approx(et["median_ms"] / fp32.loc["executorch", "median_ms"])


def test_pt2e_report_says_which_operators_stayed_float():
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)

    from emobench.runtimes.pt2e import _pt2e

    # conv → relu → linear are the XNNPACK quantizer's int8 patterns; a softmax on the logits is not annotated
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(288, 4),
                                torch.nn.Softmax(-1)).eval()
    x = torch.randn(1, 3, 8, 8)
    calibration = torch.randn(4, 3, 8, 8).numpy()
    converted = _pt2e(model, x, XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True)), calibration)
    assert pt2e_precisions(converted) == {"int8": {"conv2d": 1, "linear": 1, "relu": 1}, "float": {"softmax": 1}}


def test_eval_int8_calibrated_on_images_and_thresholds(capsys, monkeypatch, digits):
    args = ("--images", str(digits.images), "-B", "onnxruntime", "--dtype", "int8", "--calibration", str(digits.images),
            "--calibration-size", "64", "-b", "16", "--limit", "400")
    code, data, err = eval_json(capsys, monkeypatch, digits, *[a if a != "int8" else "fp32,int8" for a in args])
    assert code == 0, err
    fp32, r = data["rows"]  # both dtypes scored in one run, on the same images
    assert (fp32["dtype"], fp32["calibration"], fp32["images"]) == ("fp32", None, r["images"])
    assert r["dtype"] == "int8" and r["calibration"] == f"{digits.images} (64 images)"
    assert r["top1_agreement"] >= MIN_TOP1_AGREEMENT and r["top1"] <= r["top5"]
    # thresholds no int8 model meets: parity-failed, exit 1, the reason named
    code, data, err = eval_json(capsys, monkeypatch, digits, *args, "--min-agreement", "1", "--min-cosine", "1")
    assert code == 1 and data["rows"][0]["status"] == "parity-failed" and "logit cosine" in err


def test_int8_bad_options_are_one_line(capsys, monkeypatch, tmp_path):
    code, _, err = run(capsys, monkeypatch, "bench", "emo_tiny", "-B", "onnxruntime", "--calibration", str(tmp_path), "--no-store")
    assert_user_error(code, err, "--dtype int8")
    code, _, err = run(capsys, monkeypatch, "bench", "emo_tiny", "-B", "onnxruntime", "--dtype", "int8", "--tolerance", "0.1", "--no-store")
    assert_user_error(code, err, "agreement")
    code, _, err = run(capsys, monkeypatch, "bench", "emo_tiny", "-B", "onnxruntime", "--dtype", "fp32,int7", "--no-store")
    assert_user_error(code, err, "int7")
    code, _, err = run(capsys, monkeypatch, "bench", "emo_tiny", "-B", "onnxruntime", "--dtype", "int8", "--calibration",
                       str(tmp_path / "none"), "--no-store")
    assert_user_error(code, err, "not found")
