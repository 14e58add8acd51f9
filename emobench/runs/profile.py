"""``emobench profile``: parameters, MACs from three counters, activations, peak memory, per-layer costs.

Every metric carries its unit, the method that produced it and a status (torchscan's report discipline):
``complete``, ``partial`` (a lower bound: some operations were not counted), ``unavailable`` (the method
failed; the note says why) or ``skipped`` (not requested, or no such device).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import torch

from emobench.columns import Column, machine_frame
from emobench.environment import check_thread_counts
from emobench.errors import EmobenchError
from emobench.nn.registry import family_of
from emobench.measure.counters import CountResult, ModuleRecord, count_emobench

#: /2: layer keys snake_case (macs, fvcore_macs); schema in "meta". /3: the layers' ``output`` text ("1x24x112x112")
#: became the numbers ``output_c``, ``output_h``, ``output_w``
SCHEMA = "emobench.profile/3"
#: Counters disagreeing with emobench's own count by more than this (relative) get a warning.
GAP_WARNING = 0.005
#: the per-layer table's columns (ModelProfile.layers): screen label, JSON/CSV key, unit
LAYER_COLUMNS = (
    Column("module", "module"), Column("part", "part"), Column("type", "type"), Column("depth", "depth"),
    Column("output_c", "C", "channels"), Column("output_h", "H", "pixels"), Column("output_w", "W", "pixels"),
    Column("params", "params", "count"), Column("macs", "MACs", "MACs"), Column("fvcore_macs", "fvcore MACs", "MACs"),
    Column("share", "share", "fraction of the model's MACs"),
)


@dataclass
class Metric:
    value: float | int | None
    unit: str
    method: str
    status: str = "complete"
    note: str = ""


@dataclass
class ModelProfile:
    model: str
    form: str
    input_shape: tuple[int, ...]
    metrics: dict[str, Metric]
    counters: list[CountResult]
    layers: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    #: params and MACs per part (backbone / neck / head) of a down-stream model; empty for a classifier
    parts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["part", "modules", "params", "MACs", "share"]))

    def metrics_frame(self) -> pd.DataFrame:
        rows = [{"model": self.model, "metric": k, **asdict(m)} for k, m in self.metrics.items()]
        return pd.DataFrame(rows, columns=["model", "metric", "value", "unit", "method", "status", "note"])

    def counters_frame(self) -> pd.DataFrame:
        own = self.counters[0].macs
        rows = []
        for c in self.counters:
            rows.append(
                {
                    "model": self.model,
                    "counter": c.counter,
                    "MACs": c.macs,
                    "FLOPs (2×MACs)": None if c.macs is None else 2 * c.macs,
                    "gap vs emobench": None if c.macs is None or not own else (c.macs - own) / own,
                    "MACs as shipped": c.macs_without_handles,
                    "emobench handles": ", ".join(c.handles),
                    "uncounted ops": ", ".join(c.uncounted),
                    "status": c.status,
                }
            )
        return pd.DataFrame(rows)

    def layers_table(self) -> pd.DataFrame:
        """The per-layer table under its JSON/CSV keys (``macs``, ``fvcore_macs``; :data:`LAYER_COLUMNS`)."""
        return machine_frame(self.layers, LAYER_COLUMNS)[0]

    def to_dict(self) -> dict[str, Any]:
        own = self.counters[0].macs
        return {
            "model": self.model,
            "form": self.form,
            "input_shape": list(self.input_shape),
            "metrics": {k: asdict(m) for k, m in self.metrics.items()},
            "counters": [
                {
                    "counter": c.counter,
                    "method": c.method,
                    "unit": "MACs",
                    "macs": c.macs,
                    "flops": None if c.macs is None else 2 * c.macs,
                    "relative_gap_vs_emobench": None if c.macs is None or not own else (c.macs - own) / own,
                    "macs_without_emobench_handles": c.macs_without_handles,
                    "emobench_handles": c.handles,
                    "uncounted_ops": c.uncounted,
                    "not_counted_by_convention": c.not_counted_by_convention,
                    "by_operator": c.by_operator,
                    "status": c.status,
                    "error": c.error,
                }
                for c in self.counters
            ],
            "layers": self.layers_table().to_dict(orient="records"),
            "parts": self.parts.rename(columns={"MACs": "macs"}).to_dict(orient="records"),
            "warnings": self.warnings,
        }


def _part_of(model: torch.nn.Module, name: str) -> str | None:
    """The part (backbone / neck / head …) a module belongs to, for down-stream models (their family's record)."""
    family = family_of(model)
    return family.parts.get(name.split(".")[0]) if family is not None and family.parts and name else None


def _layers(model: torch.nn.Module, records: dict[str, ModuleRecord], counters: list[CountResult], depth: int) -> pd.DataFrame:
    own_total = counters[0].macs or 0
    fvcore = counters[1].by_module if counters[1].macs is not None else {}
    rows = []
    for name, module in model.named_modules():
        level = name.count(".") + 1 if name else 0
        if not name or level > depth:
            continue
        rec = records[name]
        params = sum(p.numel() for p in module.parameters())
        rows.append(
            {
                "module": name,
                "part": _part_of(model, name),
                "type": rec.type,
                "depth": level,
                **_output_size(rec.output_shape),
                "params": params,
                "MACs": rec.macs,
                "fvcore MACs": fvcore.get(name),
                "share": rec.macs / own_total if own_total else None,
            }
        )
    df = pd.DataFrame(rows, columns=["module", "part", "type", "depth", "output_c", "output_h", "output_w", "params",
                                     "MACs", "fvcore MACs", "share"])
    for col in ("output_c", "output_h", "output_w"):  # whole numbers; None where there is none (never 24.0)
        df[col] = pd.Series([None if v is None or pd.isna(v) else int(v) for v in df[col]], index=df.index, dtype=object)
    return df


def _output_size(shape: tuple[int, ...] | None) -> dict[str, int | None]:
    """Channels, height and width of a module's output: all three for an (N, C, H, W) map, the channels
    (features) alone for (N, C), none for any other output (tokens, several tensors)."""
    shape = tuple(shape or ())
    c = shape[1] if len(shape) in (2, 4) else None
    h, w = shape[2:] if len(shape) == 4 else (None, None)
    return {"output_c": c, "output_h": h, "output_w": w}


def _parts(model: torch.nn.Module, records: dict[str, ModuleRecord], counters: list[CountResult]) -> pd.DataFrame:
    """Params and MACs per part (backbone / neck / head) for models that declare ``parts``; empty otherwise.
    Parts are whole top-level children, so they sum to the model's totals (asserted in the tests)."""
    own_total = counters[0].macs or 0
    totals: dict[str, dict] = {}
    for name, module in model.named_children():
        part = _part_of(model, name)
        if part is None:
            continue
        row = totals.setdefault(part, {"part": part, "modules": [], "params": 0, "MACs": 0})
        row["modules"].append(name)
        row["params"] += sum(p.numel() for p in module.parameters())
        row["MACs"] += records[name].macs if name in records else 0
    rows = [{**r, "modules": ", ".join(r["modules"]), "share": r["MACs"] / own_total if own_total else None}
            for r in totals.values()]
    return pd.DataFrame(rows, columns=["part", "modules", "params", "MACs", "share"])


def _warnings(counters: list[CountResult]) -> list[str]:
    own = counters[0]
    out = []
    for c in counters:
        if c.macs is None:
            out.append(f"{c.counter} could not count: {c.error}")
            continue
        if c.uncounted:
            out.append(f"{c.counter}: operations still uncounted (the total is a lower bound): {', '.join(c.uncounted)}")
        if c.macs_without_handles is not None and c.macs_without_handles != c.macs:
            missed = c.macs - c.macs_without_handles
            out.append(
                f"{c.counter} as shipped reports {c.macs_without_handles:,} MACs: it misses {missed:,} "
                f"({', '.join(c.handles)}), added by emobench's handles"
            )
        if c is own or not own.macs:
            continue
        gap = (c.macs - own.macs) / own.macs
        if abs(gap) > GAP_WARNING:
            reason = ""
            if own.bias_adds and c.macs - own.macs == own.bias_adds:
                reason = f": exactly the {own.bias_adds:,} bias additions it counts and emobench/fvcore do not"
            out.append(f"{c.counter} differs from emobench by {gap:+.2%}{reason}")
    return out


#: fvcore's and ptflops' counts of zoo models, by configuration, input shape, form, model and counter code and
#: the counters' versions: their jit trace and hooked forward are most of ``profile``'s counting time, and the
#: same model counts the same. emobench's own count, whose per-module records the tables read, is always run.
CROSSCHECK_CACHE = "crosscheck_counts.json"
CACHED_NOTE = " (cached: the same model code, configuration, input and counter versions counted before)"


def _crosscheck_key(ref, shape: tuple[int, ...], fused: bool) -> str | None:
    """The cache key of a zoo model's cross-check counts (None for anything else: a factory's code is not hashed,
    so its counts are never reused)."""
    if getattr(ref, "entry", None) is None:
        return None
    import hashlib
    import json
    from importlib.metadata import PackageNotFoundError, version

    from emobench.paths import source_fingerprint

    try:
        versions = {name: version(name) for name in ("fvcore", "ptflops")}
    except PackageNotFoundError:
        return None
    blob = json.dumps({"model": ref.identity(), "shape": list(shape), "fused": fused, "torch": torch.__version__,
                       **versions}, sort_keys=True, default=str)
    return hashlib.sha256((blob + source_fingerprint("nn", "measure")).encode()).hexdigest()


def _crosscheck_counts(model: torch.nn.Module, x: torch.Tensor, key: str | None) -> list[CountResult]:
    """fvcore's and ptflops' counts, from the cache when ``key`` was counted before (their method says so);
    a count that failed is never cached (the next run tries again)."""
    from emobench.measure.counters import count_fvcore, count_ptflops
    from emobench.paths import read_cache, update_cache

    if key is not None:
        cached = read_cache(CROSSCHECK_CACHE).get(key)
        try:
            return [CountResult(**{**c, "method": c["method"] + CACHED_NOTE}) for c in cached]
        except (TypeError, KeyError):  # missing or from another layout: counted again
            pass
    counts = [count_fvcore(model, x), count_ptflops(model, x)]
    if key is not None and all(c.macs is not None for c in counts):
        update_cache(CROSSCHECK_CACHE, {key: [asdict(c) for c in counts]})
    return counts


def profile_model(
    name: "str | torch.nn.Module",
    resolution: tuple[int, int] | None = None,
    batch: int = 1,
    depth: int = 1,
    fused: bool = False,
    latency: bool = True,
    memory: bool = True,
    threads: int | None = None,
    checkpoint: str | None = None,
    *,
    input_size: tuple[int, ...] | None = None,
    label: str | None = None,
    preflight: bool = True,
) -> ModelProfile:
    """Profile one model on a seeded random input.

    ``name`` is a model reference (a zoo name, ``timm:NAME``, ``torchvision:NAME``, ``package.module:factory``,
    ``file.py:factory``, with ``@HxW``; see :mod:`emobench.models.references`) or an ``nn.Module``. The input is
    ``input_size`` ((C, H, W) or (H, W)) if given, else the reference's ``@HxW``, else ``resolution``, else the
    model's default. ``label`` names a module in the output (default: its reference or class name)."""
    from emobench.models.budget import check_fits
    from emobench.models.references import module_input_size, resolve

    if depth < 0:
        raise EmobenchError(f"depth must be >= 0, got {depth}")
    if threads is not None:
        check_thread_counts(threads)
    if input_size is not None:
        if len(input_size) not in (2, 3) or min(input_size) < 1:
            raise EmobenchError(f"input_size is (C, H, W) or (H, W), positive; got {tuple(input_size)}")
        resolution = tuple(input_size[-2:])
    ref = None
    if isinstance(name, torch.nn.Module):
        model = name
        (c, h, w), size_source = module_input_size(model)
        if input_size is not None and len(input_size) == 3:
            c = input_size[0]
        if resolution is not None:
            h, w = resolution
        if batch < 1:
            raise EmobenchError(f"batch must be >= 1, got {batch}")
        shape = (batch, c, h, w)
        label = label or getattr(model, "model_reference", None) or type(model).__name__
        model = copy.deepcopy(model).eval()  # the caller's module keeps its mode, weights and hooks
        if checkpoint is not None:
            from emobench.models.checkpoint import load_checkpoint

            load_checkpoint(model, checkpoint)
    else:
        ref = resolve(name)
        if input_size is not None and ref.size is not None:
            ref = ref.without_size()  # an explicit input_size wins
        shape = ref.input_shape(resolution, batch)
        if input_size is not None and len(input_size) == 3:
            shape = (batch, input_size[0], *shape[2:])
        if preflight:  # refused before anything is allocated
            check_fits(ref, shape, copies=2 if fused else 1)
        model = ref.build(checkpoint)
        size_source = model.input_size_source
        label = label or ref.text
    # an input the module does not declare is said, not silently assumed
    size_notes = [f"input {'x'.join(map(str, shape[1:]))}: {size_source}"] if (
        resolution is None and size_source.startswith("assumed")) else []
    if fused:
        from emobench.nn import fuse

        model = fuse(model)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))

    try:
        own, records = count_emobench(model, x)
        counters = [own, *_crosscheck_counts(model, x, None if checkpoint else _crosscheck_key(ref, shape, fused))]
    except (Exception, SystemExit):  # KeyboardInterrupt propagates
        from emobench.models.forward import forward

        with torch.no_grad():
            forward(model, x, label)  # the model failing on its own is the user's input: one line
        raise  # the model runs, the counter failed: emobench's bug, with its traceback
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    form = "fused" if fused else "reference"
    count_method = own.method
    metrics: dict[str, Metric] = {
        "params": Metric(n_params, "count", "sum of parameter numel" + (" (derived by fusion)" if fused else "")),
        "params_trainable": Metric(n_train, "count", "parameters with requires_grad"),
        "param_memory_fp32": Metric(n_params * 4, "bytes", "params × 4"),
        "param_memory_fp16": Metric(n_params * 2, "bytes", "params × 2"),
        "param_memory_int8": Metric(n_params, "bytes", "params × 1 (weights only; no quantisation scales)"),
        "macs": Metric(own.macs, "MACs", count_method, own.status),
        "flops": Metric(2 * own.macs if own.macs is not None else None, "FLOPs", "2 × MACs (emobench count)", own.status),
    }
    metrics["activations"] = Metric(own.activations, "elements", "emobench: elements output by convolutions and "
                                    "matrix products (fvcore ActivationCountAnalysis's convention, one trace fewer)",
                                    own.status)

    if memory:
        from emobench.measure.memory import cpu_peak_bytes, cuda_peak_bytes

        metrics["peak_memory_cpu"] = Metric(
            cpu_peak_bytes(model, x), "bytes", "live tensor storages during one forward (aten dispatch; excl. params, input, kernel scratch)"
        )
        if torch.cuda.is_available():
            metrics["peak_memory_cuda"] = Metric(
                cuda_peak_bytes(model.cuda(), x.cuda()), "bytes", "torch.cuda.max_memory_allocated over one forward"
            )
            model, x = model.cpu(), x.cpu()
        else:
            metrics["peak_memory_cuda"] = Metric(None, "bytes", "torch.cuda.max_memory_allocated", "skipped", "no CUDA device")
    if latency:
        from emobench.measure.latency import quick_latency

        t = quick_latency(model, x, threads)
        metrics["latency_cpu"] = Metric(
            t.median_s * 1e3, "ms", f"eager {form}, median of {t.runs} calls in {t.min_time:g} s after {t.warmup} warm-up calls "
            f"(bench's timing loop), {t.threads} threads",
            note=f"IQR {t.iqr_s * 1e3:.3f} ms; quick figure, see `emobench bench`",
        )
    layers = _layers(model, records, counters, depth)
    return ModelProfile(label, form, shape, metrics, counters, layers, [*size_notes, *_warnings(counters)],
                        _parts(model, records, counters))


def profile_models(models: list, resolution: tuple[int, int] | None = None, batch: int = 1, depth: int = 1,
                   fused: bool = False, counts_only: bool = False, threads: int | None = None,
                   checkpoint: str | None = None, progress=None) -> list[ModelProfile]:
    """:func:`profile_model` for each of ``models``, every reference resolved and its input checked against the
    memory the machine has before the first is profiled; ``progress(label, done)`` as they go."""
    from emobench.models.budget import check_fits
    from emobench.models.references import resolve

    if threads is not None:
        check_thread_counts(threads)
    refs = [resolve(m) if not isinstance(m, torch.nn.Module) else m for m in models]
    for ref in refs:
        if not isinstance(ref, torch.nn.Module):
            check_fits(ref, ref.input_shape(resolution, batch), copies=2 if fused else 1)
    results = []
    for done, ref in enumerate(refs):
        if progress:
            progress(f"profiling {getattr(ref, 'text', type(ref).__name__)}", done)
        results.append(profile_model(ref, resolution, batch, depth, fused, latency=not counts_only,
                                     memory=not counts_only, threads=threads, checkpoint=checkpoint, preflight=False))
    return results
