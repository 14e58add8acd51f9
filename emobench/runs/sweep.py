"""``emobench sweep SPEC.toml``: a design space around a base model — axes over configuration fields (or a
factory's arguments), products, ranges and seeded samples, constraints and budgets — every point validated,
counted fast (emobench's own counter on the meta device, the exact receptive field from the family's layout),
stored once under the sweep's id, and the Pareto front measured with ``bench``'s methodology.

A spec (TOML, read with ``tomllib``; nothing in it is executed)::

    base = "emo_1m"                  # a zoo name or any model reference
    name = "emo1m-space"             # the sweep's id in the store (default: the file's stem)
    resolution = 224                 # optional
    sample = 50                      # optional: a seeded random sample of the product instead of all of it
    seed = 0

    [axes]                           # a field → its values; FIELD[i] sets one element of a list field,
    "exp_ratios[2]" = [2.0, 3.0, 4.0]       # a.b a field of a nested table
    "dw_kss[2]" = { start = 3, stop = 7, step = 2 }   # an inclusive range
    window_sizes = [[7, 7, 7, 7], [7, 7, 5, 5]]

    [constraints]
    max_params = 2.0e6               # min_/max_ params and macs: budgets on the counted figures
    divisible = [["embed_dims[2]", "dim_heads[2]"]]

    [measure]
    backends = ["torch", "onnxruntime"]
    front = 8                        # measure at most this many points of the front (0: none)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emobench.errors import EmobenchError

SCHEMA = "emobench.sweep/1"
#: more points than this in a product (before sampling) is refused: say ``sample``
MAX_POINTS = 100_000
_PATH = re.compile(r"^[A-Za-z_]\w*(\[\d+\])?(\.[A-Za-z_]\w*(\[\d+\])?)*$")
_STEP = re.compile(r"([A-Za-z_]\w*)(?:\[(\d+)\])?")


class Range(BaseModel):
    """start, start + step, … up to and including stop."""

    model_config = ConfigDict(extra="forbid")
    start: float
    stop: float
    step: float = Field(gt=0)

    def values(self) -> list:
        n = int(math.floor((self.stop - self.start) / self.step + 1e-9)) + 1
        if n < 1:
            raise ValueError(f"range from {self.start} to {self.stop} is empty")
        if n > MAX_POINTS:
            raise ValueError(f"range has {n:,} values; at most {MAX_POINTS:,}")
        ints = all(float(v).is_integer() for v in (self.start, self.stop, self.step))
        return [int(self.start + i * self.step) if ints else round(self.start + i * self.step, 12) for i in range(n)]


class Constraints(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_params: Optional[float] = Field(None, ge=0)
    max_params: Optional[float] = Field(None, ge=0)
    min_macs: Optional[float] = Field(None, ge=0)
    max_macs: Optional[float] = Field(None, ge=0)
    #: pairs [A, B] of field paths: A must be a multiple of B (``embed_dims[2] % dim_heads[2] == 0``)
    divisible: list[tuple[str, str]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "Constraints":
        for lo, hi, what in ((self.min_params, self.max_params, "params"), (self.min_macs, self.max_macs, "macs")):
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"min_{what} {lo:g} is above max_{what} {hi:g}: no point can meet it")
        for pair in self.divisible:
            for path in pair:
                if not _PATH.match(path):
                    raise ValueError(f"divisible: '{path}' is not a field path (name, name[i] or a.b)")
        return self


class MeasureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backends: list[str] = Field(default_factory=lambda: ["torch"])
    threads: Optional[int] = Field(None, ge=1)
    #: measure this many points, the Pareto front first (fewest MACs first), then the next fronts (0: none)
    front: int = Field(8, ge=0, le=1000)
    rounds: int = Field(3, ge=1)
    min_time: float = Field(1.0, gt=0)
    form: str = "auto"
    #: predict every valid point's latency on each backend from measured block tables (emobench predict), and
    #: take the front over predicted latency (first backend), MACs and params
    predict: bool = False
    #: the estimator (emobench predict --method): isolated, pairs or calibrated
    predict_method: Literal["isolated", "pairs", "calibrated"] = "isolated"


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: str = Field(min_length=1)
    name: Optional[str] = Field(None, min_length=1, max_length=120, pattern=r"^[\w.\-]+$")
    resolution: Optional[Union[int, tuple[int, int]]] = None
    axes: dict[str, Any]  #: a list of values, or a range table {start, stop, step}
    sample: Optional[int] = Field(None, ge=1, le=MAX_POINTS)
    seed: int = 0
    constraints: Constraints = Field(default_factory=Constraints)
    measure: MeasureSpec = Field(default_factory=MeasureSpec)

    @field_validator("axes")
    @classmethod
    def _axes(cls, axes: dict) -> dict:
        if not axes:
            raise ValueError("no axes: give at least one field and its values")
        out = {}
        for path, values in axes.items():
            if not _PATH.match(path):
                raise ValueError(f"'{path}' is not a field path (name, name[i] or a.b)")
            if isinstance(values, dict):
                try:
                    values = Range.model_validate(values)
                    values.values()
                except ValidationError as err:
                    raise ValueError(f"'{path}': a range is {{start, stop, step}} ({err.errors()[0]['msg']})") from None
                except ValueError as err:
                    raise ValueError(f"'{path}': {err}") from None
            elif not isinstance(values, list):
                raise ValueError(f"'{path}' must be a list of values or a range {{start, stop, step}}, got {values!r}")
            elif not values:
                raise ValueError(f"'{path}' has no values")
            out[path] = values
        return out

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, value):
        sides = (value, value) if isinstance(value, int) else value
        if sides is not None and min(sides) < 1:
            raise ValueError(f"must be positive, got {value}")
        return value

    def axis_values(self) -> dict[str, list]:
        return {path: v.values() if isinstance(v, Range) else list(v) for path, v in self.axes.items()}

    @property
    def size(self) -> tuple[int, int] | None:
        if self.resolution is None:
            return None
        return (self.resolution, self.resolution) if isinstance(self.resolution, int) else tuple(self.resolution)

    def digest(self) -> str:
        """What identifies the space (a resumed sweep must be the same one)."""
        text = json.dumps(self.model_dump(mode="json", exclude={"measure", "name"}), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_spec(path: str | os.PathLike) -> tuple[SweepSpec, str]:
    """The validated spec and the sweep's id; any problem is one :class:`EmobenchError` naming file and field."""
    from emobench.zoo.catalog import read_validated

    path = Path(path)
    spec = read_validated(path, SweepSpec)
    total = math.prod(len(v) for v in spec.axis_values().values())
    if total > MAX_POINTS and spec.sample is None:
        raise EmobenchError(f"{path}: the axes span {total:,} points (at most {MAX_POINTS:,}); sample some with "
                            "'sample = N'")
    return spec, spec.name or path.stem


