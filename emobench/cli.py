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
    family: Annotated[Optional[str], typer.Option(help="Only this family (emo, m2).")] = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Every zoo model: name, family, parameter count, default input and summary."""
    from .architecture import zoo_table
    from .render import emit
    from .zoo import get_zoo, list_models

    names = list_models(pattern, family)
    if not names:
        raise EmobenchError(f"no zoo model matches '{pattern}'" + (f" in family '{family}'" if family else ""))
    df = zoo_table(names)
    emit(df, _format(fmt), output, title=f"emobench zoo ({len(df)} models)",
         meta={"units": {"params": "count"}, "zoo": [str(d) for d in get_zoo().dirs]}, console=console)


@zoo_app.command("show")
@zoo_scoped
def zoo_show(
    name: Annotated[str, typer.Argument(help="A zoo model, e.g. emo_5m.")],
    resolution: Annotated[Optional[str], typer.Option("--resolution", "-r", help="Input H or HxW, e.g. 256 or 192x320 (default: the entry's).")] = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """A model's configuration and its block-by-block layout: widths, strides, kernels, attention, output maps."""
    import json

    from .architecture import block_table
    from .models import parse_resolution
    from .render import Format, emit
    from .zoo import get_entry

    entry = get_entry(name)
    res = parse_resolution(resolution) if resolution else None
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
    emit(df, fmt_, output, title=f"{entry.name} blocks at {c}x{h}x{w}", meta=meta, console=console)


@zoo_app.command("load")
@zoo_scoped
def zoo_load(
    name: Annotated[str, typer.Argument(help="A zoo model, e.g. emo_1m.")],
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint: net.pth (raw, 'net' or 'net_E'), or .safetensors.")],
    zoo: ZooDirs = None,
) -> None:
    """Check that a checkpoint loads into a zoo model (keys and shapes), without executing anything in it."""
    from .checkpoint import load_checkpoint
    from .models import create_model

    model = create_model(name)
    where = load_checkpoint(model, checkpoint)
    n = sum(p.numel() for p in model.parameters())
    console.print(f"{checkpoint}: loaded into {name} from {where}: {len(model.state_dict())} tensors, {n:,} parameters")


