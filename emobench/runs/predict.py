"""Latency predicted from measured tables: a network is cut into its stem, each block and its tail, in the
formulation a runtime runs; every distinct table row is measured once per runtime, threads and environment
(all of a call's rows in one worker's interleaved passes, stored as records named ``piece:…``, so the table
lives in the store and is reused).

A piece's key is what decides its latency: a block's configuration (without its training-only rates), its
input shape and the formulation; a stem's or tail's parameter shapes and input/output shapes. Networks that
share blocks share table rows.

Three estimators. ``isolated`` (the default): each piece alone, the network the sum of its pieces less one empty
call (``x + 1`` on the piece's input) per piece after the first. ``pairs``: each piece is timed followed by the
next one and the next one alone; the difference is the piece's cost *inside a chain* — the call, the input
handed in, the output handed back and any layout conversion at the call's borders cancel — and the sum over the
network telescopes to exactly one call: ``Σ_i [T(p_i → p_i+1) − T(p_i+1)] + T(tail)``. It subtracts a measured
row per piece, so a row's noise enters the prediction with both signs. ``calibrated``: the isolated estimate
with each empty call counted ``k`` times, ``k`` fitted per runtime on calibration networks (the zoo's EMO
variants) measured whole in the same passes — where a piece's call pays more at its borders than an empty call
(ExecuTorch's delegate layout conversions, OpenVINO's infer requests), the isolated sum over-predicts by about
the same multiple of the empty calls on every network, which ``k`` takes out. Measured on the five runtimes
(docs/sweeps.md), ``calibrated`` put 145 and 149 of 150 predictions within 10 % in two runs (isolated 104 and 95;
pairs, on another host, 73).
"""

from __future__ import annotations

import hashlib
import json
import socket
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from emobench.errors import EmobenchError
from emobench.nn.forms.prefix import CallOverhead, inference_config

#: /2: ``method`` (pairs, isolated) per prediction; /3: ``calibrated``, its ``factor`` k and ``calibrated_on``
SCHEMA = "emobench.predict/3"
OVERHEAD = "piece:overhead"
METHODS = ("isolated", "pairs", "calibrated")
#: the networks ``calibrated`` measures whole on each runtime: the zoo's EMO variants
CALIBRATION = ("emo_1m", "emo_2m", "emo_5m", "emo_6m")


@dataclass
class PieceSpec:
    key: str
    kind: str  #: stem, block, tail, overhead, pair
    label: str  #: where it sits in the network (stage1.0, …)
    module: nn.Module = field(repr=False)
    input_shape: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{OVERHEAD}:{self.key}" if self.kind == "overhead" else f"piece:{self.kind}:{self.key}"


def _key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _named(module: nn.Module, spec: PieceSpec) -> PieceSpec:
    module.default_input_size = tuple(spec.input_shape[1:])  # what bench feeds it
    module.model_reference = spec.name
    return spec


def overhead_piece(shape: tuple[int, ...]) -> PieceSpec:
    """An empty call on an input of ``shape``: what an isolated piece pays that the network pays once (the call,
    its input handed in, its output handed back)."""
    module = CallOverhead()
    key = "x".join(map(str, shape))
    return _named(module, PieceSpec(key, "overhead", f"call overhead at {key}", module, tuple(shape)))


def pair_piece(first: PieceSpec, then: PieceSpec) -> PieceSpec:
    """``first`` followed by ``then`` as one table row, keyed by the two pieces' keys (networks that chain the
    same two pieces share it)."""
    module = nn.Sequential(first.module, then.module)
    return _named(module, PieceSpec(_key({"kind": "pair", "first": first.key, "then": then.key}), "pair",
                                    f"{first.label} → {then.label}", module, first.input_shape))


def whole_key(specs: list[PieceSpec]) -> str:
    """The key of the whole network that ``specs`` cut: its pieces' keys in order."""
    return _key({"kind": "whole", "pieces": [s.key for s in specs]})