# --- points ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    seq: int  #: its index in the product of the axes
    values: dict[str, Any]  #: axis path → value

    @property
    def id(self) -> str:
        return hashlib.sha256(json.dumps(self.values, sort_keys=True, default=str).encode()).hexdigest()[:12]


def points(spec: SweepSpec) -> list[Point]:
    """Every point of the product of the axes in order, or a seeded random ``sample`` of them (in order)."""
    axes = spec.axis_values()
    names, sizes = list(axes), [len(v) for v in axes.values()]
    total = math.prod(sizes)
    if spec.sample is not None and spec.sample < total:
        chosen = sorted(random.Random(spec.seed).sample(range(total), spec.sample))
    else:
        chosen = range(total)
    out = []
    for index in chosen:
        values, rest = {}, index
        for name, size in zip(reversed(names), reversed(sizes)):  # the last axis varies fastest
            rest, i = divmod(rest, size)
            values[name] = axes[name][i]
        out.append(Point(index, {n: values[n] for n in names}))
    return out


def _steps(path: str) -> list[tuple[str, int | None]]:
    return [(m.group(1), None if m.group(2) is None else int(m.group(2))) for m in _STEP.finditer(path)]


def read_path(config: dict, path: str) -> Any:
    value: Any = config
    for name, index in _steps(path):
        if not isinstance(value, dict) or name not in value:
            raise KeyError(f"no field '{path}'")
        value = value[name]
        if index is not None:
            if not isinstance(value, (list, tuple)) or index >= len(value):
                raise KeyError(f"'{path}': {name} has no element {index}")
            value = value[index]
    return value


