"""The ``emobench`` command line: parses options, calls library functions, renders what they return."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from .errors import EmobenchError

app = typer.Typer(
    help="emobench: how big, how costly, how fast and how far an efficient vision network sees.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
zoo_app = typer.Typer(help="List and inspect the model zoo (zoo/*.toml and EMOBENCH_ZOO_PATH).", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")

# Piped output keeps whole rows instead of folding to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)

ZooDirs = Annotated[
    Optional[list[Path]],
    typer.Option("--zoo", help="An extra folder of zoo files (repeatable; also EMOBENCH_ZOO_PATH).", show_default=False),
]
FormatOpt = Annotated[
    Optional[str],
    typer.Option("--format", "-f", help="table (default on screen), json, csv or md.", show_default=False),
]
MODEL_REFS_HELP = ("Models: zoo names, timm:NAME, torchvision:NAME, package.module:factory or file.py:factory, "
                   "each with optional ,key=value arguments and @H or @HxW input size (e.g. timm:edgenext_xx_small@256).")
OutputOpt = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", help="Write to this file instead of the screen (format from its suffix).", show_default=False),
]


def _format(value: str | None):
    from .render import Format

    if value is None:
        return None
    try:
        return Format(value.lower())
    except ValueError:
        raise EmobenchError(f"unknown format '{value}' (choose table, json, csv or md)") from None


def zoo_scoped(command):
    """Run a command with its ``--zoo`` folders on the zoo search path (and only for its duration)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        from .zoo import extra_zoo_dirs

        with extra_zoo_dirs(kwargs.get("zoo")):
            return command(*args, **kwargs)

    return run


