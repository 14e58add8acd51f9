"""``emobench train-cost``: what one training step of a model costs — forward and backward MACs counted per
operator and per layer, peak training memory split into its parts, the step's time split into forward, backward
and optimizer — and a paper-scale estimate from those figures.

Every figure is a :class:`~emobench.runs.profile.Metric` (value, unit, method, status). The three parts run on
fresh copies of the model, so counting, memory and timing never see each other's state.
"""

from __future__ import annotations

import copy
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import pandas as pd
import torch

from emobench.columns import Column, machine_frame
from emobench.environment import check_thread_counts, cpu_name, environment
from emobench.errors import EmobenchError
from emobench.measure import training
from emobench.measure.timing import TimingStats, relative_range, summarize
from emobench.results.record import BenchRecord
from emobench.runs.profile import Metric

SCHEMA = "emobench.train/1"
#: the per-layer table (TrainCost.layers): screen label, JSON/CSV key, unit
LAYER_COLUMNS = (
    Column("module", "module"), Column("type", "type"), Column("depth", "depth"), Column("params", "params", "count"),
    Column("forward_macs", "forward MACs", "MACs"), Column("backward_macs", "backward MACs", "MACs"),
    Column("backward_forward", "bwd / fwd", "ratio"),
)
OPERATOR_COLUMNS = (
    Column("operator", "operator"), Column("phase", "phase"), Column("macs", "MACs", "MACs"),
    Column("share", "share", "fraction of the step's MACs"),
)
NORM_OPERATORS = ("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                  "native_layer_norm", "native_group_norm", "native_batch_norm_backward",
                  "native_layer_norm_backward", "native_group_norm_backward")


@dataclass(frozen=True)
class Recipe:
    """The inputs of a paper-scale estimate. The defaults are the EMO recipe (../shared/docs/emo_spec.md §6:
    300 epochs at batch 2048, drop_last) on ImageNet-1k's training set (1,281,167 images)."""

    epochs: int = 300
    images: int = 1_281_167
    batch: int = 2048
    source: str = "EMO recipe (300 epochs, batch 2048, drop_last) on ImageNet-1k train (1,281,167 images)"


@dataclass
class TrainCost:
    model: str
    input_shape: tuple[int, ...]
    settings: dict[str, Any]
    metrics: dict[str, Metric]
    layers: pd.DataFrame
    operators: pd.DataFrame
    estimate: dict[str, Any]
    uncounted: dict[str, list[str]]
    warnings: list[str] = field(default_factory=list)
    step_stats: TimingStats | None = None  #: the timed steps' statistics (None with counts only)

    def metrics_frame(self) -> pd.DataFrame:
        rows = [{"model": self.model, "metric": k, **asdict(m)} for k, m in self.metrics.items()]
        return pd.DataFrame(rows, columns=["model", "metric", "value", "unit", "method", "status", "note"])

    def layers_table(self) -> pd.DataFrame:
        return machine_frame(self.layers, LAYER_COLUMNS)[0]

    def operators_table(self) -> pd.DataFrame:
        return machine_frame(self.operators, OPERATOR_COLUMNS)[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "settings": self.settings,
            "metrics": {k: asdict(m) for k, m in self.metrics.items()},
            "estimate": self.estimate,
            "uncounted_ops": self.uncounted,
            "operators": self.operators_table().to_dict(orient="records"),
            "layers": self.layers_table().to_dict(orient="records"),
            "warnings": self.warnings,
        }


