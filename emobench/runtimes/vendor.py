"""Runtimes' own benchmark tools, run on the artifact emobench exported, so a cross-check can store the vendor's
figure beside emobench's median.

What the installed packages ship (checked on openvino 2026.4, ai-edge-litert 2.3.0, onnxruntime 1.32,
executorch 1.4.1):

* OpenVINO: ``benchmark_app`` (``openvino.tools.benchmark.main``), prints a median under "Latency:".
* LiteRT: ``litert-benchmark`` (``ai_edge_litert.tools.benchmark_litert_model``), a *Python* tool on the
  CompiledModel API (CPU accelerator = XNNPACK), not TFLite's C++ ``benchmark_model``: it takes only
  ``--num_threads``, ``--warmup_runs``, ``--num_runs`` (no ``--use_xnnpack``, no minimum time, no
  ``--enable_op_profiling``) and prints its statistics in ms with two decimals.
* onnxruntime: only ``onnxruntime_test`` (mean of a loop, no thread setting, all providers), so no tool here.
* ExecuTorch: no runner binary in the wheel (``executor_runner`` is built from source), so no tool here.

:func:`parse_litert_op_profile` reads the "Run Order" table of TFLite's profile summarizer, which
``benchmark_model --enable_op_profiling=true`` prints and libLiteRt's ``LiteRtGetProfileSummary`` returns.
"""

from __future__ import annotations

import importlib.metadata
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emobench.errors import EmobenchError

#: backend name → the executable of its runtime's own benchmark tool
TOOLS = {"openvino": "benchmark_app", "litert": "litert-benchmark"}

#: tool → the distribution that ships it (install hint and version)
_DISTRIBUTIONS = {"benchmark_app": "openvino", "litert-benchmark": "ai-edge-litert"}

#: emobench dtype → benchmark_app ``-infer_precision`` (int8: quantized layers stay int8, the rest f32, as
#: emobench's OpenVINO session asks)
_OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}

_OV_TYPES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16", "f32": "f32", "bf16": "bf16", "f16": "f16"}
_UNITS_MS = {"ms": 1.0, "us": 1e-3, "s": 1e3}


@dataclass(frozen=True)
class VendorResult:
    """One run of a vendor tool: its figure, which statistic it is, and the settings the tool says it used."""

    tool: str
    command: list[str]
    statistic: str  # 'median' | 'mean'
    latency_ms: float
    runs: int
    settings: dict
    version: str | None
    raw_tail: str


def tool_for(backend: str) -> str | None:
    """The executable name of ``backend``'s own benchmark tool, or None where its package ships none."""
    return TOOLS.get(backend)