def overrides_for(config: dict, values: dict[str, Any]) -> dict[str, Any]:
    """Top-level overrides that set every axis path of ``values`` on ``config`` (the base's full configuration,
    defaults included): ``exp_ratios[2] = 3`` becomes the whole ``exp_ratios`` list with that element set."""
    out: dict[str, Any] = {}
    for path, value in values.items():
        steps = _steps(path)
        top = steps[0][0]
        if top not in config:
            raise KeyError(f"no field '{top}' in the base's configuration (fields: {', '.join(sorted(config))})")
        out[top] = _set(out.get(top, _copy(config[top])), steps, 0, value, path)
    return out


def _copy(value):
    return json.loads(json.dumps(value, default=str)) if isinstance(value, (dict, list, tuple)) else value


def _set(current, steps, k, value, path):
    name, index = steps[k]
    last = k == len(steps) - 1
    if index is not None:
        if not isinstance(current, list) or index >= len(current):
            raise KeyError(f"'{path}': {name} has no element {index}")
        current = list(current)
        current[index] = value if last else _set(current[index], steps, k + 1, value, path)
        return current
    if last:
        return value
    nxt = steps[k + 1][0]
    if not isinstance(current, dict) or nxt not in current:
        raise KeyError(f"no field '{path}'")
    current = dict(current)
    current[nxt] = _set(current[nxt], steps, k + 1, value, path) if len(steps) > k + 1 else value
    return current


# --- counting a point -----------------------------------------------------------------------------------------

def evaluate_point(base: str, point: Point, resolution: tuple[int, int] | None, constraints: Constraints) -> dict[str, Any]:
    """One point validated and counted: params, MACs and activations (emobench's counter on the meta device), the
    exact receptive field where the family has a layout; a point the family refuses is ``invalid`` with the
    reason, one outside the budgets ``over budget``."""
    from emobench.analysis.rf import entry_receptive_field, has_exact_reach
    from emobench.measure.counters import count_fast
    from emobench.models.references import resolve

    row: dict[str, Any] = {"point": point.id, "seq": point.seq, "values_json": point.values, "status": "ok",
                           "reason": None, "worker": f"{os.uname().nodename}:{os.getpid()}"}
    try:
        base_ref = resolve(base)
        if base_ref.entry is not None:
            overrides = overrides_for(base_ref.entry.config.model_dump(mode="json"), point.values)
        else:  # a factory: the axes are its keyword arguments
            overrides = dict(point.values)
        text = base_ref.reference.with_kwargs(overrides, resolution)
        row["reference"] = text
        ref = resolve(text)
        config = ref.entry.config.model_dump(mode="json") if ref.entry is not None else dict(ref.reference.kwargs)
        for a, b in constraints.divisible:
            va, vb = read_path(config, a), read_path(config, b)
            if not isinstance(va, int) or not isinstance(vb, int) or vb == 0 or va % vb:
                raise ValueError(f"{a} = {va} is not a multiple of {b} = {vb}")
        shape = ref.input_shape(resolution, 1)
        if ref.entry is not None:
            from emobench.models.budget import check_config_fits
            from emobench.models.build import check_input

            check_config_fits(ref, shape)
            check_input(ref.entry, shape)
        count = count_fast(ref.meta_module(), shape)
    except (EmobenchError, KeyError, ValueError, TypeError, RuntimeError) as err:
        why = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        row.update(status="invalid", reason=" ".join(str(why).split()))
        return row
    row.update(params=count.params, macs=count.macs, activations=count.activations)
    if ref.entry is not None and has_exact_reach(ref.entry.family):
        try:
            rf = entry_receptive_field(ref.entry, shape[2:])
            last = rf.table.iloc[-1]
            row.update(rf=int(max(last["rf H"], last["rf W"])), first_global=rf.first_all_global)
        except EmobenchError:
            pass
    reasons = []
    c = constraints
    for value, lo, hi, what in ((count.params, c.min_params, c.max_params, "params"),
                                (count.macs, c.min_macs, c.max_macs, "MACs")):
        if lo is not None and value < lo:
            reasons.append(f"{what} {value:,} below {lo:,.0f}")
        if hi is not None and value > hi:
            reasons.append(f"{what} {value:,} above {hi:,.0f}")
    if reasons:
        row.update(status="over budget", reason="; ".join(reasons))
    return row


