"""emobench.runtimes.vendor: the runtimes' own benchmark tools, run for real on a tiny model exported in the test
by the runtime's exporter, and their parsers on output captured from those tools.

Nothing here asserts a timing value beyond > 0 and finite: the figures are the machine's, not the code's."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math

import pytest
import torch
from torch import nn

from emobench.errors import EmobenchError
from emobench.runtimes import vendor
from emobench.runtimes.vendor import (
    VendorResult,
    benchmark_app_command,
    error_line,
    find_tool,
    litert_benchmark_command,
    parse_benchmark_app,
    parse_benchmark_app_counters,
    parse_litert_benchmark,
    parse_litert_op_profile,
    run_tool,
    run_vendor,
    tool_for,
)

SHAPE = (1, 3, 64, 64)


def _tiny() -> nn.Module:
    """Enough work (a 16-channel 3x3 convolution at 64x64) that litert-benchmark's 0.01 ms print is above 0."""
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()


def _needs(module: str, tool: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    if find_tool(tool) is None:
        pytest.skip(f"{tool} is not installed next to the interpreter or on PATH")


@pytest.fixture(scope="module")
def openvino_model(tmp_path_factory):
    _needs("openvino", "benchmark_app")
    import openvino as ov

    torch.manual_seed(0)
    x = torch.randn(SHAPE)
    path = tmp_path_factory.mktemp("ov") / "tiny.xml"
    ov.save_model(ov.convert_model(_tiny(), example_input=x, input=[SHAPE]), str(path), compress_to_fp16=False)
    return path


@pytest.fixture(scope="module")
def litert_model(tmp_path_factory):
    _needs("litert_torch", "litert-benchmark")
    if importlib.util.find_spec("ai_edge_litert") is None:
        pytest.skip("ai_edge_litert is not installed")
    import litert_torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("litert") / "tiny.tflite"
    litert_torch.convert(_tiny(), (torch.randn(SHAPE),)).export(str(path))
    return path


def _sane(result: VendorResult) -> None:
    assert result.statistic in ("median", "mean")
    assert math.isfinite(result.latency_ms) and result.latency_ms > 0
    assert result.command[0] == find_tool(result.tool)
    assert result.raw_tail.strip()
    assert "\n" not in result.tool


# ---- the real tools ------------------------------------------------------------------------------------------


def test_tool_names_and_lookup():
    assert tool_for("openvino") == "benchmark_app"
    assert tool_for("litert") == "litert-benchmark"
    for backend in ("onnxruntime", "executorch", "torch", "torch-compile", "cuda"):
        assert tool_for(backend) is None
    assert find_tool("emobench-no-such-tool") is None


def test_benchmark_app_runs_with_emobench_settings(openvino_model):
    result = run_vendor("openvino", openvino_model, threads=1, shape=SHAPE, dtype="fp32", seconds=1, runs=20)
    _sane(result)
    assert result.tool == "benchmark_app"
    assert result.statistic == "median"  # benchmark_app's default -latency_percentile 50
    assert result.runs >= 20
    settings = result.settings
    assert settings["threads"] == 1 and settings["streams"] == 1
    assert settings["precision"] == "f32" and settings["api"] == "sync" and settings["hint"] == "LATENCY"
    assert settings["inputs"]["input"]["precision"] == "f32"  # not benchmark_app's default u8 image input
    assert settings["inputs"]["input"]["shape"] == "[1,3,64,64]"
    assert result.version.startswith(importlib.metadata.version("openvino").split(".dev")[0])


def test_litert_benchmark_runs_with_emobench_settings(litert_model):
    result = run_vendor("litert", litert_model, threads=2, runs=10, warmup=2)
    _sane(result)
    assert result.tool == "litert-benchmark"
    assert result.statistic == "median"
    assert result.runs == 10
    assert result.settings["threads"] == 2  # the tool's default is 1: the flag took
    assert result.settings["warmup_runs"] == 2
    assert result.settings["xnnpack"] and result.settings["accelerators"] == ["CPU"]
    assert result.version == importlib.metadata.version("ai-edge-litert")


def test_benchmark_app_per_layer_counters(openvino_model):
    command = benchmark_app_command(openvino_model, threads=1, shape=SHAPE, seconds=None, runs=5, perf_counts=True,
                                    exe=find_tool("benchmark_app"))
    rows = parse_benchmark_app_counters(run_tool(command, timeout=120))
    executed = [r for r in rows if r["status"] == "EXECUTED"]
    assert any(r["layer_type"] == "Convolution" and r["exec_type"].endswith("_f32") for r in executed)
    assert all(r["real_ms"] >= 0 and math.isfinite(r["real_ms"]) for r in rows)


def test_failing_tools_say_why_in_one_line(tmp_path):
    junk = tmp_path / "junk"
    junk.write_text("not a model\n")
    cases = []
    if find_tool("benchmark_app"):
        cases.append(("openvino", junk.with_suffix(".xml"), "Unable to read the model"))
    if find_tool("litert-benchmark"):
        cases.append(("litert", junk.with_suffix(".tflite"), "Failed to load model"))
    if not cases:
        pytest.skip("neither benchmark_app nor litert-benchmark is installed")
    for backend, path, reason in cases:
        path.write_text("not a model\n")
        with pytest.raises(EmobenchError) as err:
            run_vendor(backend, path, threads=1, shape=SHAPE, seconds=1, runs=2, warmup=1, timeout=120)
        message = str(err.value)
        assert "\n" not in message and len(message) < 400
        assert f"{tool_for(backend)} failed (exit" in message and reason in message


def test_missing_tool_and_backend_without_tool(tmp_path, monkeypatch):
    model = tmp_path / "m.xml"
    model.write_text("<net/>")
    with pytest.raises(EmobenchError, match="onnxruntime has no vendor benchmark tool"):
        run_vendor("onnxruntime", model, threads=1)
    monkeypatch.setattr(vendor, "find_tool", lambda name: None)
    with pytest.raises(EmobenchError) as err:
        run_vendor("openvino", model, threads=1)
    assert "benchmark_app not found" in str(err.value) and "pip install openvino" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(EmobenchError, match="not found"):
        run_tool([str(tmp_path / "no-such-dir" / "benchmark_app"), "-h"])


def test_no_model_file_is_one_line(tmp_path):
    if find_tool("benchmark_app") is None:
        pytest.skip("benchmark_app is not installed")
    with pytest.raises(EmobenchError, match="no model file"):
        run_vendor("openvino", tmp_path / "absent.xml", threads=1)


# ---- the command lines ---------------------------------------------------------------------------------------


def test_command_lines_carry_emobench_settings():
    cmd = benchmark_app_command("m.xml", threads=3, shape=(1, 3, 224, 224), dtype="bf16", seconds=1.5, runs=20)
    flags = dict(zip(cmd[1::2], cmd[2::2]))
    assert flags["-m"] == "m.xml" and flags["-d"] == "CPU"
    assert flags["-hint"] == "none" and flags["-nstreams"] == "1" and flags["-nthreads"] == "3"
    assert flags["-infer_precision"] == "bf16" and flags["-api"] == "sync" and flags["-ip"] == "f32"
    assert flags["-shape"] == "[1,3,224,224]" and flags["-niter"] == "20" and flags["-t"] == "2"  # whole seconds
    int8 = benchmark_app_command("m.xml", threads=1, dtype="int8")
    assert int8[int8.index("-infer_precision") + 1] == "f32"  # quantized layers stay int8 whatever the hint
    assert litert_benchmark_command("m.tflite", threads=4, runs=30, warmup=3) == [
        "litert-benchmark", "--model=m.tflite", "--num_threads=4", "--warmup_runs=3", "--num_runs=30"]


# ---- parsers on captured output ------------------------------------------------------------------------------

#: benchmark_app of openvino 2026.4.1 (-hint none -nstreams 1 -nthreads 2 -infer_precision f32 -api sync -ip f32
#: -shape [1,3,32,32] -t 1 -pc) on a tiny Conv-ReLU-Pool-Linear model; an excerpt (lines kept verbatim, trailing
#: spaces dropped)
BENCHMARK_APP_US = """\
[Step 1/11] Parsing and validating input arguments
[ INFO ] Parsing input parameters
[Step 2/11] Loading OpenVINO Runtime
[ INFO ] OpenVINO:
[ INFO ] Build ................................. 2026.4.1-22982-e213a147257-releases/2026/4
[ INFO ]
[ INFO ] Device info:
[ INFO ] CPU
[ INFO ] Build ................................. 2026.4.1-22982-e213a147257-releases/2026/4
[ INFO ]
[ INFO ]
[Step 6/11] Configuring input of the model
[ INFO ] Model inputs:
[ INFO ]     input (node: input) : f32 / [N,C,H,W] / [1,3,32,32]
[ INFO ] Model outputs:
[ INFO ]     ***NO_NAME*** (node: __module.4/aten::linear/Add) : f32 / [...] / [1,4]
[Step 7/11] Loading the model to the device
[Step 8/11] Querying optimal runtime parameters
[ INFO ] Model:
[ INFO ]   NETWORK_NAME: Model0
[ INFO ]   OPTIMAL_NUMBER_OF_INFER_REQUESTS: 1
[ INFO ]   NUM_STREAMS: 1
[ INFO ]   INFERENCE_NUM_THREADS: 2
[ INFO ]   PERF_COUNT: YES
[ INFO ]   INFERENCE_PRECISION_HINT: <Type: 'float32'>
[ INFO ]   PERFORMANCE_HINT: LATENCY
[ INFO ]   EXECUTION_MODE_HINT: ExecutionMode.PERFORMANCE
[ INFO ]   PERFORMANCE_HINT_NUM_REQUESTS: 0
[ INFO ]   ENABLE_CPU_PINNING: True
[ INFO ]   KEY_CACHE_GROUP_SIZE: 0
[ INFO ]   VALUE_CACHE_GROUP_SIZE: 0
[ INFO ]   RUNTIME_REQUIREMENTS: meta=1.0;ov=2026.4.1;isa=Intel AVX-512 with Intel DL Boost and bfloat16 support
[Step 9/11] Creating infer requests and preparing input tensors
[ WARNING ] No input files were given for input 'input'!. This input will be filled with random values!
[ INFO ] Fill input 'input' with random values
[Step 10/11] Measuring performance (Start inference synchronously, limits: 1000 ms duration)
[ INFO ] Benchmarking in inference only mode (inputs filling are not included in measurement loop).
[ INFO ] First inference took 9.47 ms
[Step 11/11] Dumping statistics report
[ INFO ] Performance counts for 0-th infer request
input                Status.NOT_RUN       layerType: Parameter            execType: unknown_f32          realTime (ms): 0.000      cpuTime (ms): 0.000
input_abcd_acdb_...  Status.EXECUTED      layerType: Reorder              execType: jit_uni_f32          realTime (ms): 0.006      cpuTime (ms): 0.006
__module.0/aten:...  Status.EXECUTED      layerType: Convolution          execType: brgconv_avx512_f32   realTime (ms): 0.018      cpuTime (ms): 0.018
__module.1/aten:...  Status.NOT_RUN       layerType: Relu                 execType: undef                realTime (ms): 0.000      cpuTime (ms): 0.000
__module.2/aten:...  Status.EXECUTED      layerType: ReduceMean           execType: jit_avx512_f32       realTime (ms): 0.010      cpuTime (ms): 0.010
__module.2/aten:...  Status.NOT_RUN       layerType: Reorder              execType: reorder_f32          realTime (ms): 0.000      cpuTime (ms): 0.000
__module.3/aten:...  Status.NOT_RUN       layerType: Reshape              execType: unknown_f32          realTime (ms): 0.000      cpuTime (ms): 0.000
__module.4/aten:...  Status.NOT_RUN       layerType: FullyConnected       execType: gemm_mlas_f32        realTime (ms): 0.000      cpuTime (ms): 0.000
Result_160           Status.NOT_RUN       layerType: Result               execType: unknown_f32          realTime (ms): 0.000      cpuTime (ms): 0.000
Total time:     0.034 milliseconds
Total CPU time: 0.034 milliseconds

[ INFO ] Execution Devices:['CPU']
[ INFO ] Count:            15850 iterations
[ INFO ] Duration:         1000.99 ms
[ INFO ] Latency:
[ INFO ]    Median:        35.31 us
[ INFO ]    Average:       49.67 us
[ INFO ]    Min:           24.36 us
[ INFO ]    Max:           11719.84 us
[ INFO ] Throughput:   15834.36 FPS
"""

#: the end of a benchmark_app (openvino 2026.4.1) run on a larger model: latencies over 1 ms print in ms
BENCHMARK_APP_MS = """\
[ INFO ] Execution Devices:['CPU']
[ INFO ] Count:            20 iterations
[ INFO ] Duration:         230.41 ms
[ INFO ] Latency:
[ INFO ]    Median:        11.30 ms
[ INFO ]    Average:       11.36 ms
[ INFO ]    Min:           10.96 ms
[ INFO ]    Max:           11.80 ms
[ INFO ] Throughput:   86.80 FPS
"""

#: litert-benchmark of ai-edge-litert 2.3.0 (--num_threads=1 --warmup_runs=5 --num_runs=20); the runtime's
#: "INFO: [...]" / "WARNING: [...]" registry lines left out
LITERT_BENCHMARK = """\
2026-12-03 05:03:55 INFO benchmark_litert_model: Model:           tiny.tflite
2026-12-03 05:03:55 INFO benchmark_litert_model: Model size:      0.00 MB
2026-12-03 05:03:55 INFO benchmark_litert_model: Accelerators:    CPU
2026-12-03 05:03:55 INFO benchmark_litert_model: Num threads:     1
2026-12-03 05:03:55 INFO benchmark_litert_model: Warmup runs:     5
2026-12-03 05:03:55 INFO benchmark_litert_model: Benchmark runs:  20
2026-12-03 05:03:55 INFO benchmark_litert_model: Creating environment...
2026-12-03 05:03:55 INFO benchmark_litert_model: Environment created (4.8 ms)
2026-12-03 05:03:55 INFO benchmark_litert_model: Loading model...
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
2026-12-03 05:03:55 INFO benchmark_litert_model: Model loaded (6.9 ms)
2026-12-03 05:03:55 INFO benchmark_litert_model: Signatures:      1
2026-12-03 05:03:55 INFO benchmark_litert_model: Using signature: serving_default
2026-12-03 05:03:55 INFO benchmark_litert_model: Fully accelerated: True
2026-12-03 05:03:55 INFO benchmark_litert_model: Running 5 warmup iterations...
2026-12-03 05:03:55 INFO benchmark_litert_model: Running 20 benchmark iterations...

========================================
 BENCHMARK RESULTS
========================================
Model initialization:  6.91 ms
Warmup (first):        0.17 ms
Warmup (avg):          0.05 ms (5 runs)
Inference (avg):       0.02 ms (20 runs)
Inference (min):       0.02 ms
Inference (max):       0.02 ms
Inference (median):    0.02 ms
Inference (std):       0.00 ms
Inference (p5):        0.02 ms
Inference (p95):       0.02 ms
Throughput:            579.32 MB/s
Fully accelerated:     True
========================================
"""

#: TFLite's profile summary as libLiteRt.so of ai-edge-litert 2.3.0 returns it (LiteRtGetProfileSummary, runtime
#: option "enable_profiling = true", CPU accelerator, 20 runs) for a litert_torch model stem conv -> block(conv,
#: relu, +x) -> mean -> linear: XNNPACK operators broken out one row each. litert-benchmark has no profiling flag.
LITERT_PROFILE_XNNPACK = """\
===================================================================== Run Order ======================================================================
                                                 [node type]    [start]    [first]   [avg ms]        [%]     [cdf%]   [mem KB] [times called]   [Name]
                      Delegate/Transpose (ND, X32) Transpose      0.000      0.012      0.002     5.219%     5.219%      0.000             20   [Delegate]:0
                      Delegate/Convolution (NHWC, F32) IGEMM      0.000      0.019      0.011    30.465%    35.684%      0.000             20   [Delegate]:1
                      Delegate/Convolution (NHWC, F32) IGEMM      0.000      0.024      0.023    64.034%    99.718%      0.000             20   [Delegate]:2
                                           Delegate/Add (ND)      0.000      0.001      0.000     0.141%    99.859%      0.000             20   [Delegate]:3
                      Delegate/Transpose (ND, X32) Transpose      0.000      0.000      0.000     0.000%    99.859%      0.000             20   [Delegate]:4
                                  Delegate/Mean (ND) Reduce2      0.000      0.001      0.000     0.141%   100.000%      0.000             20   [Delegate]:5
                     Delegate/Fully Connected (NC, F32) GEMM      0.000      0.000      0.000     0.000%   100.000%      0.000             20   [Delegate]:6

============================================================== Top by Computation Time ===============================================================
                                                 [node type]    [start]    [first]   [avg ms]        [%]     [cdf%]   [mem KB] [times called]   [Name]
"""

#: the same model and runtime with the CPU option kernel_mode = "builtin" (TFLite's own kernels, no XNNPACK)
LITERT_PROFILE_BUILTIN = """\
===================================================================== Run Order ======================================================================
                                                 [node type]    [start]    [first]   [avg ms]        [%]     [cdf%]   [mem KB] [times called]   [Name]
                                                   TRANSPOSE      0.000      0.022      0.010     5.273%     5.273%      0.000             20   [Builtin]:0
                                                     CONV_2D      0.023      0.222      0.066    36.168%    41.441%      0.000             20   [Builtin]:1
                                                     CONV_2D      0.245      0.208      0.095    52.236%    93.678%      0.000             20   [Builtin]:2
                                                         ADD      0.454      0.011      0.003     1.436%    95.113%      0.000             20   [Builtin]:3
                                                   TRANSPOSE      0.465      0.006      0.005     2.871%    97.985%      0.000             20   [Builtin]:4
                                                        MEAN      0.472      0.017      0.003     1.436%    99.420%      0.000             20   [Builtin]:5
                                             FULLY_CONNECTED      0.490      0.009      0.001     0.580%   100.000%      0.000             20   [Builtin]:6

"""


def test_parse_benchmark_app_microseconds():
    parsed = parse_benchmark_app(BENCHMARK_APP_US)
    assert parsed["statistic"] == "median"
    assert parsed["latency_ms"] == pytest.approx(0.03531)
    assert parsed["mean_ms"] == pytest.approx(0.04967) and parsed["max_ms"] == pytest.approx(11.71984)
    assert parsed["runs"] == 15850 and parsed["duration_ms"] == pytest.approx(1000.99)
    assert parsed["first_inference_ms"] == pytest.approx(9.47)
    assert parsed["version"] == "2026.4.1-22982-e213a147257-releases/2026/4"
    settings = parsed["settings"]
    assert settings["threads"] == 2 and settings["streams"] == 1 and settings["precision"] == "f32"
    assert settings["hint"] == "LATENCY" and settings["api"] == "sync" and settings["devices"] == ["CPU"]
    assert settings["inputs"] == {"input": {"precision": "f32", "layout": "[N,C,H,W]", "shape": "[1,3,32,32]"}}
    assert settings["reported"]["ENABLE_CPU_PINNING"] == "True"


def test_parse_benchmark_app_milliseconds_and_mean_fallback():
    parsed = parse_benchmark_app(BENCHMARK_APP_MS)
    assert parsed["statistic"] == "median" and parsed["latency_ms"] == pytest.approx(11.30) and parsed["runs"] == 20
    no_median = parse_benchmark_app(BENCHMARK_APP_MS.replace("[ INFO ]    Median:        11.30 ms\n", ""))
    assert no_median["statistic"] == "mean" and no_median["latency_ms"] == pytest.approx(11.36)
    assert parse_benchmark_app("")["latency_ms"] is None


def test_parse_benchmark_app_counters():
    rows = parse_benchmark_app_counters(BENCHMARK_APP_US)
    assert len(rows) == 9
    conv = rows[2]
    assert conv == {"name": "__module.0/aten:...", "status": "EXECUTED", "layer_type": "Convolution",
                    "exec_type": "brgconv_avx512_f32", "real_ms": 0.018, "cpu_ms": 0.018, "truncated": True}
    assert rows[0]["name"] == "input" and not rows[0]["truncated"]


def test_parse_litert_benchmark():
    parsed = parse_litert_benchmark(LITERT_BENCHMARK)
    assert parsed["statistic"] == "median" and parsed["latency_ms"] == pytest.approx(0.02)
    assert parsed["runs"] == 20 and parsed["warmup_runs"] == 5 and parsed["init_ms"] == pytest.approx(6.91)
    assert parsed["settings"] == {"threads": 1, "warmup_runs": 5, "runs": 20, "signature": "serving_default",
                                  "accelerators": ["CPU"], "fully_accelerated": True, "xnnpack": True}
    no_median = parse_litert_benchmark(LITERT_BENCHMARK.replace("Inference (median):    0.02 ms\n", ""))
    assert no_median["statistic"] == "mean" and no_median["latency_ms"] == pytest.approx(0.02)


def test_parse_litert_op_profile_xnnpack_rows():
    rows = parse_litert_op_profile(LITERT_PROFILE_XNNPACK)
    assert [r["index"] for r in rows] == list(range(7))  # the "Top by Computation Time" table is not read
    assert rows[1] == {"node_type": "Delegate/Convolution (NHWC, F32) IGEMM", "start_ms": 0.0, "first_ms": 0.019,
                       "avg_ms": 0.011, "percent": 30.465, "cdf_percent": 35.684, "mem_kb": 0.0, "times_called": 20,
                       "name": "[Delegate]:1", "index": 1, "delegated": True}
    assert all(r["delegated"] for r in rows)
    assert rows[-1]["node_type"] == "Delegate/Fully Connected (NC, F32) GEMM"


def test_parse_litert_op_profile_builtin_rows():
    rows = parse_litert_op_profile(LITERT_PROFILE_BUILTIN)
    assert [r["node_type"] for r in rows] == ["TRANSPOSE", "CONV_2D", "CONV_2D", "ADD", "TRANSPOSE", "MEAN",
                                              "FULLY_CONNECTED"]
    assert rows[2]["name"] == "[Builtin]:2" and rows[2]["avg_ms"] == pytest.approx(0.095)
    assert not any(r["delegated"] for r in rows)


def test_parse_litert_op_profile_benchmark_model_layout():
    """benchmark_model prints the same summarizer table tab-separated after its section header, with an
    initialization table before it: the captured rows laid out that way."""
    def tabbed(table: str) -> str:
        lines = table.splitlines()
        out = [lines[0]]
        for line in lines[1:]:
            if not line.strip() or line.startswith("="):
                out.append(line)
                continue
            name_at = line.rfind("[")
            head, name = line[:name_at], line[name_at:]
            cells = head.rsplit(None, 7) if "[node type]" not in line else head.split("]")[:-1]
            cells = [c.strip() + ("]" if "[node type]" in line else "") for c in cells]
            out.append("\t" + "\t".join([*cells, name]))
        return "\n".join(out)

    init = "Profiling Info for Benchmark Initialization:\n" + tabbed(LITERT_PROFILE_BUILTIN)
    text = init + "\n\nOperator-wise Profiling Info for Regular Benchmark Runs:\n" + tabbed(LITERT_PROFILE_XNNPACK)
    assert parse_litert_op_profile(text) == parse_litert_op_profile(LITERT_PROFILE_XNNPACK)
    assert parse_litert_op_profile(tabbed(LITERT_PROFILE_BUILTIN)) == parse_litert_op_profile(LITERT_PROFILE_BUILTIN)
    assert parse_litert_op_profile("no profile here") == []


def test_error_line_picks_the_reason():
    traceback = """\
[ ERROR ] -nstreams, -nthreads and -pin options are fine tune options.
Traceback (most recent call last):
  File "main.py", line 60, in parse_and_check_command_line
    raise Exception("-nstreams, -nthreads and -pin options are fine tune options.")
Exception: -nstreams, -nthreads and -pin options are fine tune options.
"""
    assert error_line(traceback) == "Exception: -nstreams, -nthreads and -pin options are fine tune options."
    assert error_line("2026-12-03 05:03:57 ERROR benchmark_litert_model: Model file not found: x.tflite\n") == (
        "2026-12-03 05:03:57 ERROR benchmark_litert_model: Model file not found: x.tflite")
    assert error_line("") == "(no output)"
