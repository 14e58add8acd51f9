"""``emobench profile``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from emobench.cli.options import (
    MODEL_REFS_HELP,
    FormatOpt,
    OutputOpt,
    ResolutionOpt,
    ZooDirs,
    checks_output,
    console,
    output_format,
    progress_bar,
    resolution,
    zoo_scoped,
)


@zoo_scoped
@checks_output
def profile(
    models: Annotated[list[str], typer.Argument(help=MODEL_REFS_HELP)],
    resolution_: ResolutionOpt = None,
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
    ptflops skip (scaled_dot_product_attention, norms) and reports their own figures too; their counts of a zoo
    model counted before (same configuration, input, form, code and versions) are reused, and their method says
    so. The latency figure is 0.2 s of bench's timing loop (see `emobench bench` for the methodology). JSON schema:
    emobench.profile/3 (every metric has value, unit, method, status). Inputs the machine cannot hold are
    refused before anything is allocated."""
    from emobench.environment import environment
    from emobench.report.views import render_profiles
    from emobench.runs.profile import profile_models

    fmt_ = output_format(fmt)
    with progress_bar("profiling", len(models)) as bar:
        task = bar.add_task("profiling", total=len(models))
        results = profile_models(models, resolution(resolution_), batch, depth, fused, counts_only=counts_only,
                                 threads=threads, checkpoint=checkpoint,
                                 progress=lambda label, done: bar.update(task, description=label, completed=done))
    render_profiles(results, fmt_, output, environment(), layers, console)