def _counts(model: torch.nn.Module, x: torch.Tensor, target, dtype: str, depth: int) -> tuple[dict[str, Metric], pd.DataFrame, pd.DataFrame, dict]:
    count = training.count_train_step(copy.deepcopy(model), x, target, dtype)
    fwd, bwd = count.forward, count.backward
    method = "aten dispatch over forward + loss + backward (emobench formulas; backward conventions in emobench.measure.formulas)"
    status = "partial" if fwd.uncounted or bwd.uncounted else "complete"
    step = fwd.macs + bwd.macs
    metrics = {
        "forward_macs": Metric(fwd.macs, "MACs", method, "partial" if fwd.uncounted else "complete"),
        "backward_macs": Metric(bwd.macs, "MACs", method, "partial" if bwd.uncounted else "complete"),
        "step_macs": Metric(step, "MACs", "forward + backward", status),
        "step_flops": Metric(2 * step, "FLOPs", "2 × MACs", status),
        "backward_forward_ratio": Metric(count.ratio, "ratio", "backward MACs / forward MACs", status),
    }
    # what the usual shortcuts would have said
    metrics["estimate_2x_forward_flops"] = Metric(
        6 * fwd.macs, "FLOPs", "3 × forward FLOPs: the 'backward = 2 × forward' estimate (DeepSpeed's profiler)",
        note=f"{(6 * fwd.macs) / (2 * step) - 1:+.2%} vs counted" if step else "")
    metrics.update(_torch_flop_counter(model, x, target, dtype, count))
    operators = pd.DataFrame(
        [{"operator": op, "phase": phase, "MACs": n, "share": n / step if step else None}
         for phase, c in (("forward", fwd), ("backward", bwd)) for op, n in sorted(c.by_operator.items(), key=lambda kv: -kv[1])],
        columns=["operator", "phase", "MACs", "share"])
    rows = []
    for name, module in model.named_modules():
        level = name.count(".") + 1 if name else 0
        if level > depth:
            continue
        macs = count.by_module.get(name, {"forward": 0, "backward": 0})
        rows.append({"module": name or "(model)", "type": type(module).__name__, "depth": level,
                     "params": sum(p.numel() for p in module.parameters()),
                     "forward MACs": macs["forward"], "backward MACs": macs["backward"],
                     "bwd / fwd": macs["backward"] / macs["forward"] if macs["forward"] else None})
    layers = pd.DataFrame(rows, columns=["module", "type", "depth", "params", "forward MACs", "backward MACs", "bwd / fwd"])
    uncounted = {"forward": sorted(fwd.uncounted), "backward": sorted(bwd.uncounted)}
    return metrics, layers, operators, uncounted


def _torch_flop_counter(model, x, target, dtype: str, count: training.TrainCount) -> dict[str, Metric]:
    """torch's own FlopCounterMode over the same step: it counts products (mm, conv, attention) and not
    normalisations, so it is compared with emobench's count less the norms."""
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model).train()
    try:
        with FlopCounterMode(display=False) as counter:
            with training.autocast(dtype, x.device.type):
                loss = training.loss_of(m(x), target)
            loss.backward()
        flops = int(counter.get_total_flops())
    except Exception as err:  # noqa: BLE001 - a third-party counter failing is reported, not raised
        return {"torch_flop_counter_flops": Metric(None, "FLOPs", "torch.utils.flop_counter.FlopCounterMode",
                                                   "unavailable", str(err).splitlines()[0])}
    norms = sum(n for c in (count.forward, count.backward) for op, n in c.by_operator.items() if op in NORM_OPERATORS)
    ours = 2 * (count.forward.macs + count.backward.macs - norms)
    gap = (flops - ours) / ours if ours else 0.0
    note = f"emobench without norms: {ours:,} FLOPs ({gap:+.2%})"
    if count.ungrouped_extra and flops == ours + 2 * count.ungrouped_extra:
        note += ("; the gap is exactly torch counting each grouped convolution's weight gradient as an ungrouped "
                 "one (× groups); emobench counts it per group")
    return {"torch_flop_counter_flops": Metric(
        flops, "FLOPs", "torch.utils.flop_counter.FlopCounterMode over forward + backward (no normalisations)",
        note=note)}


def _memory(model, x, target, optimizer: str, dtype: str) -> dict[str, Metric]:
    mem = training.train_memory(copy.deepcopy(model), x, target, optimizer, dtype)
    live = "live tensor storages at the aten dispatch level (kernel scratch not seen)"
    metrics = {
        "memory_parameters": Metric(mem.parameters, "bytes", "numel × element size of the parameters"),
        "memory_gradients": Metric(mem.gradients, "bytes", "the .grad tensors after backward"),
        "memory_optimizer_state": Metric(mem.optimizer_state, "bytes", f"{optimizer} state tensors after a step"),
        "memory_activations": Metric(mem.activations, "bytes", f"created by the forward, live when it ends: {live}",
                                     note=f"saved for backward {mem.activations_saved:,}, output and loss "
                                          f"{mem.output_and_loss:,}, other {mem.other:,}"),
        "memory_activations_saved": Metric(mem.activations_saved, "bytes",
                                           "storages autograd saved for backward (saved_tensors_hooks), counted"),
        "peak_memory_cpu": Metric(mem.peak, "bytes", f"parameters, buffers and optimizer state + the step's peak of {live}",
                                  note=f"the step itself peaked at {mem.step_peak:,} (activations, gradients, "
                                       "optimizer temporaries)"),
    }
    if torch.cuda.is_available():
        peak = training.cuda_train_peak(copy.deepcopy(model).cuda(), x.cuda(),
                                        None if target is None else target.cuda(), optimizer, dtype)
        metrics["peak_memory_cuda"] = Metric(peak, "bytes", "torch.cuda.max_memory_allocated over a steady-state step")
    else:
        metrics["peak_memory_cuda"] = Metric(None, "bytes", "torch.cuda.max_memory_allocated", "skipped", "no CUDA device")
    return metrics


