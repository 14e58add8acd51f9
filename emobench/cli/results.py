"""``emobench results list|compare|export|merge``: the stored records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from emobench.cli import options as opt
from emobench.cli.options import FormatOpt, OutputOpt, StoreOpt, checks_output, console, err_console, output_format
from emobench.errors import EmobenchError

app = typer.Typer(help="List, compare, export and merge stored benchmark records.", no_args_is_help=True)


@app.command("list")
@checks_output
def results_list(
    filters: Annotated[Optional[list[str]], typer.Argument(help="field=value filters, e.g. model=emo_1m backend=torch cpu_flags=avx512f torch_version=2.13.0.")] = None,
    limit: Annotated[int, typer.Option(help="Show the newest N records (0: all).")] = 50,
    store: StoreOpt = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
) -> None:
    """Stored records, newest last, with their ratio to torch eager where one exists. JSON and CSV carry every
    stored field (schema emobench.bench/1, environment columns and columns unknown to emobench included)."""
    from emobench.report.render import Format, emit, format_for
    from emobench.report.views import records_output, stored_records_frame
    from emobench.results.store import ResultStore

    if limit < 0:
        raise EmobenchError(f"--limit takes a count >= 0 (0: all), got {limit}")
    fmt_ = output_format(fmt)
    with ResultStore(store, readonly=True) as db:
        df = db.records(**opt.filters(filters))
        where = str(db.path)
    df = df.tail(limit) if limit > 0 else df
    shown = format_for(fmt_, output)
    rows, meta, schema = records_output(df, None, shown, where)
    if shown not in (Format.json, Format.csv):
        rows, meta = stored_records_frame(df), {}
    emit(rows, fmt_, output, title=f"{len(rows)} record(s)", meta=meta, schema=schema, console=console)


@app.command("compare")
@checks_output
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
    from emobench.report.render import emit
    from emobench.report.views import COLUMNS, SCHEMAS
    from emobench.results.query import compare, regressions
    from emobench.results.store import ResultStore

    if fail_above is not None and not fail_above >= 0:
        raise EmobenchError(f"--fail-above takes a percentage >= 0, got {fail_above}")
    with ResultStore(store, readonly=True) as db:
        df = compare(db.records(), opt.filters(a.split(",")), opt.filters(b.split(",")))
    emit(df, output_format(fmt), output, title=f"{b} vs {a} (ratio < 1: B is faster)",
         meta={"a": a, "b": b, "fail_above_pct": fail_above}, schema=SCHEMAS["compare"], columns=COLUMNS["compare"],
         console=console)
    slow = regressions(df, fail_above) if fail_above is not None else ()
    if len(slow):
        err_console.print(f"[red]{len(slow)} pair(s) slower by more than {fail_above:g} % beyond their noise[/]")
        raise typer.Exit(1)


@app.command("breakdown")
@checks_output
def results_breakdown(
    filters: Annotated[Optional[list[str]], typer.Argument(help="field=value filters, e.g. model=emo_1m backend=openvino.")] = None,
    by: Annotated[Optional[str], typer.Option("--by", help="Roll up by part (the M² parts of every block), block, stage or op (the runtime's operator types). Default: part where the method sees operators, else block.", show_default=False)] = None,
    method: Annotated[Optional[str], typer.Option("--method", help="Only this method's breakdowns: profiler or prefix.", show_default=False)] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also write a stacked-bar chart (time share vs MACs share by M² part, one pair of bars per runtime) to this .html file, and a .png beside it where an exporter exists.", show_default=False)] = None,
    store: StoreOpt = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
) -> None:
    """Where the time goes, from stored `bench --breakdown` records (the newest of each model, backend, form,
    dtype, batch and threads): time, share of the headline median, emobench's MACs and their share, and the
    achieved GMAC/s per group, with the unattributed remainder as its own row; the closure against the same
    run's headline median is said for each. JSON schema: emobench.breakdown/1 (meta.breakdowns: source,
    headline, attributed, closure per breakdown)."""
    from emobench.analysis.breakdown import ROLLUPS
    from emobench.cli.bench import show_breakdowns
    from emobench.report.render import Format, emit, format_for
    from emobench.report.views import COLUMNS, SCHEMAS, breakdown_output, newest_breakdowns
    from emobench.results.store import ResultStore

    if by is not None and by not in ROLLUPS:
        raise EmobenchError(f"--by takes {', '.join(ROLLUPS)}, got '{by}'")
    if method is not None and method not in ("profiler", "prefix"):
        raise EmobenchError(f"--method takes profiler or prefix, got '{method}'")
    if plot is not None and plot.suffix.lower() != ".html":
        raise EmobenchError(f"--plot writes an .html file (a .png beside it), got '{plot.name}'")
    opt.check_outputs(plot, store, no_store=False)
    with ResultStore(store, readonly=True) as db:
        df = db.records(**opt.filters(filters))
    newest = newest_breakdowns(df)
    if newest.empty:
        raise EmobenchError("no stored record has a breakdown (measure one with `emobench bench MODEL -B … --breakdown`)")
    fmt_ = output_format(fmt)
    if format_for(fmt_, output) is Format.table and output is None:
        show_breakdowns(newest.to_dict("records"), by, method)
    else:
        rows, meta = breakdown_output(newest, by, method)
        emit(rows, fmt_, output, title="where the time goes", meta=meta, schema=SCHEMAS["breakdown"],
             columns=COLUMNS["breakdown"], console=console)
    if plot is not None:
        from emobench.report.plots import breakdown_figure, write_figure

        parts, _ = breakdown_output(newest, "part", method)
        if parts.empty:
            raise EmobenchError("no breakdown by M² part to plot (prefix differencing has none: measure with a profiler)")
        files = write_figure(breakdown_figure(parts), plot, png=True)
        err_console.print(f"chart written to {files['html']}" + (f" and {files['png']}" if files["png"] else f" ({files['png_note']})"),
                          markup=False, highlight=False)


@app.command("export")
def results_export(
    output: Annotated[Path, typer.Argument(help="A .csv or .json file.")],
    filters: Annotated[Optional[list[str]], typer.Argument(help="field=value filters.")] = None,
    store: StoreOpt = None,
) -> None:
    """Every stored record with all its fields (environment columns, and columns this emobench does not know,
    included) as CSV or JSON."""
    from emobench.paths import write_text
    from emobench.results.record import records_writer
    from emobench.results.store import ResultStore

    text_of = records_writer(output.name)
    with ResultStore(store, readonly=True) as db:
        df = db.records(**opt.filters(filters))
    write_text(text_of(df), output)
    console.print(f"{len(df)} record(s) written to {output}", markup=False, highlight=False)


@app.command("merge")
def results_merge(
    sources: Annotated[list[Path], typer.Argument(help="Stores from other machines to merge in.")],
    store: StoreOpt = None,
) -> None:
    """Copy the records of other stores into this one by record id (merging twice adds nothing; records already
    here are never replaced); columns unknown to this emobench come along."""
    from emobench.results.store import ResultStore

    with ResultStore(store) as db:
        added = db.merge(sources)
        console.print(f"{added} record(s) added to {db.path} ({db.count()} in all)", markup=False, highlight=False)