def find_tool(name: str) -> str | None:
    """The tool's path: next to ``sys.executable`` first (the venv's bin, where pip put it, even when the venv
    is not activated), then PATH."""
    here = Path(sys.executable).parent
    for candidate in (here / name, here / f"{name}.exe"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which(name)


def benchmark_app_command(model: str | Path, *, threads: int, shape: Sequence[int] | None = None,
                          dtype: str = "fp32", seconds: float | None = 1.0, runs: int | None = 20,
                          perf_counts: bool = False, exe: str = "benchmark_app") -> list[str]:
    """benchmark_app with emobench's OpenVINO settings: one stream, ``threads`` threads, sync API, f32 input.

    ``-hint none`` because benchmark_app refuses ``-nstreams``/``-nthreads`` beside a hint (a UI rule); the
    CPU plugin still reports PERFORMANCE_HINT LATENCY. ``-infer_precision f32``: the CPU plugin computes bf16
    by default on AVX512_BF16/AMX CPUs. ``-ip f32``: otherwise benchmark_app feeds 4-D inputs as u8 and the
    model gains a conversion. ``-t`` and ``-niter`` together are both minimums (the loop runs until both are
    met), like emobench's min_time and min_runs; ``-t`` takes whole seconds, so it is rounded up.
    """
    command = [exe, "-m", str(model), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nthreads", str(threads),
               "-infer_precision", _OPENVINO_PRECISION.get(dtype, "f32"), "-api", "sync", "-ip", "f32"]
    if shape is not None:
        command += ["-shape", "[" + ",".join(str(int(d)) for d in shape) + "]"]
    if runs:
        command += ["-niter", str(int(runs))]
    if seconds:
        command += ["-t", str(max(1, math.ceil(seconds)))]
    if perf_counts:
        command += ["-pc"]
    return command


def litert_benchmark_command(model: str | Path, *, threads: int, runs: int = 50, warmup: int = 5,
                             exe: str = "litert-benchmark") -> list[str]:
    """litert-benchmark on the CPU accelerator (XNNPACK, the only CPU path it has) with ``threads`` threads.

    It runs exactly ``runs`` timed calls after ``warmup`` untimed ones; it has no minimum time."""
    return [exe, f"--model={model}", f"--num_threads={threads}", f"--warmup_runs={warmup}", f"--num_runs={runs}"]


def run_tool(command: list[str], timeout: float = 300.0) -> str:
    """Run a vendor tool; its stdout and stderr as one text. A missing tool, a timeout or a non-zero exit is
    one :class:`EmobenchError` line carrying the tool's own last error line."""
    name = Path(command[0]).name
    try:
        done = subprocess.run(command, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise EmobenchError(f"{name} not found ({_install_hint(name)})") from None
    except OSError as err:  # not executable, a broken interpreter line, ...
        raise EmobenchError(f"{name} could not be started: {err.strerror or err}") from None
    except subprocess.TimeoutExpired:
        raise EmobenchError(f"{name} did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        raise EmobenchError(f"{name} failed (exit {done.returncode}): {error_line(done.stdout)}")
    return done.stdout


def run_vendor(backend: str, model: str | Path, *, threads: int, shape: Sequence[int] | None = None,
               dtype: str = "fp32", seconds: float | None = 1.0, runs: int = 20, warmup: int = 5,
               timeout: float = 300.0) -> VendorResult:
    """Run ``backend``'s own benchmark tool on the exported ``model`` and parse what it printed.

    ``seconds`` is used by benchmark_app only (litert-benchmark has no time floor: it runs ``runs`` calls);
    ``warmup`` by litert-benchmark only (benchmark_app always runs one first inference)."""
    name = tool_for(backend)
    if name is None:
        raise EmobenchError(f"{backend} has no vendor benchmark tool (tools exist for: {', '.join(TOOLS)})")
    exe = find_tool(name)
    if exe is None:
        raise EmobenchError(f"{name} not found next to {sys.executable} or on PATH ({_install_hint(name)})")
    if not Path(model).is_file():
        raise EmobenchError(f"{name}: no model file at {model}")
    if name == "benchmark_app":
        command = benchmark_app_command(model, threads=threads, shape=shape, dtype=dtype, seconds=seconds,
                                        runs=runs, exe=exe)
        parse = parse_benchmark_app
    else:
        command = litert_benchmark_command(model, threads=threads, runs=runs, warmup=warmup, exe=exe)
        parse = parse_litert_benchmark
    text = run_tool(command, timeout)
    parsed = parse(text)
    if parsed["latency_ms"] is None or parsed["runs"] is None:
        raise EmobenchError(f"{name} printed no latency: {error_line(text)}")
    version = parsed.get("version") or _dist_version(exe, _DISTRIBUTIONS[name])
    tail = "\n".join(text.rstrip().splitlines()[-40:])
    return VendorResult(name, command, parsed["statistic"], parsed["latency_ms"], parsed["runs"],
                        parsed["settings"], version, tail)


# ---- parsers: pure functions of the printed text -------------------------------------------------------------

_INFO = re.compile(r"^\[ INFO \] ?", re.MULTILINE)


def parse_benchmark_app(text: str) -> dict:
    """What benchmark_app printed: the median (its default ``-latency_percentile 50``; "Average" if no
    median), count, mean/min/max, throughput, and the settings of "Step 8" (the compiled model's properties).

    Latencies are printed in us when the mean is under 1 ms, else ms; all are returned in ms."""
    body = _INFO.sub("", text)
    stats: dict[str, float] = {}
    latency = re.search(r"^Latency:\s*$", body, re.MULTILINE)
    if latency:
        rows = r"^\s+(Median|Average|Min|Max):\s+([-\d.]+)\s*(ms|us|s)\b"
        for m in re.finditer(rows, body[latency.end():], re.MULTILINE):
            stats.setdefault(m[1].lower(), float(m[2]) * _UNITS_MS[m[3]])
    statistic = "median" if "median" in stats else "mean"
    count = re.search(r"^Count:\s+(\d+) iterations", body, re.MULTILINE)
    reported = _step_block(body, 8)
    settings: dict = {}
    if "INFERENCE_NUM_THREADS" in reported:
        settings["threads"] = _int(reported["INFERENCE_NUM_THREADS"])
    if "NUM_STREAMS" in reported:
        settings["streams"] = _int(reported["NUM_STREAMS"])
    if "INFERENCE_PRECISION_HINT" in reported:
        raw = reported["INFERENCE_PRECISION_HINT"]
        name = re.search(r"'([^']+)'", raw)
        settings["precision"] = _OV_TYPES.get(name[1] if name else raw, name[1] if name else raw)
    if "PERFORMANCE_HINT" in reported:
        settings["hint"] = reported["PERFORMANCE_HINT"]
    mode = re.search(r"Start inference (synchronously|asynchronously)", body)
    if mode:
        settings["api"] = "sync" if mode[1] == "synchronously" else "async"
    inputs = _ov_inputs(body)
    if inputs:
        settings["inputs"] = inputs
    devices = re.search(r"^Execution Devices:\s*\[(.*)\]", body, re.MULTILINE)
    if devices:
        settings["devices"] = [d.strip(" '\"") for d in devices[1].split(",") if d.strip()]
    settings["reported"] = reported
    version = re.search(r"^Build \.+ (\S+)", body, re.MULTILINE)
    first = re.search(r"^First inference took ([\d.]+) ms", body, re.MULTILINE)
    duration = re.search(r"^Duration:\s+([\d.]+) ms", body, re.MULTILINE)
    throughput = re.search(r"^Throughput:\s+([\d.]+) FPS", body, re.MULTILINE)
    return {
        "statistic": statistic, "latency_ms": stats.get("median" if statistic == "median" else "average"),
        "mean_ms": stats.get("average"), "min_ms": stats.get("min"), "max_ms": stats.get("max"),
        "runs": int(count[1]) if count else None,
        "duration_ms": float(duration[1]) if duration else None,
        "throughput_fps": float(throughput[1]) if throughput else None,
        "first_inference_ms": float(first[1]) if first else None,
        "settings": settings, "version": version[1] if version else None,
    }


def _step_block(body: str, step: int) -> dict[str, str]:
    """``KEY: value`` lines of benchmark_app's "[Step N/11]" section (the model's compiled properties)."""
    m = re.search(rf"^\[Step {step}/\d+\].*?$(.*?)(?=^\[Step |\Z)", body, re.MULTILINE | re.DOTALL)
    if not m:
        return {}
    return {k: v.strip() for k, v in re.findall(r"^\s+([A-Z][A-Z0-9_]+): (.*)$", m[1], re.MULTILINE)}


def _ov_inputs(body: str) -> dict[str, dict]:
    """The inputs as benchmark_app configured them (its "Step 6"): precision, layout, shape."""
    m = re.search(r"^\[Step 6/\d+\].*?^Model inputs:\s*$(.*?)^Model outputs:", body, re.MULTILINE | re.DOTALL)
    if not m:
        return {}
    rows = re.findall(r"^\s+(\S+) \(node: [^)]*\) : (\S+) / (\S+) / (\S+)\s*$", m[1], re.MULTILINE)
    return {name: {"precision": p, "layout": layout, "shape": shape} for name, p, layout, shape in rows}


_PC_ROW = re.compile(
    r"^(?P<name>\S.*?)\s+(?P<status>Status\.\w+)\s+layerType:\s+(?P<type>\S.*?)\s+execType:\s+(?P<exec>\S+)\s+"
    r"realTime \(ms\):\s+(?P<real>[\d.]+)\s+cpuTime \(ms\):\s+(?P<cpu>[\d.]+)(?:\s+proportion:\s+(?P<prop>\S+))?",
    re.MULTILINE)


def parse_benchmark_app_counters(text: str) -> list[dict]:
    """The per-layer rows benchmark_app prints with ``-pc`` (first infer request): name, status, layer type,
    exec type (kernel and precision, e.g. ``brgconv_avx512_f32``), real/cpu ms.

    benchmark_app cuts names and types at 16 characters plus "..." on the console (``truncated``); the full
    names are in ``-report_type average_counters -report_folder DIR -json_stats`` (DIR must exist)."""
    rows = []
    for block in re.split(r"Performance counts(?: sorted)? for \d+-th infer request", text)[1:2]:
        for m in _PC_ROW.finditer(block):
            rows.append({"name": m["name"], "status": m["status"].removeprefix("Status."),
                         "layer_type": m["type"], "exec_type": m["exec"], "real_ms": float(m["real"]),
                         "cpu_ms": float(m["cpu"]), "truncated": m["name"].endswith("...")})
    return rows


def parse_litert_benchmark(text: str) -> dict:
    """What litert-benchmark printed: its "Inference (median)" (mean if absent), run counts, and the settings
    it logged (threads, accelerators, XNNPACK, full delegation).

    It prints ms with two decimals (``resolution_ms``): a model faster than 0.005 ms reads as 0."""
    stats = {m[1]: float(m[2]) for m in re.finditer(r"^Inference \((\w+)\):\s+([-\d.]+) ms", text, re.MULTILINE)}
    statistic = "median" if "median" in stats else "mean"
    runs = re.search(r"^Inference \(avg\):\s+[-\d.]+ ms \((\d+) runs\)", text, re.MULTILINE)
    warm = re.search(r"^Warmup \(avg\):\s+([-\d.]+) ms \((\d+) runs\)", text, re.MULTILINE)
    first = re.search(r"^Warmup \(first\):\s+([-\d.]+) ms", text, re.MULTILINE)
    init = re.search(r"^Model initialization:\s+([-\d.]+) ms", text, re.MULTILINE)

    def logged(label: str) -> str | None:
        m = re.search(rf"{label}:\s+(.+?)\s*$", text, re.MULTILINE)
        return m[1] if m else None

    settings: dict = {}
    for key, label, cast in (("threads", "Num threads", int), ("warmup_runs", "Warmup runs", int),
                             ("runs", "Benchmark runs", int), ("signature", "Using signature", str)):
        value = logged(label)
        if value is not None:
            settings[key] = cast(value) if cast is str or value.isdigit() else value
    accelerators = logged("Accelerators")
    if accelerators:
        settings["accelerators"] = [a.strip() for a in accelerators.split("|")]
    fully = re.search(r"^Fully accelerated:\s+(True|False)", text, re.MULTILINE)
    if fully:
        settings["fully_accelerated"] = fully[1] == "True"
    settings["xnnpack"] = "XNNPACK delegate for CPU" in text
    return {
        "statistic": statistic, "latency_ms": stats.get("median" if statistic == "median" else "avg"),
        "mean_ms": stats.get("avg"), "min_ms": stats.get("min"), "max_ms": stats.get("max"),
        "std_ms": stats.get("std"), "p5_ms": stats.get("p5"), "p95_ms": stats.get("p95"),
        "runs": int(runs[1]) if runs else None,
        "warmup_runs": int(warm[2]) if warm else None, "warmup_mean_ms": float(warm[1]) if warm else None,
        "warmup_first_ms": float(first[1]) if first else None, "init_ms": float(init[1]) if init else None,
        "resolution_ms": 0.01, "settings": settings, "version": None,
    }


_PROFILE_COLUMNS = {"node type": "node_type", "start": "start_ms", "first": "first_ms", "avg ms": "avg_ms",
                    "%": "percent", "cdf%": "cdf_percent", "mem KB": "mem_kb", "times called": "times_called",
                    "Name": "name"}


def parse_litert_op_profile(text: str) -> list[dict]:
    """Per-node rows of TFLite's profile summary "Run Order" table, in execution order.

    From ``benchmark_model --enable_op_profiling=true`` output the table after "Operator-wise Profiling Info
    for Regular Benchmark Runs" is read (not the initialization one); from a bare summary (libLiteRt's
    ``LiteRtGetProfileSummary``) the first. Both layouts are read: tab-separated (benchmark_model) and
    space-aligned (libLiteRt 2.3). Each row: node_type, name, index (the ``:N`` of the name), start_ms,
    first_ms, avg_ms, percent, cdf_percent, mem_kb, times_called (those the header has), delegated.

    XNNPACK rows are per operator, typed ``Delegate/<XNNPACK operator>`` (e.g. ``Delegate/Convolution (NHWC,
    F32) IGEMM``) and named ``[Delegate]:N``; built-in kernels are typed by TFLite op (``CONV_2D``) and named
    ``[Builtin]:N`` by libLiteRt 2.3, by output tensor (``[name]:N``) by benchmark_model."""
    start = text.find("Operator-wise Profiling Info for Regular Benchmark Runs")
    lines = text[max(start, 0):].splitlines()
    try:
        at = next(i for i, line in enumerate(lines) if "Run Order" in line)
        header = lines[at + 1]
    except (StopIteration, IndexError):
        return []
    columns = re.findall(r"\[([^\]]+)\]", header)
    if not columns or columns[0].lower() != "node type" or columns[-1] != "Name":
        return []
    keys = [_PROFILE_COLUMNS.get(c, re.sub(r"\W+", "_", c.strip().lower())) for c in columns]
    name_at = header.rfind("[Name]")
    rows = []
    for line in lines[at + 2:]:
        if not line.strip() or line.lstrip().startswith("="):
            break
        if "\t" in line:
            fields = [f.strip() for f in line.split("\t")]
            fields = fields[1:] if fields and fields[0] == "" and len(fields) == len(keys) + 1 else fields
        else:  # right-aligned numbers under their headers, the name starting under "[Name]"
            head, name = line[:name_at], line[name_at:].strip()
            parts = head.rsplit(None, len(keys) - 2)
            fields = [parts[0].strip(), *parts[1:], name]
        if len(fields) != len(keys):
            continue
        row: dict = {}
        for key, value in zip(keys, fields):
            if key in ("node_type", "name"):
                row[key] = value
            elif key == "times_called":
                row[key] = int(float(value))
            else:
                row[key] = float(value.rstrip("%"))
        index = re.search(r":(\d+)$", row["name"])
        row["index"] = int(index[1]) if index else None
        row["delegated"] = row["node_type"].startswith("Delegate/") or row["name"].startswith("[Delegate]")
        rows.append(row)
    return rows


# ---- helpers --------------------------------------------------------------------------------------------------

_EXCEPTION = re.compile(r"^((?:[A-Za-z_][\w.]*)?(?:Error|Exception|Exit))(?::\s*(.*))?$")
_OV_LOCATION = re.compile(r"Exception from src/\S+:\d+:\s*")
_LOG_LINE = re.compile(r"^(INFO|WARNING|ERROR|DEBUG|VERBOSE):|^[IWEF]\d{4} |^\d{4}-\d\d-\d\d |^\[ ?[A-Z]+ ?\]")


def error_line(text: str) -> str:
    """The one line that says why a tool failed: its final Python exception with the message lines after it
    (OpenVINO's "Exception from src/...:N:" location prefixes dropped), else its last ERROR line, else its
    last line; at most 300 characters."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    errors = [re.sub(r"\s+", " ", line.strip()) for line in lines if re.search(r"\bERROR\b", line)]
    for i in range(len(lines) - 1, -1, -1):
        m = _EXCEPTION.match(lines[i])
        if m:
            rest = []
            for line in lines[i + 1:]:
                if _LOG_LINE.match(line):  # the runtime's shutdown chatter after the traceback
                    break
                rest.append(line.strip())
            message = re.sub(r"\s+", " ", _OV_LOCATION.sub("", " ".join([m[2] or "", *rest]))).strip()
            runtime = [e for e in errors if e.startswith("ERROR:") and e.removeprefix("ERROR:").strip() not in message]
            if runtime:  # the runtime's own reason (LiteRT: "ERROR: Model provided has model identifier ...")
                message = f"{message} ({runtime[-1]})"
            return f"{m[1]}: {message}"[:300] if message else m[1]
    if errors:
        return errors[-1][:300]
    return lines[-1].strip()[:300] if lines else "(no output)"


def _install_hint(name: str) -> str:
    return f"pip install {_DISTRIBUTIONS.get(name, name)}"


def _dist_version(exe: str, distribution: str) -> str | None:
    """The distribution's version when the tool is this interpreter's (same bin folder), else None: a tool
    found elsewhere on PATH may belong to another installation."""
    if Path(exe).parent != Path(sys.executable).parent:
        return None
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _int(value: str) -> int | str:
    return int(value) if value.strip().lstrip("-").isdigit() else value