def _times(model, x, target, optimizer: str, dtype: str, steps: int, warmup: int, threads: int | None,
           compile_: bool, progress) -> tuple[dict[str, Metric], TimingStats, int]:
    """The step's phases timed on a copy: their metrics, the whole step's statistics, the threads it ran with."""
    m = copy.deepcopy(model)
    if compile_:
        m = torch.compile(m)
    times = training.time_steps(m, x, target, optimizer, dtype, steps, warmup, threads, progress)
    how = f"median of {steps} timed steps after {warmup} untimed, {times.threads} threads" + (", torch.compile" if compile_ else "")
    metrics, stats = {}, {}
    for phase in ("step", "forward", "backward", "optimizer"):
        values = getattr(times, phase)
        stats[phase] = summary = summarize(values)
        spread = relative_range(values)
        metrics[f"{phase}_ms"] = Metric(summary.median_ms, "ms", how + ("" if phase == "step" else f" ({phase} part)"),
                                        note=f"IQR {summary.iqr_ms:.3f} ms, range {spread:.0%} of the median" if spread is not None else "")
    batch = x.shape[0]
    metrics["throughput"] = Metric(batch / (metrics["step_ms"].value / 1e3), "images/s", "batch / median step time")
    metrics["first_step_s"] = Metric(times.first_step_s, "s", "the first step, untimed above" +
                                     (" (compilation included)" if compile_ else ""))
    return metrics, stats["step"], times.threads


def _estimate(metrics: dict[str, Metric], batch: int, recipe: Recipe) -> dict[str, Any]:
    """Training FLOPs (and time on this machine) for the recipe, scaled per image from the measured step.
    Every counted operation scales with the batch, so per-image MACs are exact; the time is a linear
    extrapolation from this batch and these threads, said as such."""
    steps_per_epoch = recipe.images // recipe.batch  # drop_last
    images = steps_per_epoch * recipe.batch * recipe.epochs
    out: dict[str, Any] = {
        "inputs": {**asdict(recipe), "steps_per_epoch": steps_per_epoch, "images_seen": images,
                   "measured_batch": batch},
        "train_flops": 2 * metrics["step_macs"].value * images // batch,
        "train_flops_method": "2 × (forward + backward MACs per image, counted) × images seen (optimizer and "
                              "element-wise work not counted)",
    }
    step = metrics.get("step_ms")
    if step is not None and step.value:
        seconds = step.value / 1e3 / batch * images
        out["time_here_s"] = seconds
        out["time_here_method"] = (f"median step time per image at batch {batch} here × images seen: a linear "
                                   "extrapolation to one machine like this one, an estimate")
    return out


def check_models(models: list[str], resolution: tuple[int, int] | None, batch: int, optimizer: str) -> None:
    """Every model reference resolved and its training step checked against the memory available, before the
    first is measured (a bad second reference never costs the first one's run)."""
    from emobench.models.budget import check_train_fits
    from emobench.models.references import resolve

    if optimizer not in training.OPTIMIZERS:
        raise EmobenchError(f"unknown optimizer '{optimizer}'; known: {', '.join(training.OPTIMIZERS)}")
    for text in models:
        ref = resolve(text)
        check_train_fits(ref, ref.input_shape(resolution, batch), optimizer)