@zoo_app.command("list")
@zoo_scoped
def zoo_list(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'emo_*'.")] = "*",
    family: Annotated[Optional[str], typer.Option(help="Only this family (emo, m2, mobilenetv2, vit, pvt).")] = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Every zoo model: name, family, parameter count, default input and summary. JSON schema: emobench.zoo_list/1."""
    from .render import emit
    from .views import COLUMNS, SCHEMAS
    from .zoo import get_zoo, list_models, zoo_listing

    names = list_models(pattern, family)
    if not names:
        raise EmobenchError(f"no zoo model matches '{pattern}'" + (f" in family '{family}'" if family else ""))
    df = zoo_listing(names)
    emit(df, _format(fmt), output, title=f"emobench zoo ({len(df)} models)", meta={"zoo": [str(d) for d in get_zoo().dirs]},
         console=console, schema=SCHEMAS["zoo_list"], columns=COLUMNS["zoo_list"])


@zoo_app.command("show")
@zoo_scoped
def zoo_show(
    name: Annotated[str, typer.Argument(help="A zoo model, e.g. emo_5m (also emo_5m@256, emo_5m,window=contiguous).")],
    resolution: Annotated[Optional[str], typer.Option("--resolution", "-r", help="Input H or HxW, e.g. 256 or 192x320 (default: the entry's).")] = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """A model's configuration and its block-by-block layout: widths, strides, kernels, attention, output maps.
    JSON schema: emobench.zoo_show/1. (Built on torch's meta device: nothing is allocated at any size.)"""
    import json

    from .architecture import block_table
    from .models import parse_resolution
    from .references import parse_reference
    from .render import Format, emit
    from .views import COLUMNS, SCHEMAS

    ref = parse_reference(name)
    if not ref.is_zoo:
        raise EmobenchError(f"zoo show describes zoo entries; for {name} use 'emobench profile {name} --depth 2' "
                            f"(its layers, parameters and MACs)")
    entry = ref.entry
    res = ref.size or (parse_resolution(resolution) if resolution else None)
    df = block_table(entry, res)
    c, h, w = entry.input_size
    if res:
        h, w = res
    config = entry.config.model_dump(mode="json")
    meta = {
        "name": entry.name, "family": entry.family, "summary": entry.summary, "source": entry.source,
        "file": str(entry.path), "extends": entry.extends, "input": [c, h, w], "config": config,
        "params": int(df["params"].sum()) if entry.family == "m2" else None,
    }
    fmt_ = _format(fmt)
    if fmt_ in (None, Format.table) and output is None:
        console.print(f"[bold]{entry.name}[/] ({entry.family}): {entry.summary}", markup=True, highlight=False)
        origin = f"file: {entry.path}" + (f" (extends {entry.extends})" if entry.extends else "")
        settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in config.items())
        console.print(f"source: {entry.source}\n{origin}\nconfig: {settings}", markup=False, highlight=False)
    emit(df, fmt_, output, title=f"{entry.name} blocks at {c}x{h}x{w}", meta=meta, console=console,
         schema=SCHEMAS["zoo_show"], columns=COLUMNS["zoo_show"])


@zoo_app.command("load")
@zoo_scoped
def zoo_load(
    name: Annotated[str, typer.Argument(help="A zoo model, e.g. emo_1m.")],
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint: net.pth (raw, 'net' or 'net_E'), or .safetensors.")],
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Check that a checkpoint loads into a zoo model (keys and shapes), without executing anything in it.
    JSON schema: emobench.zoo_load/1."""
    import pandas as pd

    from .checkpoint import load_checkpoint
    from .models import check_fits, create_model
    from .render import Format, emit
    from .views import COLUMNS, SCHEMAS
    from .zoo import get_entry

    entry = get_entry(name)
    check_fits(entry, (1, *entry.input_size), run=False)
    model = create_model(name)
    where = load_checkpoint(model, checkpoint)
    n = sum(p.numel() for p in model.parameters())
    fmt_ = _format(fmt)
    if fmt_ in (None, Format.table) and output is None:
        console.print(f"{checkpoint}: loaded into {name} from {where}: {len(model.state_dict())} tensors, {n:,} parameters")
        return
    row = {"model": name, "checkpoint": str(checkpoint), "loaded_from": where, "tensors": len(model.state_dict()), "params": n}
    emit(pd.DataFrame([row]), fmt_, output, title=f"{checkpoint} into {name}", console=console,
         schema=SCHEMAS["zoo_load"], columns=COLUMNS["zoo_load"])


@app.command("profile")
@zoo_scoped
def profile(
    models: Annotated[list[str], typer.Argument(help=MODEL_REFS_HELP)],
    resolution: Annotated[Optional[str], typer.Option("--resolution", "-r", help="Input H or HxW, e.g. 224 or 192x320 (default: the model's own; blocks keep their channels; REF@HxW wins for that model).")] = None,
    batch: Annotated[int, typer.Option("--batch", "-b", min=1, help="Batch size.")] = 1,
    depth: Annotated[int, typer.Option("--depth", "-d", min=0, help="Per-layer table down to this module depth (0: none).")] = 1,
    fused: Annotated[bool, typer.Option("--fused", help="Profile the fused inference form instead of the reference form.")] = False,
    counts_only: Annotated[bool, typer.Option("--counts-only", help="Parameters and MACs only: skip memory and latency.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", "-t", min=1, help="CPU threads for the latency figure (default: torch's; at most the core count).")] = None,
    layers: Annotated[bool, typer.Option("--layers", help="With --format csv: the per-layer table instead of the metrics.")] = False,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Weights to load first (official net.pth layouts or .safetensors).")] = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Parameters, MACs from three counters (emobench, fvcore, ptflops) side by side, activations, peak memory,
    a quick latency figure and a per-layer table.

    MACs count one multiply-accumulate as 1 (FLOPs = 2 × MACs); emobench registers handles for what fvcore and
    ptflops skip (scaled_dot_product_attention, norms) and reports their own figures too. JSON schema:
    emobench.profile/2 (every metric has value, unit, method, status). Inputs the machine cannot hold are
    refused before anything is allocated."""
    import os

    from rich.progress import Progress

    from .models import check_fits, parse_resolution
    from .environment import environment
    from .profile import profile_model
    from .references import resolve
    from .views import render_profiles

    fmt_ = _format(fmt)
    res = parse_resolution(resolution) if resolution else None
    cores = os.cpu_count() or 1
    if threads is not None and threads > cores:
        raise EmobenchError(f"{threads} threads on a machine with {cores} cores would time the scheduler, not the model "
                            f"(use -t 1..{cores})")
    for name in models:  # every model and input checked before the first is profiled
        ref = resolve(name)
        check_fits(ref, ref.input_shape(res, batch), copies=2 if fused else 1)
    results = []
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task("profiling", total=len(models))
        for name in models:
            progress.update(task, description=f"profiling {name}")
            results.append(
                profile_model(name, res, batch, depth, fused, latency=not counts_only, memory=not counts_only,
                              threads=threads, checkpoint=checkpoint)
            )
            progress.advance(task)
    render_profiles(results, fmt_, output, environment(), layers, console)


StoreOpt = Annotated[
    Optional[Path],
    typer.Option("--store", help="Results store (SQLite file; default: the user data folder, or EMOBENCH_STORE).", show_default=False),
]
NoStoreOpt = Annotated[bool, typer.Option("--no-store", help="Do not record the results.")]


CalibrationOpt = Annotated[Optional[Path], typer.Option("--calibration", help="int8: calibrate on images of this folder (ImageFolder or flat; a seeded sample of --calibration-size). Default: 32 seeded random inputs, flagged as such in the record.", show_default=False)]
CalibrationSizeOpt = Annotated[int, typer.Option("--calibration-size", min=1, help="int8: images sampled from --calibration.")]
MinAgreementOpt = Annotated[float, typer.Option("--min-agreement", min=0, max=1, help="int8 parity: least top-1 agreement with eager fp32 torch (on the evaluation or calibration images).")]
MinCosineOpt = Annotated[float, typer.Option("--min-cosine", min=-1, max=1, help="int8 parity: least mean cosine similarity of the logits to eager fp32 torch's.")]


def _exit_on_failures(records) -> None:
    """A measurement that failed parity or errored: each named on stderr, exit 1 (bad input stays 2)."""
    from .bench import failed

    bad = failed(records)
    if bad:
        for r in bad:
            err_console.print(f"[red]{r.status}:[/] {escape(f'{r.model} {r.backend} {r.form}: {r.error}')}", highlight=False)
        raise typer.Exit(1)


def _run_stored(store: Path | None, no_store: bool, work):
    """``work(db, step)`` under a transient progress bar, with the results store open (None with --no-store);
    returns (what it returned, the store's path or None). An unwritable store is refused before any work."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .store import ResultStore

    db = None if no_store else ResultStore(store)  # opening proves a write goes through
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    try:
        with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
            task = progress.add_task("preparing", total=None)

            def step(label: str, done: int, total: int) -> None:
                progress.update(task, description=label, completed=done, total=total)

            return work(db, step), None if db is None else str(db.path)
    finally:
        if db is not None:
            db.close()


@app.command("bench")
@zoo_scoped
def bench(
    models: Annotated[list[str], typer.Argument(help=MODEL_REFS_HELP)],
    backend: Annotated[str, typer.Option("--backend", "-B", help="Comma-separated backends, or 'all': torch, torch-cl, torch-compile, onnxruntime, openvino, executorch, litert, cuda, cuda-compile.")] = "torch",
    batch: Annotated[str, typer.Option("--batch", "-b", help="Batch sizes, e.g. 1,8 (throughput for batch > 1).")] = "1",
    threads: Annotated[Optional[str], typer.Option("--threads", "-t", help="CPU thread counts, e.g. 1,2 (default: torch's, at most the core count).")] = None,
    resolution: Annotated[Optional[str], typer.Option("--resolution", "-r", help="Input H or HxW (default: the entry's).")] = None,
    dtype: Annotated[str, typer.Option(help="fp32 (fp32 on every backend); bf16 (torch autocast, OpenVINO where the CPU has it, cuda); fp16 (cuda); int8 (static post-training quantization: executorch, litert, onnxruntime, openvino). Several, comma-separated (fp32,int8), are measured interleaved in one run, so int8 / fp32 is a ratio from one run.")] = "fp32",
    calibration: CalibrationOpt = None,
    calibration_size: CalibrationSizeOpt = 100,
    min_agreement: MinAgreementOpt = 0.9,
    min_cosine: MinCosineOpt = 0.98,
    form: Annotated[str, typer.Option("--form", help="Formulation(s), comma-separated: auto (per backend, the fastest that passes parity), reference, fused, official (the official code's operators), mobile.")] = "auto",
    rounds: Annotated[int, typer.Option(min=1, help="Rounds: each measurement runs this many times in fresh processes, backends alternating; timings are pooled.")] = 3,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed calls before timing, per round.")] = 10,
    min_time: Annotated[float, typer.Option(min=0, help="Time at least this many seconds per measurement and round …")] = 1.0,
    min_runs: Annotated[int, typer.Option(min=1, help="… and at least this many calls.")] = 20,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds one worker process may take before it is killed (an error record).")] = 600.0,
    tolerance: Annotated[Optional[float], typer.Option(min=0, help="Parity tolerance, max |Δ| vs eager fp32 torch (default 1e-4 for fp32).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Weights to load first.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also show what each runtime ran on screen: delegated vs fallback operators, subgraphs, precisions (JSON/CSV always carry it).")] = False,
    store: StoreOpt = None,
    no_store: NoStoreOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Latency on every requested backend, one methodology, one runtime per process.

    Each measurement runs in a fresh worker process: it loads the export (cached per model, weights, form and
    backend version), checks its output against eager fp32 torch on the reference form and in the precision
    asked for, then times warm calls until --min-time and --min-runs are reached. Rounds alternate backends;
    the record pools all rounds (median, p10/p90, IQR, CV, spread between rounds) with the cold start (load,
    first call) and the worker's peak memory. Exit code 1 when a measurement errors or fails parity (reason in
    the note column); every measurement is stored with its environment (see `emobench results`)."""

    import json

    from .bench import (SCHEMA, UNITS, BenchPlan, explain_lines, parse_backends, parse_ints, parse_names,
                        records_frame, records_table, run_bench, screen_frame)
    from .models import parse_resolution
    from .render import Format, emit, format_for

    plan = BenchPlan(
        models=models, backends=parse_backends(backend), batches=parse_ints(batch, "batch"),
        **({"threads": parse_ints(threads, "threads")} if threads else {}),
        resolution=parse_resolution(resolution) if resolution else None, dtype=dtype, forms=parse_names(form),
        rounds=rounds, warmup=warmup, min_time=min_time, min_runs=min_runs, timeout=timeout, tolerance=tolerance,
        checkpoint=str(checkpoint) if checkpoint else None, calibration=str(calibration) if calibration else None,
        calibration_size=calibration_size, min_agreement=min_agreement, min_cosine=min_cosine,
    )
    plan.validate()
    fmt_ = _format(fmt)
    from .models import check_fits
    from .references import resolve

    for name in plan.models:  # one measurement runs at a time: the largest batch of each model must fit
        ref = resolve(name)
        check_fits(ref, ref.input_shape(plan.resolution, max(plan.batches)))
    (records, history), store_path = _run_stored(store, no_store, lambda db, step: (
        run_bench(plan, db, step),
        db.records() if db is not None and plan.dtypes != ["fp32"] else None))  # the fp32 records beside int8
    shown = format_for(fmt_, output)
    if shown in (Format.json, Format.csv):
        # scripts get every field under a stable name (schema emobench.bench/1), explain reports included
        df = records_table(records, history)
        if shown is Format.csv:
            df = df.assign(**{k: [json.dumps(v, sort_keys=True) for v in df[k]] for k in ("env", "params", "explain")})
        meta = {"schema": SCHEMA, "units": UNITS, "store": store_path}
    else:
        df = records_frame(records, history)
        df = screen_frame(df) if shown is Format.table else df
        meta = {"store": store_path}
    emit(df, fmt_, output, title="emobench bench", meta=meta, console=console)
    if explain and fmt_ in (None, Format.table) and output is None:
        for what, summary, fallback in explain_lines(records):
            console.print(f"[bold]{escape(what)}[/]: {escape(summary)}", highlight=False)
            if fallback:
                console.print(f"    fallback: {escape(', '.join(fallback))}", highlight=False)
    if store_path is not None and fmt_ in (None, Format.table) and output is None:
        err_console.print(f"[dim]{sum(r.status != 'skipped' for r in records)} record(s) stored in {store_path}[/]")
    _exit_on_failures(records)


@app.command("eval")
@zoo_scoped
def evaluate(
    model: Annotated[str, typer.Argument(help="A model reference (zoo name, timm:NAME, package.module:factory, …; ,num_classes=N to match the folder).")],
    images: Annotated[Path, typer.Option("--images", help="An ImageFolder: one sub-folder per class, classes in sorted order (or --class-index).")],
    checkpoint: Annotated[Optional[Path], typer.Option(help="Trained weights (torch state dict or .safetensors; never unpickled beyond tensors).")] = None,
    backend: Annotated[str, typer.Option("--backend", "-B", help="Comma-separated backends, or 'all' (see bench).")] = "torch",
    dtype: Annotated[str, typer.Option(help="fp32, or int8 (calibrated on --calibration, else random inputs); fp32,int8 scores both in one run.")] = "fp32",
    batch: Annotated[int, typer.Option("--batch", "-b", min=1, help="Batch size of the exports the images go through.")] = 1,
    threads: Annotated[Optional[int], typer.Option("--threads", "-t", min=1, help="CPU threads (default: torch's, at most the core count).")] = None,
    form: Annotated[str, typer.Option("--form", help="Formulation(s), as for bench (auto: each backend's fastest exact one).")] = "auto",
    class_index: Annotated[Optional[Path], typer.Option("--class-index", help="Class names in index order, one per line (or JSON name → index), as timm's class_map.", show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="At most this many images (in ImageFolder order).", show_default=False)] = None,
    crop_pct: Annotated[Optional[float], typer.Option("--crop-pct", help="Override the centre-crop fraction (default: the model's, else 0.875).", show_default=False)] = None,
    interpolation: Annotated[Optional[str], typer.Option("--interpolation", help="Override the resize: bicubic, bilinear or nearest.", show_default=False)] = None,
    mean: Annotated[Optional[str], typer.Option("--mean", help="Override the normalisation mean, e.g. 0.5,0.5,0.5.", show_default=False)] = None,
    std: Annotated[Optional[str], typer.Option("--std", help="Override the normalisation std.", show_default=False)] = None,
    calibration: CalibrationOpt = None,
    calibration_size: CalibrationSizeOpt = 100,
    min_agreement: MinAgreementOpt = 0.9,
    min_cosine: MinCosineOpt = 0.98,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds one worker process may take before it is killed.")] = 3600.0,
    store: StoreOpt = None,
    no_store: NoStoreOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Top-1/top-5 on an ImageFolder, through eager torch and through each backend's export.

    Images are decoded with Pillow and preprocessed as timm evaluates (shorter side to size / crop_pct, centre
    crop, mean/std: the model's pretrained_cfg, else ImageNet statistics and crop 0.875); unreadable files are
    skipped and counted. Each backend's worker checks parity first, then classifies the same images; the
    record carries top-1, top-5, and top-1 agreement and logit cosine against eager fp32 torch (int8: below
    --min-agreement / --min-cosine it is parity-failed). Exit 1 when a backend errors or fails parity.
    JSON schema: emobench.eval/1."""

    from .bench import parse_backends, parse_names
    from .evaluate import SCHEMA as EVAL_SCHEMA
    from .evaluate import UNITS as EVAL_UNITS
    from .evaluate import eval_frame, eval_plan, eval_table, run_eval
    from .models import check_fits
    from .references import resolve
    from .render import Format, emit, format_for

    def floats(text: str | None, what: str):
        if text is None:
            return None
        try:
            return tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise EmobenchError(f"{what} must be comma-separated numbers, got '{text}'") from None

    preprocess = {"crop_pct": crop_pct, "interpolation": interpolation, "mean": floats(mean, "--mean"), "std": floats(std, "--std")}
    plan = eval_plan(model, str(images), parse_backends(backend), dtype=dtype, batches=[batch], forms=parse_names(form),
                     **({"threads": [threads]} if threads else {}), checkpoint=str(checkpoint) if checkpoint else None,
                     class_index=str(class_index) if class_index else None, limit=limit,
                     preprocess={k: v for k, v in preprocess.items() if v is not None},
                     calibration=str(calibration) if calibration else None, calibration_size=calibration_size,
                     min_agreement=min_agreement, min_cosine=min_cosine, timeout=timeout)
    plan.validate()
    from .measure.images import scan_image_folder

    scan_image_folder(images, class_index)  # a folder without classes fails here, before anything is built
    ref = resolve(model)
    check_fits(ref, ref.input_shape(None, batch))
    fmt_ = _format(fmt)
    records, store_path = _run_stored(store, no_store, lambda db, step: run_eval(plan, db, step))
    shown = format_for(fmt_, output)
    if shown in (Format.json, Format.csv):
        df, meta = eval_table(records), {"units": EVAL_UNITS}
    else:
        df, meta = eval_frame(records), {}
    meta["store"] = store_path
    emit(df, fmt_, output, title=f"emobench eval {model} on {images}", meta=meta, console=console,
         schema=EVAL_SCHEMA if shown in (Format.json, Format.csv) else None)
    skipped = max((r.images_skipped or 0) for r in records) if records else 0
    if skipped and fmt_ in (None, Format.table) and output is None:
        err_console.print(f"[yellow]warning:[/] {skipped} unreadable image file(s) skipped")
    _exit_on_failures(records)


results_app = typer.Typer(help="List, compare, export and merge stored benchmark records.", no_args_is_help=True)
app.add_typer(results_app, name="results")


def _filters(items: list[str] | None) -> dict[str, object]:
    """``field=value`` pairs (values compared as text: ``batch=1``, ``torch_version=2.13.0``; ``cpu_flags=a+b``:
    records having every listed ISA flag)."""
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EmobenchError(f"filters look like field=value (e.g. backend=onnxruntime), got '{item}'")
        out[key.strip()] = value.strip()
    return out


@results_app.command("list")
def results_list(
    filters: Annotated[Optional[list[str]], typer.Argument(help="field=value filters, e.g. model=emo_1m backend=torch cpu_flags=avx512f torch_version=2.13.0.")] = None,
    limit: Annotated[int, typer.Option(help="Show the newest N records (0: all).")] = 50,
    store: StoreOpt = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
) -> None:
    """Stored records, newest last, with their ratio to torch eager where one exists. JSON and CSV carry every
    stored field (schema emobench.bench/1, environment columns and columns unknown to emobench included)."""
    import json

    from .bench import SCHEMA, UNITS, records_frame, records_table
    from .render import Format, emit, format_for
    from .store import ResultStore

    if limit < 0:
        raise EmobenchError(f"--limit takes a count >= 0 (0: all), got {limit}")
    fmt_ = _format(fmt)
    with ResultStore(store, readonly=True) as db:
        df = db.records(**_filters(filters))
        where = str(db.path)
    if limit > 0:
        df = df.tail(limit)
    if format_for(fmt_, output) in (Format.json, Format.csv):
        rows = records_table(df)
        if format_for(fmt_, output) is Format.csv:
            rows = rows.assign(**{k: [json.dumps(v, sort_keys=True) for v in rows[k]] for k in ("env", "params", "explain")})
        emit(rows, fmt_, output, title=f"{len(rows)} record(s)", meta={"store": where, "units": UNITS},
             schema=SCHEMA, console=console)
        return
    view = records_frame(df)
    if not view.empty:
        view.insert(0, "machine", df["machine"].values)
        view.insert(0, "when", pd_time(df["created"]))
    emit(view, fmt_, output, title=f"{len(view)} record(s)", console=console)


def pd_time(seconds):
    import pandas as pd

    return pd.to_datetime(pd.Series(seconds, dtype=float), unit="s").dt.strftime("%Y-%m-%d %H:%M").values


@results_app.command("compare")
def results_compare(
    a: Annotated[str, typer.Argument(help="Baseline filter, e.g. backend=torch (comma-separated field=value).")],
    b: Annotated[str, typer.Argument(help="Candidate filter, e.g. backend=onnxruntime or torch_version=2.13.0.")],
    fail_above: Annotated[Optional[float], typer.Option("--fail-above", help="Exit 1 when a pair is slower beyond its noise by more than this percentage (a CI guard).")] = None,
    store: StoreOpt = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
) -> None:
    """B vs A as latency ratios, matching records on every key the filters leave free (newest measured record
    each), with a verdict: faster / slower when the ratio leaves 1 ± noise (the larger relative IQR or round
    spread of the two records), else same. Filters may name environment columns (torch_version, cpu_model,
    cpu_flags, runtime_version, git_revision, …). JSON schema: emobench.compare/1."""
    from .render import Column, emit
    from .results import compare, regressions
    from .store import ResultStore

    if fail_above is not None and not fail_above >= 0:
        raise EmobenchError(f"--fail-above takes a percentage >= 0, got {fail_above}")
    with ResultStore(store, readonly=True) as db:
        df = compare(db.records(), _filters(a.split(",")), _filters(b.split(",")))
    columns = [Column("a_ms", "A ms", "ms"), Column("b_ms", "B ms", "ms"), Column("ratio", "B / A", "B median / A median"),
               Column("noise", "noise", "relative (IQR / median or round spread, the larger of A and B)"),
               Column("verdict", "verdict")]
    emit(df, _format(fmt), output, title=f"{b} vs {a} (ratio < 1: B is faster)",
         meta={"a": a, "b": b, "fail_above_pct": fail_above}, schema="emobench.compare/1", columns=columns,
         console=console)
    if fail_above is not None:
        slow = regressions(df, fail_above)
        if len(slow):
            err_console.print(f"[red]{len(slow)} pair(s) slower by more than {fail_above:g} % beyond their noise[/]")
            raise typer.Exit(1)


@results_app.command("export")
def results_export(
    output: Annotated[Path, typer.Argument(help="A .csv or .json file.")],
    filters: Annotated[Optional[list[str]], typer.Argument(help="field=value filters.")] = None,
    store: StoreOpt = None,
) -> None:
    """Every stored record with all its fields (environment columns, and columns this emobench does not know,
    included) as CSV or JSON."""
    import json

    from .render import write_text
    from .store import ResultStore

    suffix = output.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise EmobenchError(f"export writes .csv or .json, got '{output.name}'")
    with ResultStore(store, readonly=True) as db:
        df = db.records(**_filters(filters))
    if suffix == ".json":
        records = json.loads(df.to_json(orient="records"))  # NaN → null: valid JSON
        write_text(json.dumps(records, indent=2) + "\n", output)
    else:
        flat = df.assign(**{k: [json.dumps(v, sort_keys=True) for v in df[k]] for k in ("env", "params", "explain")})
        write_text(flat.to_csv(index=False), output)
    console.print(f"{len(df)} record(s) written to {output}")


@results_app.command("merge")
def results_merge(
    sources: Annotated[list[Path], typer.Argument(help="Stores from other machines to merge in.")],
    store: StoreOpt = None,
) -> None:
    """Copy the records of other stores into this one by record id (merging twice adds nothing; records already
    here are never replaced); columns unknown to this emobench come along."""
    from .store import ResultStore

    with ResultStore(store) as db:
        added = db.merge(sources)
        console.print(f"{added} record(s) added to {db.path} ({db.count()} in all)")


@app.command("rf")
@zoo_scoped
def rf(
    model: Annotated[str, typer.Argument(help="A zoo model (network or block), or any model reference (timm:NAME, package.module:factory, file.py:factory; empirical path).")],
    resolution: Annotated[Optional[str], typer.Option("--resolution", "-r", help="Input H or HxW (default: the model's; the empirical path caps large defaults at 256).")] = None,
    se_as_global: Annotated[bool, typer.Option("--se-as-global", help="Count SE's global pool as a global mixing layer (papers do not).")] = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Theoretical receptive field per layer: output size, jump, the exact bounding box of the centre output's
    input pixels (clipped), the unclipped size while the network is translation-equivariant, coverage (the
    fraction of input pixels that reach the centre), and where the centre output / every output becomes global.

    Residual branches are unions; window attention follows the model's partition (grid, contiguous, global).
    Models without exact reach units (other zoo families such as detectors and segmenters, timm, factories)
    get the empirical receptive field from gradient support, one row per output tensor (column method).
    JSON schema: emobench.rf/1."""
    from .analysis.rf import REACH_UNITS, model_receptive_field
    from .models import check_fits, check_reach_fits, parse_resolution
    from .references import resolve
    from .render import emit
    from .views import COLUMNS, SCHEMAS

    ref = resolve(model)
    res = parse_resolution(resolution) if resolution else None
    entry = ref.entry
    if entry is not None and entry.family in REACH_UNITS:
        size = ref.size or res or entry.input_size[1:]
        check_reach_fits(list(size), f"{model} at {'x'.join(map(str, size))}")
    else:  # the empirical path: float64 forward and backward passes
        check_fits(ref, ref.input_shape(res), copies=4, what="(float64, forward and backward)")
    result = model_receptive_field(ref, res, se_as_global)
    h, w = result.input_size
    emit(result.table, _format(fmt), output, title=f"{model}: receptive field at {h}x{w} ({result.method.split(' (')[0]})",
         meta={"caption": result.caption, "input": [h, w], "first_centre_global": result.first_centre_global,
               "first_all_global": result.first_all_global, "se_as_global": se_as_global, "method": result.method,
               "note": result.note},
         console=console, schema=SCHEMAS["rf"], columns=COLUMNS["rf"])


@app.command("erf")
@zoo_scoped
def erf(
    models: Annotated[list[str], typer.Argument(help=MODEL_REFS_HELP)],
    resolution: Annotated[str, typer.Option("--resolution", "-r", help="Input H or HxW (RepLKNet used 1024; REF@HxW wins for that model).")] = "224",
    images: Annotated[Optional[Path], typer.Option("--images", help="A folder of real images (default: random images).")] = None,
    num_images: Annotated[int, typer.Option("--num-images", "-n", min=1, help="Images to average over.")] = 50,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Trained weights (one model only).")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the random weights and images.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where the heatmaps go.")] = Path("reports/erf"),
    png: Annotated[bool, typer.Option("--png", help="Also write a PNG (needs kaleido and Chrome/Chromium).")] = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Effective receptive field by RepLKNet's method: gradient of the centre feature (ReLU, summed over
    channels), ReLU'd and averaged over images; log10(x+1), max-normalised; high-contribution area ratios at
    t = 20/30/50/99 %. Heatmaps of all models side by side as offline HTML. JSON schema: emobench.erf/1."""
    from rich.progress import Progress

    import re

    from .analysis.erf import erf_study
    from .models import check_fits, parse_resolution
    from .references import resolve
    from .render import emit
    from .report.plots import erf_figure, write_figure
    from .views import COLUMNS, SCHEMAS

    res = parse_resolution(resolution)
    for name in models:  # images go through in batches of up to 8, forward and backward
        ref = resolve(name)
        check_fits(ref, ref.input_shape(res, min(num_images, 8)), copies=2, what="(forward and backward)")
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        tasks: dict[str, object] = {}

        def step(name: str, done: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(f"ERF {name}", total=num_images)
            progress.advance(tasks[name], done)

        study = erf_study(models, res, images, num_images, seed, checkpoint, step)
    stem = re.sub(r"[^\w.@-]+", "-", "_".join(models))  # references may hold '/', ':' and ','
    files = write_figure(erf_figure(study.results), out_dir / f"erf_{stem}_{res[0]}x{res[1]}.html", png)
    emit(study.frame(), _format(fmt), output, title=f"ERF high-contribution area ratios at {res[0]}x{res[1]}",
         meta={"caption": f"transform log10(x+1)/max; ratio = side²/(H·W) of the smallest centred square above t; "
                          f"heatmap: {files['html']}" + (f", {files['png']}" if files["png"] else ""),
               "input": list(res), "files": files, "inputs": study.source},
         console=console, schema=SCHEMAS["erf"], columns=COLUMNS["erf"])
    if png and files["png_note"]:
        err_console.print(f"[yellow]warning:[/] {files['png_note']}")


@app.command("mpl")
@zoo_scoped
def mpl(
    blocks: Annotated[str, typer.Option("--blocks", help="Zoo blocks, comma-separated.")] = "irmb,irmb_contiguous,dwconv,wmhsa,mhsa",
    width: Annotated[str, typer.Option("--width", "-W", help="Map widths W, comma-separated.")] = "7,14,28,56",
    kernel: Annotated[Optional[int], typer.Option("--kernel", "-k", min=1, help="Override the depth-wise kernel of every block.")] = None,
    window: Annotated[Optional[int], typer.Option("--window", "-w", min=1, help="Override the attention window of every block.")] = None,
    count: Annotated[str, typer.Option(help="blocks (the paper's sense: one block = 1) or layers (each spatial op = 1).")] = "blocks",
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Instead: the per-stage MPL of a network at a real resolution.")] = None,
    resolution: Annotated[Optional[str], typer.Option("--resolution", "-r", help="With --model: input H or HxW.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write an MPL-vs-W plot (HTML) here.")] = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Maximum path length: exact (boolean reachability per axis; ∞ when a stack never connects), mean path
    length, and the paper's asymptotic forms (MHSA 1, W-MHSA ∞, DW-Conv 2W/(k−1), iRMB 2W/(k−1+2w)).
    JSON schema: emobench.mpl/1 (emobench.mpl_stages/1 with --model)."""
    from .analysis.mpl import mpl_sweep, stage_table
    from .bench import parse_ints
    from .models import check_reach_fits, parse_resolution
    from .render import emit
    from .views import COLUMNS, SCHEMAS
    from .zoo import get_entry

    if count not in ("blocks", "layers"):
        raise EmobenchError(f"--count takes blocks or layers, got '{count}'")
    meta = {"count": count, "units": {"mpl": count, "mean_path": count, "paper_asymptotic": count}}
    if model:
        if plot is not None:
            raise EmobenchError("--plot draws the block sweep; leave out --model")
        entry = get_entry(model)
        res = parse_resolution(resolution) if resolution else None
        check_reach_fits(list(res or entry.input_size[1:]), model)
        df, rf_result = stage_table(entry, res, count)
        emit(df, _format(fmt), output, title=f"{model}: path lengths per stage ({count})",
             meta={"caption": rf_result.caption, "input": list(rf_result.input_size), "count": count,
                   "units": {"mpl": count, "mean_path": count}}, console=console,
             schema=SCHEMAS["mpl_stages"], columns=COLUMNS["mpl_stages"])
        return
    if resolution is not None:
        raise EmobenchError("--resolution goes with --model (the block sweep takes --width)")
    widths = parse_ints(width, "widths")
    check_reach_fits([max(widths)] * 2, f"--width {max(widths)}")  # one width at a time, both axes
    df = mpl_sweep(blocks.split(","), widths, count, kernel, window)
    files = None
    if plot is not None:
        from .report.plots import mpl_figure, write_figure

        files = write_figure(mpl_figure(df), plot)
    emit(df, _format(fmt), output, title=f"maximum path length ({count})",
         meta={"caption": f"plot: {files['html']}" if files else None, **meta}, console=console,
         schema=SCHEMAS["mpl"], columns=COLUMNS["mpl"])


@app.command("modules")
def modules(
    channels: Annotated[int, typer.Option("--channels", "-C", min=1, help="Channels C.")] = 64,
    width: Annotated[int, typer.Option("--width", "-W", min=1, help="Map width W (L = W² tokens).")] = 14,
    window: Annotated[int, typer.Option("--window", "-w", min=1, help="Attention window w (l = w² tokens).")] = 7,
    kernel: Annotated[int, typer.Option("--kernel", "-k", min=1, help="Convolution kernel k.")] = 3,
    expansion: Annotated[float, typer.Option("--expansion", "-e", min=0, help="iRMB expansion ratio λ.")] = 4.0,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
) -> None:
    """The paper's module comparison: params, FLOPs and MPL of MHSA, W-MHSA, Conv, DW-Conv and iRMB, closed
    forms beside the modules built and counted (FLOPs = 2 × MACs; the formulas also count softmax).
    JSON schema: emobench.modules/1."""
    from .analysis.modules import irmb_heads, module_table
    from .render import emit
    from .views import COLUMNS, SCHEMAS

    df = module_table(channels, width, window, kernel, expansion)
    heads, dim_head = irmb_heads(channels)
    emit(df, _format(fmt), output, title=f"modules at C={channels}, W={width}, w={window}, k={kernel}, λ={expansion} "
                                          f"(iRMB: {heads} head(s) of {dim_head} channels)",
         meta={"input": {"channels": channels, "width": width, "window": window, "kernel": kernel, "expansion": expansion},
               "caption": "formula FLOPs include softmax/scaling terms (3L², 3Ll) that counters skip"},
         console=console, schema=SCHEMAS["modules"], columns=COLUMNS["modules"])


@app.command("table")
def table(
    name: Annotated[str, typer.Argument(help="imagenet, boost, modules, downstream or speed.")],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="table, md, csv, json, latex (booktabs) or html.")] = None,
    output: OutputOpt = None,
    store: StoreOpt = None,
    papers: Annotated[Optional[Path], typer.Option("--papers", help="A folder of reported-figure files (default: zoo/papers).")] = None,
) -> None:
    """A comparison table of the paper: every reported number read from zoo/papers with its source, beside
    emobench's measurement for the models the zoo has (params; MACs = the paper's "FLOPs"), with the
    difference; differences beyond 2 % are flagged and explained where they are the README's truncation.
    Peers with a timm name are measured where timm is installed. The speed table adds a measured section: EMO
    against its paired peers (zoo/papers/speed.toml [[pairs]]) per backend, from the stored records of one
    machine (meta.measured_speed in JSON). JSON and CSV carry the typed columns (schema emobench.table/1)."""
    from .render import emit, write_text
    from .tables import comparison_table, to_html, to_latex, to_markdown
    from .views import SCHEMAS, table_columns

    if papers is not None and not papers.is_dir():
        raise EmobenchError(f"papers folder not found: {papers}")
    kind = (fmt or (output.suffix.lstrip(".") if output is not None else "table")).lower()
    kind = {"tex": "latex", "htm": "html", "markdown": "md", "txt": "table"}.get(kind, kind)
    if kind not in ("table", "md", "csv", "json", "latex", "html"):
        raise EmobenchError(f"unknown format '{kind}' (choose table, md, csv, json, latex or html)")
    result = comparison_table(name, store, papers)
    meta = result.meta
    if kind in ("latex", "html", "md"):
        render_text = {"latex": to_latex, "html": to_html, "md": to_markdown}[kind]
        text = render_text(result.display(), meta["title"])
        for title, section in result.sections.items():  # the speed table's measured section
            text += "\n" + render_text(section, title)
        if output is None:
            print(text, end="")
        else:
            write_text(text, output)
        return
    if kind in ("csv", "json"):  # the typed frame: stable keys, units from the reported table's own labels
        emit(result.data, _format(kind), output, title=meta["title"], meta={**meta, "table": name}, console=console,
             schema=SCHEMAS["table"], columns=table_columns(result))
        return
    emit(result.display(), _format(kind), output, title=meta["title"], meta=meta, console=console)
    for title, section in result.sections.items() if output is None else ():
        if section.empty:
            console.print(f"{title}: {meta['measured_speed']['note']}", highlight=False)
        else:
            emit(section, None, None, title=title, console=console)