def whole_piece(specs: list[PieceSpec], module: nn.Module) -> PieceSpec:
    """The whole network that ``specs`` cut, as one table row (``calibrated`` measures its calibration networks
    whole)."""
    return _named(module, PieceSpec(whole_key(specs), "whole", "whole network", module, specs[0].input_shape))


def rows_needed(specs: list[PieceSpec], method: str) -> list[PieceSpec]:
    """The table rows ``method`` predicts the network of ``specs`` from (``calibrated``: the isolated ones; its
    calibration networks' rows come besides)."""
    if method == "pairs":  # every piece but the stem alone, every piece but the tail followed by the next
        return [*specs[1:], *(pair_piece(a, b) for a, b in zip(specs, specs[1:]))]
    return [*specs, *_overheads(specs)]


def form_for(backend: str, model: nn.Module, form: str = "auto") -> str:
    """The formulation ``backend`` runs ``model`` in: ``form``, or with ``auto`` the first of the runtime's
    preferences the model has (a table is measured in one formulation; ``bench --form auto`` may time several)."""
    from emobench.nn.forms import candidates
    from emobench.runtimes.backends import BACKENDS

    for name, why in candidates(form, BACKENDS[backend].form_preference, model):
        if why is None:
            return name
    raise EmobenchError(f"{backend}: no formulation of this model is available for '{form}'")


def pieces_of(reference: str, form: str, resolution: tuple[int, int] | None = None) -> list[PieceSpec]:
    """The network of ``reference`` in ``form`` as stem, blocks and tail, each a module with its input shape and
    key (the reference's own blocks give the block configurations)."""
    from emobench.analysis.breakdown import block_scopes
    from emobench.models.references import build_reference, resolve
    from emobench.nn.forms import formulate
    from emobench.nn.forms.prefix import Piece, Prefix, Tail, block_count

    ref = resolve(reference)
    model = build_reference(ref)
    shape = ref.input_shape(resolution, 1)
    formed = formulate(model, form)
    configs = [info.cfg for info in block_scopes(model).values()]
    labels = list(block_scopes(model))
    n = block_count(formed)
    if n is None or n != len(configs):
        raise EmobenchError(f"{ref.text}: cannot be cut into blocks in form {form} (predictions need M² blocks)")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    specs = []

    def shapes_of(module: nn.Module) -> list:
        # a stem cut holds the whole form (its blocks unused): only what is not a block's decides its cost
        return [[name, list(p.shape)] for name, p in module.named_parameters() if "blocks." not in name
                and not name.startswith(("stages.", "stem.stages."))]

    with torch.no_grad():
        stem = Prefix(formed, 0)
        y = stem(x)
        specs.append(_named(stem, PieceSpec(_key({"kind": "stem", "form": form, "in": shape, "out": list(y.shape),
                                                  "params": shapes_of(stem)}), "stem", "stem", stem, tuple(shape))))
        for k in range(n):
            piece = Piece(formed, k)
            cfg = inference_config(configs[k])
            specs.append(_named(piece, PieceSpec(_key({"kind": "block", "form": form, "in": list(y.shape), "config": cfg}),
                                                 "block", labels[k], piece, tuple(y.shape))))
            y = piece(y)
        tail = Tail(formed)
        out = tail(y)
        specs.append(_named(tail, PieceSpec(_key({"kind": "tail", "form": form, "in": list(y.shape),
                                                  "out": list(out.shape), "params": shapes_of(tail)}),
                                            "tail", "tail", tail, tuple(y.shape))))
    return specs