def train_cost(ref_text: str, resolution: tuple[int, int] | None = None, batch: int = 32, optimizer: str = "adamw",
               dtype: str = "fp32", checkpointing: bool = False, compile_: bool = False, steps: int = 10,
               warmup: int = 3, threads: int | None = None, depth: int = 1, counts_only: bool = False,
               recipe: Recipe = Recipe(), checkpoint: str | None = None,
               progress: Callable[[str, int, int], None] | None = None, *, preflight: bool = True) -> TrainCost:
    """The training-step cost of one model reference (see the module docstring); ``progress(label, done,
    total)`` as it goes (count, memory, then each step). ``preflight=False``: the caller has already checked that
    the step fits (:func:`check_models`)."""
    from emobench.models.budget import check_train_fits
    from emobench.models.references import resolve

    if optimizer not in training.OPTIMIZERS:
        raise EmobenchError(f"unknown optimizer '{optimizer}'; known: {', '.join(training.OPTIMIZERS)}")
    if dtype not in training.TRAIN_DTYPES:
        raise EmobenchError(f"unknown training dtype '{dtype}'; known: {', '.join(training.TRAIN_DTYPES)}")
    if threads is not None:
        check_thread_counts(threads)
    for name, value in (("batch", batch), ("steps", steps), ("depth", depth + 1), ("epochs", recipe.epochs),
                        ("images", recipe.images), ("recipe batch", recipe.batch)):
        if value < 1:
            raise EmobenchError(f"{name} must be >= 1, got {value}")
    if warmup < 0:
        raise EmobenchError(f"warmup must be >= 0, got {warmup}")
    total = 1 if counts_only else 2 + warmup + steps
    say = progress or (lambda label, done, total: None)
    ref = resolve(ref_text)
    shape = ref.input_shape(resolution, batch)
    if preflight:
        check_train_fits(ref, shape, optimizer)
    model = ref.build(checkpoint)
    settings: dict[str, Any] = {"optimizer": optimizer, "dtype": dtype, "checkpointing": None, "compile": compile_,
                                "steps": steps, "warmup": warmup, "batch": batch, "threads": None}
    if checkpointing:
        try:
            settings["checkpointing"] = training.enable_checkpointing(model)
        except ValueError as err:
            raise EmobenchError(f"--checkpointing: {err}") from None
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    with torch.no_grad():
        probe = model.eval()(x[:1])
    target = training.random_target(probe, batch)
    settings["loss"] = training.loss_method(probe)
    say(f"counting {ref.text}", 0, total)
    metrics, layers, operators, uncounted = _counts(model, x, target, dtype, depth)
    if checkpointing:
        metrics["backward_macs"].note = "includes the forward recomputed by gradient checkpointing"
    metrics.update(_fvcore_forward(model, x, metrics["forward_macs"].value))
    warnings = [f"{phase}: operations not counted (the total is a lower bound): {', '.join(ops)}"
                for phase, ops in uncounted.items() if ops]
    if not counts_only:
        say(f"memory of {ref.text}", 1, total)
        metrics.update(_memory(model, x, target, optimizer, dtype))
        say(f"timing {ref.text}", 2, total)
        timed, stats, settings["threads"] = _times(model, x, target, optimizer, dtype, steps, warmup, threads,
                                                   compile_, lambda done: say(f"timing {ref.text}", 2 + done, total))
        metrics.update(timed)
    else:
        stats = None
    estimate = _estimate(metrics, batch, recipe)
    return TrainCost(ref.text, tuple(shape), settings, metrics, layers, operators, estimate, uncounted, warnings, stats)


def _fvcore_forward(model, x, own_forward: int) -> dict[str, Metric]:
    """What fvcore (forward only, the counter papers use) says of the same forward in training mode."""
    from emobench.measure.counters import count_fvcore

    fv = count_fvcore(copy.deepcopy(model).train(), x)
    note = f"forward only: {fv.macs / own_forward:.1%} of emobench's forward" if fv.macs and own_forward else ""
    return {"fvcore_forward_macs": Metric(fv.macs, "MACs", fv.method, fv.status, fv.error or note)}


def train_record(cost: TrainCost) -> BenchRecord:
    """The store's record of a timed training step: backend torch, form ``train:OPTIMIZER[+checkpointing]
    [+compile]`` (``form_requested`` "train", so no inference table takes it), the whole cost in ``train``, at
    the threads the steps ran with."""
    s = cost.settings
    threads = s["threads"]
    form = "train:" + s["optimizer"] + ("+checkpointing" if s["checkpointing"] else "") + ("+compile" if s["compile"] else "")
    stats = cost.step_stats
    return BenchRecord(
        model=cost.model, backend="torch", form=form, form_requested="train", batch=cost.input_shape[0],
        threads=threads, resolution=f"{cost.input_shape[2]}x{cost.input_shape[3]}", dtype=s["dtype"], status="ok",
        median_ms=stats.median_ms, mean_ms=stats.mean_ms, p10_ms=stats.p10_ms, p90_ms=stats.p90_ms,
        iqr_ms=stats.iqr_ms, cv=stats.cv, noisy=stats.noisy, runs=stats.runs, throughput=cost.metrics["throughput"].value,
        train=cost.to_dict(), created=time.time(), machine=f"{socket.gethostname()} ({cpu_name()})",
        env=environment(threads), params={**s, "input_shape": list(cost.input_shape)},
    )