@app.command("report")
def report(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where to write (the repository's reports/ by default).")] = Path("reports"),
    erf_images: Annotated[int, typer.Option("--erf-images", min=1, help="Random images per ERF map.")] = 50,
    png: Annotated[bool, typer.Option("--png", help="Also write PNGs of the plots (needs kaleido and Chrome/Chromium).")] = False,
    store: StoreOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """Regenerate every comparison table (md, csv, tex, html), the Pareto charts, ERF heatmaps and MPL curves into
    one folder with a README.md index. Deterministic, except what reads the results store (latency). With
    --format json or csv, the list of files written (schema emobench.report/1)."""
    import pandas as pd
    from rich.progress import Progress

    from .render import Format, emit
    from .report.build import build_report
    from .views import COLUMNS, SCHEMAS

    fmt_ = _format(fmt)
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task("report", total=None)
        result = build_report(out_dir, erf_images, store, lambda label: progress.update(task, description=label), png)
    for n in result.notes:
        err_console.print(f"[yellow]note:[/] {n}")
    if fmt_ in (None, Format.table):
        for f in result.files:
            console.print(f"{f.path}  {f.what}", highlight=False)
        return
    files = pd.DataFrame([{"path": str(f.path), "what": f.what, "machine_dependent": f.machine_dependent} for f in result.files],
                         columns=["path", "what", "machine_dependent"])
    emit(files, fmt_, None, title=f"emobench report: {out_dir}", meta={"out_dir": str(out_dir), "notes": result.notes},
         console=console, schema=SCHEMAS["report"], columns=COLUMNS["report"])


def usage_line(err) -> str:
    """A click usage error as one line: the command, what is wrong, where help is."""
    ctx = getattr(err, "ctx", None)
    where = ctx.command_path if ctx is not None else "emobench"
    message = " ".join(err.format_message().split())
    return f"{where}: {message} (see '{where} --help')"


def main() -> None:
    """Entry point. Every kind of bad input (usage errors from click, emobench's own errors) is one line on
    stderr and exit code 2; anything else is a bug and keeps its traceback."""
    # click's exceptions as typer raises them (typer may vendor its own click)
    errors = sys.modules[typer.BadParameter.__module__]
    try:
        # not standalone: click leaves its errors to us instead of printing typer's multi-line boxes
        code = app(standalone_mode=False, prog_name="emobench")
    except errors.NoArgsIsHelpError as err:
        # a bare command or group: its help, as no_args_is_help asks, with the usage exit code
        help_text = err.ctx.get_help()  # typer's rich help prints itself and returns ""
        if help_text:
            print(help_text)
        sys.exit(2)
    except errors.ClickException as err:
        err_console.print(f"[red]error:[/] {escape(usage_line(err))}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except typer.Abort:
        sys.exit(130)
    except EmobenchError as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
