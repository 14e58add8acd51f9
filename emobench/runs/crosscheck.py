"""``emobench bench --crosscheck``: the runtime's own benchmark tool (OpenVINO's ``benchmark_app``, LiteRT's
``litert-benchmark``) run on the very artifact emobench measured, with the same threads and precision, once per
round right after emobench's own worker, so both figures come from the same stretch of the same run. The
record keeps the tool's figures beside emobench's median and their ratio; a disagreement beyond the noise is
said with the settings in which the two differ, never averaged away."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from pathlib import Path

from emobench.errors import first_line
from emobench.measure.timing import relative_range
from emobench.runtimes.vendor import run_vendor, tool_for

#: the two medians agree when their ratio is within this of 1, or within the rounds' own spread if larger
AGREEMENT = 0.10


def available(backend: str) -> str | None:
    """None when ``backend``'s package ships a benchmark tool emobench runs, else why not."""
    return None if tool_for(backend) else f"{backend} ships no benchmark tool emobench runs (tools: benchmark_app for " \
                                          "openvino, litert-benchmark for litert)"


def run_round(backend: str, artifact: Path, *, threads: int, shape, dtype: str, min_time: float, min_runs: int,
              warmup: int, timeout: float) -> dict:
    """One run of the vendor tool on ``artifact``: its parsed result, or ``error``."""
    try:
        result = run_vendor(backend, artifact, threads=threads, shape=shape, dtype=dtype, seconds=min_time,
                            runs=min_runs, warmup=warmup, timeout=timeout)
    except Exception as err:  # noqa: BLE001 - a tool that fails is said in the record, the measurement stands
        return {"error": first_line(err)}
    out = asdict(result)
    out.pop("raw_tail")
    return out


def _differences(runs: list[dict], threads: int, dtype: str, warmup: int) -> list[str]:
    """The settings in which the tool's runs differed from emobench's measurement."""
    last = runs[-1]
    settings, tool = last.get("settings") or {}, last["tool"]
    said = []
    if settings.get("threads") not in (None, threads):
        said.append(f"threads: the tool ran {settings['threads']}, emobench {threads}")
    precision = str(settings.get("precision") or "").lower()
    if precision and dtype == "fp32" and precision not in ("f32", "fp32", "float32"):
        said.append(f"precision: the tool ran {precision}, emobench fp32")
    if last.get("statistic") != "median":
        said.append(f"statistic: the tool reports a {last.get('statistic')}, emobench a median")
    if tool == "benchmark_app":
        said.append(f"warm-up: benchmark_app runs 1 untimed inference, emobench {warmup}")
    if tool == "litert-benchmark":
        said.append("API: litert-benchmark runs LiteRT's CompiledModel (CPU accelerator), emobench the Interpreter "
                    "with the XNNPACK delegate; the tool also prints ms with two decimals")
    return said


def summarise(runs: list[dict], emobench_ms: float | None, emobench_spread: float | None, *, threads: int, dtype: str,
              warmup: int) -> dict:
    """The record's ``crosscheck``: the tool's median over the rounds, emobench's, their ratio (tool / emobench),
    the noise the comparison allows, whether they agree, and, when they do not, how the settings differed."""
    good = [r for r in runs if "latency_ms" in r]
    if not good:
        return {"error": next((r["error"] for r in runs if "error" in r), "the tool did not run")}
    figures = [r["latency_ms"] for r in good]
    median = statistics.median(figures)
    spread = relative_range(figures) or 0.0
    noise = max(AGREEMENT, spread, emobench_spread or 0.0)
    ratio = median / emobench_ms if emobench_ms else None
    agree = ratio is not None and abs(ratio - 1) <= noise
    last = good[-1]
    out = {
        "tool": last["tool"], "version": last.get("version"), "command": last["command"],
        "statistic": last["statistic"], "rounds": len(good), "tool_ms": figures, "tool_median_ms": median,
        "tool_spread": spread, "emobench_median_ms": emobench_ms, "ratio": ratio, "allowed": noise, "agree": agree,
        "settings": last.get("settings") or {}, "errors": [r["error"] for r in runs if "error" in r],
    }
    if not agree:
        out["differences"] = _differences(good, threads, dtype, warmup)
    return out