def _stored_medians(store, backend: str, threads: int) -> dict[str, float]:
    """Piece medians already in the store for this machine, runtime version, torch and threads."""
    from emobench.environment import cpu_name
    from emobench.results.query import comparable
    from emobench.runtimes.backends import BACKENDS

    if store is None:
        return {}
    df = store.records()
    if df.empty:
        return {}
    df = df[df["model"].astype(str).str.startswith("piece:") & (df["backend"] == backend)
            & (df["threads"].astype(str) == str(threads)) & (df["dtype"] == "fp32")
            & (df["machine"] == f"{socket.gethostname()} ({cpu_name()})")
            & (df["runtime_version"].astype(str) == str(BACKENDS[backend].version()))
            & (df["torch_version"].astype(str) == torch.__version__)]
    df = comparable(df, ["model"])
    return {row["model"]: float(row["median_ms"]) for _, row in df.iterrows()}


@dataclass
class Prediction:
    model: str
    backend: str
    form: str
    threads: int
    predicted_ms: float | None
    pieces: int
    overhead_ms: float | None  #: isolated: the calls the isolated pieces paid beyond the network's one (pairs: None)
    measured_now: int  #: table rows this call measured; the rest came from the store
    rows: list[dict[str, Any]]  #: per piece: label, kind, key, ms (its share of the prediction)
    error: str | None = None  #: table rows that did not measure (then ``predicted_ms`` is None)
    method: str = "isolated"
    #: with ``measure``: the whole network timed in the same interleaved passes as its table rows
    measured: Any = None
    #: calibrated: how many empty calls each piece's borders cost (``overhead_ms`` is that many), and the
    #: calibration networks it was fitted on
    factor: float | None = None
    calibrated_on: list[str] = field(default_factory=list)


def _estimate(specs: list[PieceSpec], table: dict[str, float], method: str) -> tuple[list[float], float | None]:
    """Each piece's share of the prediction under ``method`` (they sum to it), and for ``isolated`` the
    overhead taken off (its shares are the pieces' isolated times, the overhead subtracted from their sum);
    ``calibrated`` is the isolated estimate before its factor (:func:`calibration_factor`)."""
    if method == "pairs":
        shares = [table[pair_piece(a, b).name] - table[b.name] for a, b in zip(specs, specs[1:])]
        return [*shares, table[specs[-1].name]], None
    # every piece after the first pays a call (with its input and output) the network does not
    return [table[s.name] for s in specs], sum(table[overhead_piece(s.input_shape).name] for s in specs[1:])


def calibration_factor(points: list[tuple[float, float, float]]) -> float:
    """How many empty calls a piece's borders cost inside a network: the ``k`` that best maps each calibration
    network's sum of isolated pieces ``S`` less ``k`` × its empty calls ``O`` onto the network measured whole ``W``
    (least squares over ``(S, O, W)`` points): ``k = Σ (S − W)·O / Σ O²``."""
    return sum((s - w) * o for s, o, w in points) / sum(o * o for _, o, _ in points)


