"""``emobench bench --breakdown``: where the time of each measured (model, backend, form, dtype) goes, measured
after its timed rounds in workers of its own, so that profiling never touches a headline latency.

Two methods. ``profiler``: the runtime's own per-operator profiler (torch.profiler, ONNX Runtime's session
profiler, OpenVINO's performance counters), operators attributed to modules and M² parts
(:mod:`emobench.analysis.breakdown`). ``prefix``: prefix differencing, for any runtime that loads files (the
network cut after every block, exported like the measured artifact and timed in interleaved passes in one
worker), by block and stage, and on the mobile forms also by M² part (each distinct block cut after every part,
timed in the same passes on the block's own input). ``auto`` takes the profiler where the runtime has one, else prefix differencing;
``both`` runs the two, so each cross-checks the other.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from emobench.analysis.breakdown import OpTime, prefix_summary, summarise
from emobench.errors import EmobenchError, first_line
from emobench.nn.forms import formulate
from emobench.nn.forms.prefix import EmptyCut, Prefix, block_count, part_cuts
from emobench.runtimes.base import Artifact, Backend

METHODS = ("auto", "profiler", "prefix", "both")


def check_method(method: str | None) -> None:
    if method is not None and method not in METHODS:
        raise EmobenchError(f"unknown breakdown method '{method}' (choose {', '.join(METHODS)})")


def methods_for(method: str, backend: Backend, form: torch.nn.Module) -> dict[str, str | None]:
    """The methods ``method`` asks for on ``backend``: name → None when it can run, else why not."""
    profiler = None if backend.profiler else f"{backend.name} has no per-operator profiler emobench reads"
    if block_count(form) is None:
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
            time_prefixes: Callable[[list[tuple[Artifact, np.ndarray | None]]], dict],
            export: Callable[[torch.nn.Module, dict, tuple[int, ...] | None], Artifact]) -> dict:
    """Every breakdown ``method`` asks for, by name; a method that cannot run or fails gets ``error`` (the
    record's measurement stands either way). ``profile`` runs the profiling worker; ``export(module, identity,
    shape)`` writes a cut (``identity`` says which; ``shape`` its input's, None: the network's);
    ``time_prefixes`` runs the worker timing the cuts, each on its input (None: the network's)."""
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
                cuts = [(export(Prefix(form, k), {"cut_after_block": k}, None), None) for k in range(block_count(form) + 1)]
                cuts.append((None, None))  # the whole network, after the cuts of the blocks
                groups = part_cuts(form, x) or []
                for g in groups:  # an empty cut on its input, then the block cut after each part
                    shape, arr = tuple(g.input.shape), g.input.numpy()
                    cuts.append((export(EmptyCut(), {"empty_cut": list(shape)}, shape), arr))
                    cuts += [(export(g.cut(tap), {"block_cut": g.blocks[0], "tap": tap}, shape), arr)
                             for tap in range(1, len(g.parts) + 1)]
                out[name] = prefix_summary(_ok(time_prefixes(cuts))["prefix_times"], form, x, headline_ms=headline_ms,
                                           reference=reference, parts=[(g.blocks, g.parts) for g in groups])
                if backend.suffix is None:  # no file of its own: the worker runs torch.export programs of the cuts
                    out[name]["source"] = out[name]["source"][:-1] + "; eager: the cuts and the whole network " \
                        "as torch.export programs)"
        except Exception as err:  # noqa: BLE001 - a failed breakdown is said in the record, never a crash
            out[name] = {"error": first_line(err)}
    return out