@app.command("profile")
@zoo_scoped
def profile(
    models: Annotated[list[str], typer.Argument(help="One or more zoo models (EMO variants or single blocks).")],
    resolution: Annotated[Optional[str], typer.Option("--resolution", "-r", help="Input H or HxW, e.g. 224 or 192x320 (default: the entry's own; blocks keep their channels).")] = None,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Batch size.")] = 1,
    depth: Annotated[int, typer.Option("--depth", "-d", help="Per-layer table down to this module depth (0: none).")] = 1,
    fused: Annotated[bool, typer.Option("--fused", help="Profile the fused inference form instead of the reference form.")] = False,
    counts_only: Annotated[bool, typer.Option("--counts-only", help="Parameters and MACs only: skip memory and latency.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", "-t", help="CPU threads for the latency figure (default: torch's).")] = None,
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
    emobench.profile/1 (every metric has value, unit, method, status)."""
    from rich.progress import Progress

    from .models import parse_resolution
    from .profile import environment, profile_model
    from .views import render_profiles

    fmt_ = _format(fmt)
    res = parse_resolution(resolution) if resolution else None
    if batch < 1:
        raise EmobenchError(f"batch must be >= 1, got {batch}")
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


@app.command("bench")
@zoo_scoped
def bench(
    models: Annotated[list[str], typer.Argument(help="One or more zoo models.")],
    backend: Annotated[str, typer.Option("--backend", "-B", help="Comma-separated backends, or 'all': torch, torch-cl, torch-compile, onnxruntime, openvino, executorch, litert, cuda, cuda-compile.")] = "torch",
    batch: Annotated[str, typer.Option("--batch", "-b", help="Batch sizes, e.g. 1,8 (throughput for batch > 1).")] = "1",
    threads: Annotated[Optional[str], typer.Option("--threads", "-t", help="CPU thread counts, e.g. 1,2 (default: torch's, at most the core count).")] = None,
    resolution: Annotated[Optional[str], typer.Option("--resolution", "-r", help="Input H or HxW (default: the entry's).")] = None,
    dtype: Annotated[str, typer.Option(help="fp32 (fp32 on every backend); bf16 (torch autocast, OpenVINO where the CPU has it, cuda); fp16 (cuda).")] = "fp32",
    form: Annotated[str, typer.Option("--form", help="Formulation(s), comma-separated: auto (per backend, the fastest that passes parity), reference, fused, official (the official code's operators), mobile.")] = "auto",
    rounds: Annotated[int, typer.Option(help="Rounds: each measurement runs this many times in fresh processes, backends alternating; timings are pooled.")] = 3,
    warmup: Annotated[int, typer.Option(help="Untimed calls before timing, per round.")] = 10,
    min_time: Annotated[float, typer.Option(help="Time at least this many seconds per measurement and round …")] = 1.0,
    min_runs: Annotated[int, typer.Option(help="… and at least this many calls.")] = 20,
    timeout: Annotated[float, typer.Option(help="Seconds one worker process may take before it is killed (an error record).")] = 600.0,
    tolerance: Annotated[Optional[float], typer.Option(help="Parity tolerance, max |Δ| vs eager fp32 torch (default 1e-4 for fp32).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Weights to load first.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also show what each runtime ran on screen: delegated vs fallback operators, subgraphs, precisions (JSON/CSV always carry it).")] = False,
    store: StoreOpt = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not record the results.")] = False,
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import json

    from .bench import (SCHEMA, UNITS, BenchPlan, explain_lines, failed, parse_backends, parse_ints, parse_names,
                        records_frame, records_table, run_bench, screen_frame)
    from .models import parse_resolution
    from .render import Format, emit, format_for
    from .store import ResultStore

    plan = BenchPlan(
        models=models, backends=parse_backends(backend), batches=parse_ints(batch, "batch"),
        **({"threads": parse_ints(threads, "threads")} if threads else {}),
        resolution=parse_resolution(resolution) if resolution else None, dtype=dtype, forms=parse_names(form),
        rounds=rounds, warmup=warmup, min_time=min_time, min_runs=min_runs, timeout=timeout, tolerance=tolerance,
        checkpoint=str(checkpoint) if checkpoint else None,
    )
    plan.validate()
    fmt_ = _format(fmt)
    db = None if no_store else ResultStore(store)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    try:
        with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
            task = progress.add_task("preparing", total=None)

            def step(label: str, done: int, total: int) -> None:
                progress.update(task, description=label, completed=done, total=total)

            records = run_bench(plan, db, step)
    finally:
        if db is not None:
            db.close()
    shown = format_for(fmt_, output)
    if shown in (Format.json, Format.csv):
        # scripts get every field under a stable name (schema emobench.bench/1), explain reports included
        df = records_table(records)
        if shown is Format.csv:
            df = df.assign(**{k: [json.dumps(v, sort_keys=True) for v in df[k]] for k in ("env", "params", "explain")})
        meta = {"schema": SCHEMA, "units": UNITS, "store": None if db is None else str(db.path)}
    else:
        df = records_frame(records)
        df = screen_frame(df) if shown is Format.table else df
        meta = {"store": None if db is None else str(db.path)}
    emit(df, fmt_, output, title="emobench bench", meta=meta, console=console)
    if explain and fmt_ in (None, Format.table) and output is None:
        for what, summary, fallback in explain_lines(records):
            console.print(f"[bold]{escape(what)}[/]: {escape(summary)}", highlight=False)
            if fallback:
                console.print(f"    fallback: {escape(', '.join(fallback))}", highlight=False)
    if db is not None and fmt_ in (None, Format.table) and output is None:
        err_console.print(f"[dim]{sum(r.status != 'skipped' for r in records)} record(s) stored in {db.path}[/]")
    bad = failed(records)
    if bad:
        for r in bad:
            err_console.print(f"[red]{r.status}:[/] {escape(f'{r.model} {r.backend} {r.form}: {r.error}')}", highlight=False)
        raise typer.Exit(1)


results_app = typer.Typer(help="List, compare, export and merge stored benchmark records.", no_args_is_help=True)
app.add_typer(results_app, name="results")


def _filters(items: list[str] | None) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EmobenchError(f"filters look like field=value (e.g. backend=onnxruntime), got '{item}'")
        out[key.strip()] = int(value) if value.strip().isdigit() else value.strip()
    return out


@results_app.command("list")
def results_list(
    filters: Annotated[Optional[list[str]], typer.Argument(help="field=value filters, e.g. model=emo_1m backend=torch.")] = None,
    limit: Annotated[int, typer.Option(help="Show the newest N records (0: all).")] = 50,
    store: StoreOpt = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
) -> None:
    """Stored records, newest last, with their ratio to torch eager where one exists."""
    from .bench import records_frame
    from .render import emit
    from .store import ResultStore

    with ResultStore(store, readonly=True) as db:
        df = db.records(**_filters(filters))
    if limit > 0:
        df = df.tail(limit)
    view = records_frame(df)
    if not view.empty:
        view.insert(0, "machine", df["machine"].values)
        view.insert(0, "when", pd_time(df["created"]))
    emit(view, _format(fmt), output, title=f"{len(view)} record(s)", console=console)


def pd_time(seconds):
    import pandas as pd

    return pd.to_datetime(seconds, unit="s").dt.strftime("%Y-%m-%d %H:%M").values


@results_app.command("compare")
def results_compare(
    a: Annotated[str, typer.Argument(help="Baseline filter, e.g. backend=torch (comma-separated field=value).")],
    b: Annotated[str, typer.Argument(help="Candidate filter, e.g. backend=onnxruntime.")],
    fail_above: Annotated[Optional[float], typer.Option("--fail-above", help="Exit 1 when a pair is slower beyond its noise by more than this percentage (a CI guard).")] = None,
    store: StoreOpt = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
) -> None:
    """B vs A as latency ratios, matching records on every key the filters leave free (newest record each),
    with a verdict: faster / slower when the ratio leaves 1 ± noise (the larger relative IQR or round spread of
    the two records), else same."""
    from .render import emit
    from .results import compare, regressions
    from .store import ResultStore

    if fail_above is not None and not fail_above >= 0:
        raise EmobenchError(f"--fail-above takes a percentage >= 0, got {fail_above}")
    with ResultStore(store, readonly=True) as db:
        df = compare(db.records(), _filters(a.split(",")), _filters(b.split(",")))
    emit(df, _format(fmt), output, title=f"{b} vs {a} (ratio < 1: B is faster)", console=console)
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
    """Every stored record with all its fields (environment included) as CSV or JSON."""
    import json

    from .render import write_text
    from .store import ResultStore

    with ResultStore(store, readonly=True) as db:
        df = db.records(**_filters(filters))
    if output.suffix.lower() == ".json":
        records = json.loads(df.to_json(orient="records"))  # NaN → null: valid JSON
        write_text(json.dumps(records, indent=2) + "\n", output)
    elif output.suffix.lower() == ".csv":
        flat = df.copy()
        flat["env"] = [json.dumps(e, sort_keys=True) for e in flat["env"]]
        flat["params"] = [json.dumps(p, sort_keys=True) for p in flat["params"]]
        write_text(flat.to_csv(index=False), output)
    else:
        raise EmobenchError(f"export writes .csv or .json, got '{output.name}'")
    console.print(f"{len(df)} record(s) written to {output}")


@results_app.command("merge")
def results_merge(
    sources: Annotated[list[Path], typer.Argument(help="Stores from other machines to merge in.")],
    store: StoreOpt = None,
) -> None:
    """Copy the records of other stores into this one (by record id: merging twice adds nothing)."""
    from .store import ResultStore

    with ResultStore(store) as db:
        added = db.merge(sources)
        console.print(f"{added} record(s) added to {db.path} ({db.count()} in all)")


@app.command("rf")
@zoo_scoped
def rf(
    model: Annotated[str, typer.Argument(help="A zoo model (network or block).")],
    resolution: Annotated[Optional[str], typer.Option("--resolution", "-r", help="Input H or HxW (default: the entry's).")] = None,
    se_as_global: Annotated[bool, typer.Option("--se-as-global", help="Count SE's global pool as a global mixing layer (papers do not).")] = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Theoretical receptive field per layer: output size, jump, the exact bounding box of the centre output's
    input pixels (clipped), the unclipped size while the network is translation-equivariant, coverage (the
    fraction of input pixels that reach the centre), and where the centre output / every output becomes global.

    Residual branches are unions; window attention follows the model's partition (grid, contiguous, global)."""
    from .analysis.rf import entry_receptive_field
    from .models import parse_resolution
    from .render import emit
    from .zoo import get_entry

    entry = get_entry(model)
    result = entry_receptive_field(entry, parse_resolution(resolution) if resolution else None, se_as_global)
    h, w = result.input_size
    caption = result.caption
    emit(result.table, _format(fmt), output, title=f"{model}: receptive field at {h}x{w}",
         meta={"caption": caption, "input": [h, w], "first_centre_global": result.first_centre_global,
               "first_all_global": result.first_all_global, "se_as_global": se_as_global,
               "units": {"jump": "input pixels", "rf": "input pixels (H x W)", "coverage": "fraction of input pixels"}},
         console=console)


@app.command("erf")
@zoo_scoped
def erf(
    models: Annotated[list[str], typer.Argument(help="One or more zoo models.")],
    resolution: Annotated[str, typer.Option("--resolution", "-r", help="Input H or HxW (RepLKNet used 1024).")] = "224",
    images: Annotated[Optional[Path], typer.Option("--images", help="A folder of real images (default: random images).")] = None,
    num_images: Annotated[int, typer.Option("--num-images", "-n", help="Images to average over.")] = 50,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Trained weights (one model only).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random weights and images.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where the heatmaps go.")] = Path("reports/erf"),
    png: Annotated[bool, typer.Option("--png", help="Also write a PNG (needs kaleido and Chrome/Chromium).")] = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Effective receptive field by RepLKNet's method: gradient of the centre feature (ReLU, summed over
    channels), ReLU'd and averaged over images; log10(x+1), max-normalised; high-contribution area ratios at
    t = 20/30/50/99 %. Heatmaps of all models side by side as offline HTML."""
    import torch
    from rich.progress import Progress

    from .analysis.erf import effective_receptive_field, folder_images, random_images
    from .models import create_model, input_shape, parse_resolution
    from .render import emit
    from .report.plots import erf_figure, write_figure
    from .zoo import get_entry

    if num_images < 1:
        raise EmobenchError(f"--num-images must be >= 1, got {num_images}")
    if checkpoint and len(models) > 1:
        raise EmobenchError("--checkpoint applies to one model; give one model")
    res = parse_resolution(resolution)
    results = []
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        for name in models:
            entry = get_entry(name)
            shape = input_shape(entry, res)
            if images is not None and shape[1] != 3:
                raise EmobenchError(f"'{name}' takes {shape[1]} channels; --images needs an RGB model")
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                model = create_model(name, checkpoint=checkpoint)
            source = f"{num_images} images from {images}" if images else f"{num_images} random images (seed {seed})"
            stream = folder_images(images, num_images, res) if images else (
                x[:, :1].expand(-1, shape[1], -1, -1).clone() if shape[1] != 3 else x for x in random_images(num_images, res, seed))
            task = progress.add_task(f"ERF {name}", total=num_images)
            results.append(effective_receptive_field(model, stream, name, source, lambda n, t=task: progress.advance(t, n)))
    files = write_figure(erf_figure(results), out_dir / f"erf_{'_'.join(models)}_{res[0]}x{res[1]}.html", png)
    rows = [{"model": r.model, "images": r.images, "skipped": r.skipped,
             **{f"r(t={int(t * 100)}%)": v for t, v in r.area_ratios().items()}} for r in results]
    import pandas as pd

    emit(pd.DataFrame(rows), _format(fmt), output, title=f"ERF high-contribution area ratios at {res[0]}x{res[1]}",
         meta={"caption": f"transform log10(x+1)/max; ratio = side²/(H·W) of the smallest centred square above t; "
                          f"heatmap: {files['html']}" + (f", {files['png']}" if files["png"] else ""),
               "files": files, "inputs": results[0].source if results else None}, console=console)
    if png and files["png_note"]:
        err_console.print(f"[yellow]warning:[/] {files['png_note']}")


@app.command("mpl")
@zoo_scoped
def mpl(
    blocks: Annotated[str, typer.Option("--blocks", help="Zoo blocks, comma-separated.")] = "irmb,irmb_contiguous,dwconv,wmhsa,mhsa",
    width: Annotated[str, typer.Option("--width", "-W", help="Map widths W, comma-separated.")] = "7,14,28,56",
    kernel: Annotated[Optional[int], typer.Option("--kernel", "-k", help="Override the depth-wise kernel of every block.")] = None,
    window: Annotated[Optional[int], typer.Option("--window", "-w", help="Override the attention window of every block.")] = None,
    count: Annotated[str, typer.Option(help="blocks (the paper's sense: one block = 1) or layers (each spatial op = 1).")] = "blocks",
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Instead: the per-stage MPL of a network at a real resolution.")] = None,
    resolution: Annotated[Optional[str], typer.Option("--resolution", "-r", help="With --model: input H or HxW.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write an MPL-vs-W plot (HTML) here.")] = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Maximum path length: exact (boolean reachability per axis; ∞ when a stack never connects), mean path
    length, and the paper's asymptotic forms (MHSA 1, W-MHSA ∞, DW-Conv 2W/(k−1), iRMB 2W/(k−1+2w))."""
    from .analysis.mpl import mpl_table, stage_table
    from .bench import parse_ints
    from .render import emit
    from .zoo import get_entry

    if model:
        from .models import parse_resolution

        entry = get_entry(model)
        df, rf_result = stage_table(entry, parse_resolution(resolution) if resolution else None, count)
        emit(df, _format(fmt), output, title=f"{model}: path lengths per stage ({count})",
             meta={"caption": rf_result.caption}, console=console)
        return
    overrides: dict = {}
    if kernel is not None:
        overrides["dw_kernel"] = kernel
    if window is not None:
        overrides["attention"] = {"window_size": window}
    names = [b.strip() for b in blocks.split(",") if b.strip()]
    if not names:
        raise EmobenchError("--blocks names no block (e.g. --blocks irmb,mhsa)")
    widths = parse_ints(width, "widths")
    df = _mpl_with_overrides(names, widths, count, overrides) if overrides else mpl_table(names, widths, count)
    files = None
    if plot is not None:
        from .report.plots import mpl_figure, write_figure

        files = write_figure(mpl_figure(df), plot)
    emit(df, _format(fmt), output, title=f"maximum path length ({count})",
         meta={"caption": f"plot: {files['html']}" if files else None}, console=console)


def _mpl_with_overrides(names, widths, count, overrides):
    """Apply overrides only to the blocks that have the overridden parts."""
    import pandas as pd

    from .analysis.mpl import mpl_table
    from .zoo import get_entry

    frames = []
    for name in names:
        cfgs = [get_entry(part).config for part in name.split("+")]
        own = {k: v for k, v in overrides.items()
               if (k != "dw_kernel" or all(c.dw_kernel for c in cfgs)) and (k != "attention" or all(c.attention for c in cfgs))}
        frames.append(mpl_table([name], widths, count, own or None))
    return pd.concat(frames, ignore_index=True)


@app.command("modules")
def modules(
    channels: Annotated[int, typer.Option("--channels", "-C", help="Channels C.")] = 64,
    width: Annotated[int, typer.Option("--width", "-W", help="Map width W (L = W² tokens).")] = 14,
    window: Annotated[int, typer.Option("--window", "-w", help="Attention window w (l = w² tokens).")] = 7,
    kernel: Annotated[int, typer.Option("--kernel", "-k", help="Convolution kernel k.")] = 3,
    expansion: Annotated[float, typer.Option("--expansion", "-e", help="iRMB expansion ratio λ.")] = 4.0,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
) -> None:
    """The paper's module comparison: params, FLOPs and MPL of MHSA, W-MHSA, Conv, DW-Conv and iRMB, closed
    forms beside the modules built and counted (FLOPs = 2 × MACs; the formulas also count softmax)."""
    from .analysis.modules import irmb_heads, module_table
    from .render import emit

    df = module_table(channels, width, window, kernel, expansion)
    heads, dim_head = irmb_heads(channels)
    emit(df, _format(fmt), output, title=f"modules at C={channels}, W={width}, w={window}, k={kernel}, λ={expansion} "
                                          f"(iRMB: {heads} head(s) of {dim_head} channels)",
         meta={"units": {"FLOPs": "2 × MACs"}, "caption": "formula FLOPs include softmax/scaling terms (3L², 3Ll) that counters skip"},
         console=console)


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
    difference; differences beyond 2 % are flagged and explained where they are the README's truncation."""
    from .render import emit, write_text
    from .tables import build_table, to_html, to_latex

    if papers is not None and not papers.is_dir():
        raise EmobenchError(f"papers folder not found: {papers}")
    df, meta = build_table(name, store, papers)
    kind = (fmt or (output.suffix.lstrip(".") if output is not None else "table")).lower()
    kind = {"tex": "latex", "htm": "html", "markdown": "md", "txt": "table"}.get(kind, kind)
    if kind not in ("table", "md", "csv", "json", "latex", "html"):
        raise EmobenchError(f"unknown format '{kind}' (choose table, md, csv, json, latex or html)")
    if kind in ("latex", "html"):
        text = to_latex(df, meta["title"]) if kind == "latex" else to_html(df, meta["title"])
        if output is None:
            print(text, end="")
        else:
            write_text(text, output)
        return
    emit(df, _format(kind), output, title=meta["title"], meta=meta, console=console)


@app.command("report")
def report(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where to write (the repository's reports/ by default).")] = Path("reports"),
    erf_images: Annotated[int, typer.Option("--erf-images", help="Random images per ERF map.")] = 50,
    png: Annotated[bool, typer.Option("--png", help="Also write PNGs of the plots (needs kaleido and Chrome/Chromium).")] = False,
    store: StoreOpt = None,
) -> None:
    """Regenerate every comparison table (md, csv, tex, html), the Pareto charts, ERF heatmaps and MPL curves into
    one folder with a README.md index. Deterministic, except what reads the results store (latency)."""
    from rich.progress import Progress

    from .report.build import build_report

    if erf_images < 1:
        raise EmobenchError(f"--erf-images must be >= 1, got {erf_images}")
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task("report", total=None)
        result = build_report(out_dir, erf_images, store, lambda label: progress.update(task, description=label), png)
    for f in result.files:
        console.print(f"{f.path}  {f.what}", highlight=False)
    for n in result.notes:
        err_console.print(f"[yellow]note:[/] {n}")


def main() -> None:
    """Entry point. Usage errors exit 2 through typer; emobench's own user errors become one line and exit 2."""
    try:
        app()
    except EmobenchError as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