def predict(references: list[str], backends: list[str], threads: int, store=None, form: str = "auto",
            resolution: tuple[int, int] | None = None, rounds: int = 10, min_time: float = 0.05,
            progress: Callable[[str, int, int], None] | None = None, method: str = "isolated",
            measure: bool = False, calibration: list[str] | None = None) -> list[Prediction]:
    """Predicted latency of each reference on each backend (batch 1, fp32) by ``method`` (:data:`METHODS`, or
    several comma-separated: one prediction each, from one table),
    measuring the table rows the store does not have yet — per backend, all of them in one worker's
    interleaved passes (:func:`~emobench.runs.bench.time_together`), each stored as a ``piece:…`` record.

    ``measure``: each whole network too (``Prediction.measured``), in the same passes as every table row it
    needs, all re-timed (rows already stored included), so that prediction and measurement are from one run.

    ``calibrated``: the isolated estimate with each empty call taken off ``k`` times, ``k`` fitted per runtime
    (:func:`calibration_factor`) on the ``calibration`` networks (default :data:`CALIBRATION`), each measured
    whole as a table row in the same passes as the pieces; a calibration network itself is predicted from the
    others' ``k`` (never its own)."""
    from emobench.models.references import build_reference, resolve
    from emobench.nn.forms import formulate
    from emobench.runs.bench import time_together

    from emobench.runtimes.backends import BACKENDS

    methods = list(dict.fromkeys(m.strip() for m in method.split(",")))
    for m in methods:
        if m not in METHODS:
            raise EmobenchError(f"unknown prediction method '{m}' (choose {', '.join(METHODS)})")
    for backend in backends:
        if backend not in BACKENDS:
            raise EmobenchError(f"unknown backend '{backend}' (choose {', '.join(BACKENDS)})")
        why = BACKENDS[backend].unavailable()
        if why:
            raise EmobenchError(f"{backend}: {why}")
    say = progress or (lambda label, done, total: None)
    plans: dict[tuple[str, str], tuple[str, list[PieceSpec]]] = {}
    models: dict[str, nn.Module] = {}
    for ref_text in references:
        model = models[ref_text] = build_reference(resolve(ref_text))
        for backend in backends:
            chosen = form_for(backend, model, form)
            plans[(ref_text, backend)] = (chosen, pieces_of(ref_text, chosen, resolution))
    # calibrated: per backend, each calibration network's pieces and the network whole (a table row of its own)
    calibrators: dict[str, list[tuple[str, list[PieceSpec], PieceSpec]]] = {b: [] for b in backends}
    if "calibrated" in methods:
        for ref_text in calibration or CALIBRATION:
            model = models.get(ref_text) or build_reference(resolve(ref_text))  # a predicted one is cut already
            for backend in backends:
                if (ref_text, backend) in plans:
                    chosen, specs = plans[(ref_text, backend)]
                else:
                    chosen = form_for(backend, model, form)
                    specs = pieces_of(ref_text, chosen, resolution)
                calibrators[backend].append((ref_text, specs, whole_piece(specs, formulate(model, chosen))))
    measured_now: dict[str, int] = {}
    tables: dict[str, dict[str, float]] = {}
    failed: dict[tuple[str, str], str] = {}
    wholes: dict[tuple[str, str], Any] = {}
    for backend in backends:
        table = {} if measure else _stored_medians(store, backend, threads)
        wanted: dict[str, PieceSpec] = {}
        networks: dict[str, tuple[nn.Module, tuple[int, ...]]] = {}
        for (ref_text, b), (chosen, specs) in plans.items():
            if b == backend:
                for m in methods:
                    wanted.update({s.name: s for s in rows_needed(specs, m) if s.name not in table})
                if measure:
                    networks[f"whole:{ref_text}"] = (formulate(models[ref_text], chosen), specs[0].input_shape)
        for _, specs, whole in calibrators[backend]:
            wanted.update({s.name: s for s in [*rows_needed(specs, "isolated"), whole] if s.name not in table})
        if wanted or networks:
            say(f"measuring {len(wanted)} table row(s){f' and {len(networks)} network(s)' if networks else ''} "
                f"on {backend} in one worker's interleaved passes", 0, len(wanted) + len(networks))
            timing = time_together({**{n: (s.module, s.input_shape) for n, s in wanted.items()}, **networks},
                                   backend, threads, rounds=rounds, min_time=min_time)
            for name, spec in wanted.items():
                rec = timing.to_record(name, spec.input_shape)
                if store is not None:
                    store.add(rec)
                if rec.status == "ok":
                    table[name] = float(rec.median_ms)
                else:
                    failed[(backend, name)] = f"{rec.status}: {rec.error}"
            for name, (_, shape) in networks.items():
                wholes[(name.removeprefix("whole:"), backend)] = timing.to_record(name, shape)
        measured_now[backend] = len(wanted)
        tables[backend] = table
    out = []
    for (ref_text, backend), (chosen, specs) in plans.items():
        table, whole = tables[backend], wholes.get((ref_text, backend))
        for m in methods:
            missing = [f"{s.name} ({failed[(backend, s.name)]})" for s in rows_needed(specs, m)
                       if (backend, s.name) in failed]
            factor, used = None, []
            if m == "calibrated" and not missing:
                own = whole_key(specs)  # a calibration network is never its own evidence
                points = {ref: (*_isolated(cal_specs, table), table.get(cal_whole.name))
                          for ref, cal_specs, cal_whole in calibrators[backend] if cal_whole.key != own}
                used = [ref for ref, point in points.items() if None not in point]
                if used:
                    factor = calibration_factor([points[ref] for ref in used])
                else:
                    missing = [f"calibrated: no calibration network measured on {backend} "
                               f"({', '.join(points) or 'the only one is this network'})"]
            shares, overhead = ([None] * len(specs), None) if missing else _estimate(specs, table, m)
            if factor is not None:  # the pieces as measured, their borders k empty calls each
                overhead = factor * overhead
            rows = [{"label": s.label, "kind": s.kind, "key": s.key, "ms": ms} for s, ms in zip(specs, shares)]
            total = None if missing else sum(shares) - (overhead or 0.0)
            out.append(Prediction(ref_text, backend, chosen, threads, total, len(rows), overhead,
                                  measured_now[backend], rows, "; ".join(dict.fromkeys(missing)) or None, m,
                                  whole if whole is not None and whole.status == "ok" else None, factor, used))
    return out


