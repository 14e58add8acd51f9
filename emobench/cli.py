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
                profile_model(name, res, batch, depth, fused, latency=not counts_only, memory=not counts_only, threads=threads)
            )
            progress.advance(task)
    render_profiles(results, fmt_, output, environment(), layers, console)


def main() -> None:
    """Entry point. Usage errors exit 2 through typer; emobench's own user errors become one line and exit 2."""
    try:
        app()
    except EmobenchError as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
