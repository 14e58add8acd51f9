"""``emobench bench`` and ``emobench eval``: one runner, one way to show records and exit on failures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from emobench.cli import options as opt
from emobench.cli.options import (
    MODEL_REFS_HELP,
    FormatOpt,
    NoStoreOpt,
    OutputOpt,
    ResolutionOpt,
    StoreOpt,
    ZooDirs,
    console,
    err_console,
    on_screen,
    output_format,
    zoo_scoped,
)
from emobench.runtimes.parity import CALIBRATION_IMAGES, MIN_LOGIT_COSINE, MIN_TOP1_AGREEMENT

CalibrationOpt = Annotated[Optional[Path], typer.Option("--calibration", help="int8: calibrate on images of this folder (ImageFolder or flat; a seeded sample of --calibration-size). Default: 32 seeded random inputs, flagged as such in the record.", show_default=False)]
CalibrationSizeOpt = Annotated[int, typer.Option("--calibration-size", min=1, help="int8: images sampled from --calibration.")]
MinAgreementOpt = Annotated[float, typer.Option("--min-agreement", min=0, max=1, help="int8 parity: least top-1 agreement with eager fp32 torch (on the evaluation or calibration images).")]
MinCosineOpt = Annotated[float, typer.Option("--min-cosine", min=-1, max=1, help="int8 parity: least mean cosine similarity of the logits to eager fp32 torch's.")]
BACKENDS_HELP = ("Comma-separated backends, or 'all': torch, torch-cl, torch-compile, onnxruntime, openvino, executorch, "
                 "litert, cuda, cuda-compile.")


def interrupted(err: KeyboardInterrupt) -> int:
    """Say on stderr, in one line, what an interrupted run kept (Ctrl-C: ``interrupted: 3 record(s) stored in
    PATH``; SIGTERM: ``terminated: …``); returns the exit code, 128 + the signal (130, 143)."""
    import signal

    signum = getattr(err, "signum", signal.SIGINT)
    line = "terminated" if signum == signal.SIGTERM else "interrupted"
    if hasattr(err, "stored"):  # from run_stored: the records stored before the interruption, and where
        store = getattr(err, "store", None)
        line += f": {err.stored} record(s) stored in {store}" if store else ": nothing stored (--no-store)"
    err_console.print(escape(line), highlight=False, soft_wrap=True)
    return 128 + signum


def _run(plan, store, no_store):
    """The stored run under a progress bar; interrupted (Ctrl-C, SIGTERM), it says what was kept and exits."""
    from emobench.runs.bench import run_stored

    try:
        with opt.progress_bar("preparing") as bar:
            task = bar.add_task("preparing", total=None)
            return run_stored(plan, store, no_store,
                              lambda label, done, total: bar.update(task, description=label, completed=done, total=total))
    except KeyboardInterrupt as err:  # left to typer, it would be a silent exit code 130
        raise typer.Exit(interrupted(err)) from None


def _exit_on_failures(records) -> None:
    """A measurement that failed parity or errored: each named on stderr, exit 1 (bad input stays 2)."""
    from emobench.results.record import failed

    bad = failed(records)
    for r in bad:
        err_console.print(f"[red]{r.status}:[/] {escape(f'{r.model} {r.backend} {r.form}: {r.error}')}", highlight=False)
    if bad:
        raise typer.Exit(1)


def show_breakdowns(records, by: str | None = None, method: str | None = None) -> None:
    """Each breakdown of ``records`` on screen: a line on its source and closure, then its roll-up."""
    from emobench.report.render import emit
    from emobench.report.views import COLUMNS, breakdown_caption, breakdown_output

    for record in records:
        for name in (record.breakdown if hasattr(record, "breakdown") else record.get("breakdown") or {}):
            if method is not None and name != method:
                continue
            df, meta = breakdown_output([record], by, name)
            summary = meta["breakdowns"][0]
            console.print(escape(breakdown_caption(summary)), highlight=False)
            if "error" not in summary:
                shown = [c for c in COLUMNS["breakdown"] if c.key not in ("model", "backend", "form", "dtype", "batch", "threads", "method", "by")]
                emit(df[[c.key for c in shown]], console=console, columns=shown)


@zoo_scoped
def bench(
    models: Annotated[list[str], typer.Argument(help=MODEL_REFS_HELP)],
    backend: Annotated[str, typer.Option("--backend", "-B", help=BACKENDS_HELP)] = "torch",
    batch: Annotated[str, typer.Option("--batch", "-b", help="Batch sizes, e.g. 1,8 (throughput for batch > 1).")] = "1",
    threads: Annotated[Optional[str], typer.Option("--threads", "-t", help="CPU thread counts, e.g. 1,2 (default: torch's, at most the core count).")] = None,
    resolution: ResolutionOpt = None,
    dtype: Annotated[str, typer.Option(help="fp32 (fp32 on every backend); bf16 (torch autocast, OpenVINO where the CPU has it, cuda); fp16 (cuda); int8 (static post-training quantization: executorch, litert, onnxruntime, openvino). Several, comma-separated (fp32,int8), are measured interleaved in one run, so int8 / fp32 is a ratio from one run.")] = "fp32",
    calibration: CalibrationOpt = None,
    calibration_size: CalibrationSizeOpt = CALIBRATION_IMAGES,
    min_agreement: MinAgreementOpt = MIN_TOP1_AGREEMENT,
    min_cosine: MinCosineOpt = MIN_LOGIT_COSINE,
    form: Annotated[str, typer.Option("--form", help="Formulation(s), comma-separated: auto (per backend, the fastest that passes parity), reference, fused, official (the official code's operators), mobile.")] = "auto",
    rounds: Annotated[int, typer.Option(min=1, help="Rounds: each measurement runs this many times in fresh processes, backends alternating; timings are pooled.")] = 3,
    until_stable: Annotated[Optional[float], typer.Option("--until-stable", help="Keep adding rounds (after --rounds) until the 95 % interval of each measurement's mean round median is within this many percent of it, or --max-rounds or --budget ends it (the record says which).", show_default=False)] = None,
    max_rounds: Annotated[int, typer.Option("--max-rounds", min=2, help="With --until-stable: at most this many rounds.")] = 20,
    budget: Annotated[float, typer.Option("--budget", min=0, help="With --until-stable: stop adding rounds after this many seconds (0: no limit).")] = 600.0,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed calls before timing, per round.")] = 10,
    min_time: Annotated[float, typer.Option(min=0, help="Time at least this many seconds per measurement and round …")] = 1.0,
    min_runs: Annotated[int, typer.Option(min=1, help="… and at least this many calls.")] = 20,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds one worker process may take before it is killed (an error record).")] = 600.0,
    tolerance: Annotated[Optional[float], typer.Option(min=0, help="Parity tolerance, max |Δ| vs eager fp32 torch (default 1e-4 for fp32).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Weights to load first.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also show what each runtime ran on screen: delegated vs fallback operators, subgraphs, precisions (JSON/CSV always carry it).")] = False,
    breakdown: Annotated[bool, typer.Option("--breakdown", help="Also measure where the time goes, after each record's timed rounds (never feeding its latency): per operator, module, stage and block, and the M² parts of every block, with MACs and GMAC/s; stored with the record (see `emobench results breakdown`).")] = False,
    crosscheck: Annotated[bool, typer.Option("--crosscheck", help="Also run the runtime's own benchmark tool (OpenVINO's benchmark_app, LiteRT's litert-benchmark) on the measured artifact with the same threads and precision, once per round after emobench's worker; its median, the ratio and, when they disagree beyond the noise, the settings that differ are stored and shown.")] = False,
    breakdown_method: Annotated[str, typer.Option("--breakdown-method", help="auto: the runtime's own profiler (torch, onnxruntime, openvino), else prefix differencing (executorch, litert: the network cut after each block, timed interleaved); profiler; prefix; both (each cross-checks the other).")] = "auto",
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
    from emobench.report.render import emit, format_for
    from emobench.report.views import crosscheck_lines, explain_lines, host_line, records_output
    from emobench.runs.bench import BenchPlan

    plan = BenchPlan(
        models=models, backends=opt.backends(backend), batches=opt.ints(batch, "batch"),
        **({"threads": opt.ints(threads, "threads")} if threads else {}), resolution=opt.resolution(resolution),
        dtype=dtype, forms=opt.names(form), rounds=rounds, warmup=warmup, min_time=min_time, min_runs=min_runs,
        timeout=timeout, tolerance=tolerance, checkpoint=str(checkpoint) if checkpoint else None,
        calibration=str(calibration) if calibration else None, calibration_size=calibration_size,
        min_agreement=min_agreement, min_cosine=min_cosine, breakdown=breakdown_method if breakdown else None,
        crosscheck=crosscheck, until_stable=until_stable, max_rounds=max_rounds, budget=budget or None,
    )
    plan.validate()  # every model resolved and every option checked before anything is built
    opt.check_outputs(output, store, no_store)
    fmt_ = output_format(fmt)
    outcome = _run(plan, store, no_store)
    df, meta, schema = records_output(outcome.records, outcome.history, format_for(fmt_, output), outcome.store)
    emit(df, fmt_, output, title="emobench bench", meta=meta, schema=schema, console=console)
    if on_screen(fmt_, output):
        for what, summary, fallback in explain_lines(outcome.records) if explain else ():
            console.print(f"[bold]{escape(what)}[/]: {escape(summary)}", highlight=False)
            if fallback:
                console.print(f"    fallback: {escape(', '.join(fallback))}", highlight=False)
        if breakdown:
            show_breakdowns(outcome.records)
        for line in crosscheck_lines(outcome.records) if crosscheck else ():
            console.print(escape(line), highlight=False)
        host = host_line(outcome.records)
        if host:
            err_console.print(escape(host), highlight=False)
        if outcome.store is not None:
            stored = sum(r.status != "skipped" for r in outcome.records)
            err_console.print(f"[dim]{stored} record(s) stored in {escape(outcome.store)}[/]")
    _exit_on_failures(outcome.records)


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
    calibration_size: CalibrationSizeOpt = CALIBRATION_IMAGES,
    min_agreement: MinAgreementOpt = MIN_TOP1_AGREEMENT,
    min_cosine: MinCosineOpt = MIN_LOGIT_COSINE,
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
    from emobench.report.render import emit, format_for
    from emobench.report.views import eval_output
    from emobench.runs.evaluate import eval_plan

    plan = eval_plan(model, str(images), opt.backends(backend), dtype=dtype, batches=[batch], forms=opt.names(form),
                     **({"threads": [threads]} if threads else {}), checkpoint=str(checkpoint) if checkpoint else None,
                     class_index=str(class_index) if class_index else None, limit=limit,
                     preprocess={"crop_pct": crop_pct, "interpolation": interpolation, "mean": mean, "std": std},
                     calibration=str(calibration) if calibration else None, calibration_size=calibration_size,
                     min_agreement=min_agreement, min_cosine=min_cosine, timeout=timeout)
    plan.validate()
    opt.check_outputs(output, store, no_store)
    fmt_ = output_format(fmt)
    outcome = _run(plan, store, no_store)
    df, meta, schema = eval_output(outcome.records, format_for(fmt_, output), outcome.store)
    emit(df, fmt_, output, title=f"emobench eval {model} on {images}", meta=meta, console=console, schema=schema)
    skipped = max((r.images_skipped or 0) for r in outcome.records) if outcome.records else 0
    if skipped and on_screen(fmt_, output):
        err_console.print(f"[yellow]warning:[/] {skipped} unreadable image file(s) skipped")
    _exit_on_failures(outcome.records)