def _isolated(specs: list[PieceSpec], table: dict[str, float]) -> tuple[float | None, float | None]:
    """The sum of the isolated pieces of ``specs`` and of the empty calls the isolated estimate takes off,
    from ``table`` (None, None where a row is missing)."""
    if any(s.name not in table for s in rows_needed(specs, "isolated")):
        return None, None
    shares, overhead = _estimate(specs, table, "isolated")
    return sum(shares), overhead


def _overheads(specs: list[PieceSpec]) -> list[PieceSpec]:
    """One empty call per distinct input shape of ``specs``."""
    return [overhead_piece(shape) for shape in dict.fromkeys(s.input_shape for s in specs)]


def prediction_errors(predictions: list[Prediction], records=()) -> list[dict[str, Any]]:
    """Each prediction beside the whole network measured in the same formulation (its own ``measured``, timed in
    the passes of its table, else the one of ``records``): the relative error, with the prediction's pieces and
    (isolated) the empty calls taken off."""
    measured = {(r.model, r.backend, r.form): r for r in records if r.status == "ok"}
    rows = []
    for p in predictions:
        rec = p.measured or measured.get((p.model, p.backend, p.form))
        error = None if rec is None or p.predicted_ms is None else p.predicted_ms / rec.median_ms - 1
        rows.append({"model": p.model, "backend": p.backend, "form": p.form, "method": p.method,
                     "predicted_ms": p.predicted_ms,
                     "measured_ms": None if rec is None else rec.median_ms, "error": error,
                     "round_spread": None if rec is None else rec.round_spread, "note": p.error,
                     "pieces": p.pieces, "overhead_ms": p.overhead_ms, "measured_now": p.measured_now,
                     "factor": p.factor, "calibrated_on": ",".join(p.calibrated_on) or None})
    return rows


def error_summary(rows: list[dict[str, Any]], within: float = 0.10) -> dict[str, dict[str, Any]]:
    """Per backend: how many predictions are within ``within`` of the measurement, and the median |error|."""
    out: dict[str, dict[str, Any]] = {}
    for backend in dict.fromkeys(r["backend"] for r in rows):
        errs = [abs(r["error"]) for r in rows if r["backend"] == backend and r["error"] is not None]
        out[backend] = {"n": len(errs), "within": sum(e <= within for e in errs),
                        "share_within": sum(e <= within for e in errs) / len(errs) if errs else None,
                        "median_abs_error": statistics.median(errs) if errs else None}
    return out
