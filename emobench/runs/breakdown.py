"""``emobench bench --breakdown``: where the time of each measured (model, backend, form, dtype) goes, measured
after its timed rounds in workers of its own, so that profiling never touches a headline latency.

Two methods. ``profiler``: the runtime's own per-operator profiler (torch.profiler, ONNX Runtime's session
profiler, OpenVINO's performance counters), operators attributed to modules and M² parts
(:mod:`emobench.analysis.breakdown`). ``prefix``: prefix differencing, for any runtime that loads files (the
network cut after every block, exported like the measured artifact and timed in interleaved passes in one
worker), by block and stage. ``auto`` takes the profiler where the runtime has one, else prefix differencing;
``both`` runs the two, so each cross-checks the other.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from emobench.analysis.breakdown import OpTime, prefix_summary, summarise
from emobench.errors import EmobenchError, first_line
from emobench.nn.forms import formulate
from emobench.nn.forms.prefix import Prefix, block_count
from emobench.runtimes.base import Artifact, Backend

METHODS = ("auto", "profiler", "prefix", "both")


def check_method(method: str | None) -> None:
    if method is not None and method not in METHODS:
        raise EmobenchError(f"unknown breakdown method '{method}' (choose {', '.join(METHODS)})")


def methods_for(method: str, backend: Backend, form: torch.nn.Module) -> dict[str, str | None]:
    """The methods ``method`` asks for on ``backend``: name → None when it can run, else why not."""
    profiler = None if backend.profiler else f"{backend.name} has no per-operator profiler emobench reads"
    if backend.suffix is None:
        prefix = f"{backend.name} exports no file to cut (prefix differencing needs a file artifact)"
    elif block_count(form) is None:
        prefix = f"the {type(form).__name__} module has no stem and block sequence to cut"
    else:
        prefix = None
    wanted = {"auto": ["profiler" if profiler is None else "prefix"], "both": ["profiler", "prefix"]}.get(method, [method])
    return {m: {"profiler": profiler, "prefix": prefix}[m] for m in wanted}


def _ok(result: dict) -> dict:
    """A worker's result, or its failure raised (said in the record by :func:`measure`)."""
    if result.get("status") != "ok":
        raise RuntimeError(result.get("error") or result.get("status"))
    return result


def measure(method: str, backend: Backend, reference: torch.nn.Module, form_name: str, x_path: str,
            headline_ms: float | None, *, profile: Callable[[], dict],
            time_prefixes: Callable[[list[Artifact]], dict], export: Callable[[torch.nn.Module, int], Artifact]) -> dict:
    """Every breakdown ``method`` asks for, by name; a method that cannot run or fails gets ``error`` (the
    record's measurement stands either way). ``profile`` runs the profiling worker; ``export(module, k)`` writes
    the cut after ``k`` blocks; ``time_prefixes`` runs the worker timing the cuts (the last one the whole network)."""
    form = formulate(reference, form_name)
    x = torch.from_numpy(np.load(x_path, allow_pickle=False))
    out: dict[str, dict] = {}
    for name, why in methods_for(method, backend, form).items():
        if why:
            out[name] = {"error": why}
            continue
        try:
            if name == "profiler":
                prof = _ok(profile())["op_profile"]
                ops = [OpTime(o["name"], o["op"], o["scope"], o["ms"]) for o in prof["ops"]]
                out[name] = summarise(ops, form, x, source=prof["source"], headline_ms=headline_ms, reference=reference,
                                      beside_ms=prof.get("plain_ms"), profiled_ms=prof["wall_ms"], runs=prof["runs"])
            else:
                cuts = [export(Prefix(form, k), k) for k in range(block_count(form) + 1)]
                out[name] = prefix_summary(_ok(time_prefixes(cuts))["prefix_times"], form, x, headline_ms=headline_ms, reference=reference)
        except Exception as err:  # noqa: BLE001 - a failed breakdown is said in the record, never a crash
            out[name] = {"error": first_line(err)}
    return out
