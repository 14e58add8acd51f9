"""``emobench sweep``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from emobench.cli import options as opt
from emobench.cli.options import (FormatOpt, OutputOpt, StoreOpt, ZooDirs, console, err_console, output_format,
                                  progress_bar, zoo_scoped)


@zoo_scoped
def sweep(
    spec: Annotated[Path, typer.Argument(help="The sweep's TOML spec: base, axes, constraints, measure (see docs/sweeps.md).")],
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", min=1, help="Processes counting points (default: one per core).")] = None,
    measure: Annotated[bool, typer.Option("--measure/--no-measure", help="Measure the front's points with bench's methodology after counting (the spec's [measure] says which backends and how many points).")] = True,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the Pareto chart to this HTML file (and a PNG beside it).")] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", help="Run on Ray (pip install 'emobench[ray]'): local (a private local instance), auto (the running cluster) or a cluster ADDRESS. Counting fans out over every CPU; at most one measurement runs per node (nodes offer the emobench_bench resource once); results stream into this store.", show_default=False)] = None,
    store: StoreOpt = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Count every point of a design space around a base model, store it under the sweep's id, and measure the
    Pareto front (MACs vs params).

    Points are validated (a point the family refuses is listed with its reason, never a crash), counted with
    emobench's own counter on the meta device (params, MACs, activations) and the exact receptive field, and
    stored once: a killed sweep resumes where it stopped. JSON schema emobench.sweep/1."""
    from emobench.report.render import emit
    from emobench.results.store import ResultStore
    from emobench.runs.sweep import SCHEMA, load_spec, run_sweep, sweep_frame

    parsed, sweep_id = load_spec(spec)
    fmt_ = output_format(fmt)
    opt.check_outputs(output, store, False)
    if plot is not None:
        opt.check_outputs(plot)
    with ResultStore(store) as db, progress_bar("sweep", 1) as bar:
        task = bar.add_task("sweep", total=1)
        outcome = run_sweep(parsed, sweep_id, db, workers, measure, [str(z) for z in zoo or []],
                            lambda label, done, total: bar.update(task, description=label, completed=done, total=total),
                            ray=ray)
    df = sweep_frame(outcome)
    ok = int((df["status"] == "ok").sum()) if len(df) else 0
    meta = {"schema": SCHEMA, "sweep": sweep_id, "spec": parsed.model_dump(mode="json"), "points": len(df), "ok": ok,
            "invalid": int((df["status"] == "invalid").sum()) if len(df) else 0,
            "over_budget": int((df["status"] == "over budget").sum()) if len(df) else 0,
            "counted_now": outcome.counted, "count_s": outcome.count_s, "points_per_s": outcome.points_per_s,
            "front": outcome.front, "measured_now": outcome.measured, "store": outcome.store}
    emit(df, fmt_, output, title=f"emobench sweep {sweep_id}", meta=meta, schema=SCHEMA, console=console)
    if plot is not None:
        from emobench.report.plots import sweep_figure, write_figure

        files = write_figure(sweep_figure(df, parsed.measure.backends, f"Sweep {sweep_id}"), plot, png=True)
        err_console.print(f"[dim]chart: {escape(files['html'])}{', ' + escape(files['png']) if files['png'] else ''}"
                          f"{' (' + escape(files['png_note']) + ')' if files['png_note'] else ''}[/]")
    if opt.on_screen(fmt_, output):
        rate = f", {outcome.points_per_s:.1f} points/s" if outcome.points_per_s else ""
        err_console.print(f"[dim]{sweep_id}: {len(df)} points ({ok} ok), {outcome.counted} counted now in "
                          f"{outcome.count_s:.1f} s{rate}; front {len(outcome.front)}, measured now "
                          f"{outcome.measured}; stored in {escape(outcome.store or '')}[/]")