def _count_chunk(args: tuple) -> list[dict[str, Any]]:
    """A worker process's share of the points (the zoo folders of the driver put on its search path first)."""
    base, chunk, resolution, constraints, zoo_dirs = args
    from emobench.zoo.catalog import extra_zoo_dirs

    limits = Constraints.model_validate(constraints)
    with extra_zoo_dirs(zoo_dirs):
        return [evaluate_point(base, p, resolution, limits) for p in chunk]


# --- the front --------------------------------------------------------------------------------------------------

def pareto(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """The rows no other row beats on every key (lower is better) and strictly on one."""
    scored = [r for r in rows if all(r.get(k) is not None for k in keys)]
    front = []
    for r in scored:
        dominated = any(all(o[k] <= r[k] for k in keys) and any(o[k] < r[k] for k in keys) for o in scored if o is not r)
        if not dominated:
            front.append(r)
    return front


def by_rank(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """The rows front by front (the Pareto front, then the front of what remains, …), each by its first key:
    the order in which a budget of measurements is spent."""
    rest, out = list(rows), []
    while rest:
        front = pareto(rest, keys)
        if not front:
            break
        out += sorted(front, key=lambda r: r[keys[0]])
        ids = {id(r) for r in front}
        rest = [r for r in rest if id(r) not in ids]
    return out


@dataclass
class SweepOutcome:
    sweep: str
    spec: SweepSpec
    rows: list[dict[str, Any]]
    counted: int  #: points counted in this run (the others were stored by an earlier run)
    count_s: float
    front: list[str] = field(default_factory=list)  #: point ids of the Pareto front
    measured: int = 0  #: front points measured in this run
    store: str | None = None

    @property
    def points_per_s(self) -> float | None:
        return self.counted / self.count_s if self.counted and self.count_s > 0 else None


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def count_points(spec: SweepSpec, todo: list[Point], workers: int, zoo_dirs: list[str],
                 on_row: Callable[[dict[str, Any]], None], ray: str | None = None) -> None:
    """Count ``todo`` in ``workers`` processes (1: in this one), or as tasks on a Ray cluster, each row handed to
    ``on_row`` as it comes."""
    constraints = spec.constraints.model_dump()
    if ray is not None:
        from emobench.runs.cluster import count_on_ray

        count_on_ray(ray, _count_chunk, [(spec.base, chunk, spec.size, constraints, zoo_dirs)
                                         for chunk in _chunks(todo, 8)], on_row)
        return
    if workers <= 1 or len(todo) < 8:
        for p in todo:
            on_row(evaluate_point(spec.base, p, spec.size, spec.constraints))
        return
    import concurrent.futures as cf
    import multiprocessing as mp

    size = max(1, min(25, len(todo) // (workers * 4) or 1))
    jobs = [(spec.base, chunk, spec.size, constraints, zoo_dirs) for chunk in _chunks(todo, size)]
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_count_chunk, j) for j in jobs]
        try:
            for future in cf.as_completed(futures):  # each chunk's rows stored as soon as it is in
                for row in future.result():
                    on_row(row)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def check_fields(spec: SweepSpec) -> None:
    """Every axis and constraint path names a field of a zoo base's configuration (a factory's arguments cannot be
    known before it is called: its points say so one by one)."""
    from emobench.models.references import resolve

    base = resolve(spec.base)
    if base.entry is None:
        return
    config = base.entry.config.model_dump(mode="json")
    for path in [*spec.axes, *(p for pair in spec.constraints.divisible for p in pair)]:
        try:
            read_path(config, path)
        except KeyError as err:
            raise EmobenchError(f"{spec.base}: {err.args[0]} (its fields: {', '.join(sorted(config))})") from None


def run_sweep(spec: SweepSpec, sweep_id: str, store, workers: int | None = None, measure: bool = True,
              zoo_dirs: list[str] | None = None, progress: Callable[[str, int, int], None] | None = None,
              ray: str | None = None) -> SweepOutcome:
    """Count every point not yet stored for ``sweep_id`` (a killed sweep resumes: a point is done once), then
    measure the front's points not yet measured; every row and record goes to ``store`` as it completes. With
    ``ray`` (``local``, ``auto`` or an address) counting and measuring run as tasks on that cluster
    (:mod:`emobench.runs.cluster`)."""
    check_fields(spec)  # a bad base or field is one line before any work
    digest = spec.digest()
    stored = {r["point"]: r for r in store.sweep_points(sweep_id)}
    marker = stored.get("__spec__")
    if marker is not None and (marker.get("values_json") or {}).get("digest") != digest:
        raise EmobenchError(f"sweep '{sweep_id}' is stored with another spec; give the new one another name")
    if marker is None:
        store.add_sweep_point({"sweep": sweep_id, "point": "__spec__", "seq": -1, "status": "spec",
                               "values_json": {"digest": digest, "spec": spec.model_dump(mode="json")},
                               "created": time.time()})
    all_points = points(spec)
    todo = [p for p in all_points if p.id not in stored]
    say = progress or (lambda label, done, total: None)
    done = [len(all_points) - len(todo)]
    say("counting", done[0], len(all_points))

    def keep(row: dict[str, Any]) -> None:
        store.add_sweep_point({**row, "sweep": sweep_id, "created": time.time()})
        done[0] += 1
        say("counting", done[0], len(all_points))

    start = time.perf_counter()
    count_points(spec, todo, workers or os.cpu_count() or 1, list(zoo_dirs or []), keep, ray)
    count_s = time.perf_counter() - start
    if measure and spec.measure.predict:
        _predict_points(spec, sweep_id, store, say)
    rows = [r for r in store.sweep_points(sweep_id) if r["point"] != "__spec__"]
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        over = [r for r in rows if r["status"] == "over budget"]
        why = (f"no point meets the budget ({len(over)} of {len(rows)} outside it, e.g. {over[0]['reason']})" if over
               else f"no valid point ({len(rows)} invalid, e.g. {rows[0]['reason'] if rows else 'none'})")
        raise EmobenchError(f"sweep '{sweep_id}': {why}")
    keys = front_keys(spec, ok)
    front = sorted(pareto(ok, keys), key=lambda r: r["macs"])
    outcome = SweepOutcome(sweep_id, spec, rows, len(todo), count_s, [r["point"] for r in front],
                           store=str(store.path))
    if measure and spec.measure.front:
        ranked = by_rank(ok, keys)  # the front first; a budget larger than it takes the next fronts
        outcome.measured = _measure_front(spec, sweep_id, ranked[:spec.measure.front], store, say, ray)
        outcome.rows = [r for r in store.sweep_points(sweep_id) if r["point"] != "__spec__"]
    return outcome


def front_keys(spec: SweepSpec, ok: list[dict[str, Any]]) -> list[str]:
    """The objectives of the front: MACs and params, and the first backend's predicted latency with ``predict``
    (set on each row as ``predicted_ms``)."""
    if not spec.measure.predict:
        return ["macs", "params"]
    first = spec.measure.backends[0]
    for r in ok:
        r["predicted_ms"] = (r.get("predicted") or {}).get(first)
    return ["predicted_ms", "macs", "params"]


def stored_sweeps(store) -> list[SweepOutcome]:
    """Every sweep in ``store`` as it stands (spec, points, front), for reports."""
    out = []
    for marker in [r for r in store.sweep_points() if r["point"] == "__spec__"]:
        try:
            spec = SweepSpec.model_validate((marker.get("values_json") or {}).get("spec"))
        except Exception:  # noqa: BLE001 - a marker written by another version: skipped, not fatal
            continue
        rows = [r for r in store.sweep_points(marker["sweep"]) if r["point"] != "__spec__"]
        ok = [r for r in rows if r["status"] == "ok"]
        front = [r["point"] for r in sorted(pareto(ok, front_keys(spec, ok)), key=lambda r: r["macs"])]
        out.append(SweepOutcome(marker["sweep"], spec, rows, 0, 0.0, front, store=str(store.path)))
    return out


def _predict_points(spec: SweepSpec, sweep_id: str, store, say) -> None:
    """Each valid point's predicted latency per backend, from block tables measured once per distinct piece."""
    from emobench.environment import default_threads
    from emobench.runs.predict import predict

    m = spec.measure
    todo = [r for r in store.sweep_points(sweep_id)
            if r["status"] == "ok" and any(b not in (r.get("predicted") or {}) for b in m.backends)]
    if not todo:
        return
    threads = m.threads or default_threads()
    by_ref = {r["reference"]: r for r in todo}
    for p in predict(list(by_ref), m.backends, threads, store, m.form, progress=say, method=m.predict_method):
        store.update_sweep_point(sweep_id, by_ref[p.model]["point"], predicted={p.backend: p.predicted_ms})


def _measure_front(spec: SweepSpec, sweep_id: str, front: list[dict], store, say, ray: str | None = None) -> int:
    """Each front point not yet measured on a backend, with ``bench``'s methodology (rounds interleaved, parity
    first); the records are stored like any bench record and each point notes its record per backend. On Ray,
    one task per point, at most one measuring per node, each record stored as its task completes."""
    from emobench.results.record import BenchRecord
    from emobench.runs.bench import BenchPlan, run_bench

    m = spec.measure
    wanted = [r for r in front if any(b not in (r.get("measured") or {}) for b in m.backends)]
    if not wanted:
        return 0
    say(f"measuring {len(wanted)} front point(s)", 0, len(wanted))
    settings = dict(backends=m.backends, forms=[m.form], rounds=m.rounds, min_time=m.min_time,
                    **({"threads": [m.threads]} if m.threads else {}))
    by_ref = {r["reference"]: r for r in wanted}
    done = [0]

    def keep(records: list[BenchRecord], stored: bool = False) -> None:
        for rec in records:
            row = by_ref.get(rec.model)
            if row is None or rec.backend not in m.backends:
                continue
            current = store.sweep_points(sweep_id, row["point"])[0].get("measured") or {}
            if rec.backend in current:
                continue  # a retried task's second result: the point is stored once
            if not stored:
                store.add(rec)
            store.update_sweep_point(sweep_id, row["point"], measured={rec.backend: {
                "uuid": rec.uuid, "status": rec.status, "median_ms": rec.median_ms, "form": rec.form,
                "machine": rec.machine}})
        done[0] += 1
        say(f"measuring {len(wanted)} front point(s)", done[0], len(wanted))

    if ray is not None:
        from emobench.runs.cluster import measure_on_ray

        BenchPlan(models=list(by_ref), **settings).validate()  # a bad setting is one line before any task
        measure_on_ray(ray, list(by_ref), settings, lambda dicts: keep([BenchRecord(**d) for d in dicts]))
        return len(wanted)
    plan = BenchPlan(models=list(by_ref), **settings)
    plan.validate()
    keep(run_bench(plan, store), stored=True)  # run_bench stores each record as its last round ends
    return len(wanted)


# --- output -----------------------------------------------------------------------------------------------------

def sweep_frame(outcome: SweepOutcome):
    """One row per point: its values, status, counts, receptive field and any measured medians."""
    import pandas as pd

    front = set(outcome.front)
    backends = outcome.spec.measure.backends
    rows = []
    for r in outcome.rows:
        row = {"point": r["point"], **{f"{k}": v for k, v in (r["values_json"] or {}).items()}, "status": r["status"],
               "params": r["params"], "MACs": r["macs"], "activations": r["activations"], "rf": r["rf"],
               "first global": r["first_global"], "front": r["point"] in front}
        for b in backends:
            m = (r.get("measured") or {}).get(b) or {}
            row[f"{b} ms"] = m.get("median_ms")
            if outcome.spec.measure.predict:
                row[f"{b} predicted ms"] = (r.get("predicted") or {}).get(b)
        row["reason"] = r["reason"]
        row["reference"] = r["reference"]
        rows.append(row)
    return pd.DataFrame(rows)
