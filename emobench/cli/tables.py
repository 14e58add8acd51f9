"""``emobench table`` and ``emobench report``: the paper's comparison tables, and everything regenerated at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from emobench.cli.options import (
    FormatOpt,
    OutputOpt,
    StoreOpt,
    checks_output,
    console,
    err_console,
    output_format,
    progress_bar,
)
from emobench.errors import EmobenchError


@checks_output
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
    machine (meta.measured_speed in JSON). JSON and CSV carry the typed columns (schema emobench.table/2)."""
    from emobench.paths import write_text
    from emobench.report.render import DOCUMENT_FORMATS, Format, emit, format_for
    from emobench.report.tables import comparison_table
    from emobench.report.views import SCHEMAS, table_columns

    if papers is not None and not papers.is_dir():
        raise EmobenchError(f"papers folder not found: {papers}")
    kind = format_for(output_format(fmt, documents=True), output, DOCUMENT_FORMATS)
    result = comparison_table(name, store, papers)
    meta = result.meta
    if kind in (Format.latex, Format.html, Format.md):
        text = result.document(kind.value)
        print(text, end="") if output is None else write_text(text, output)
    elif kind in (Format.csv, Format.json):  # the typed frame: stable keys, units from the reported labels
        emit(result.data, kind, output, title=meta["title"], meta={**meta, "table": name}, console=console,
             schema=SCHEMAS["table"], columns=table_columns(result))
    else:
        emit(result.display(), kind, output, title=meta["title"], meta=meta, console=console)
        for title, section in result.sections.items() if output is None else ():
            if section.empty:
                console.print(f"{title}: {meta['measured_speed']['note']}", markup=False, highlight=False)
            else:
                emit(section, None, None, title=title, console=console)


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
    from emobench.report.build import build_report
    from emobench.report.render import Format, emit
    from emobench.report.views import COLUMNS, SCHEMAS

    fmt_ = output_format(fmt)
    with progress_bar("report") as bar:
        task = bar.add_task("report", total=None)
        result = build_report(out_dir, erf_images, store, lambda label: bar.update(task, description=label), png)
    for note in result.notes:
        err_console.print(f"note: {note}", markup=False, highlight=False)
    if fmt_ in (None, Format.table):
        for f in result.files:
            console.print(f"{f.path}  {f.what}", markup=False, highlight=False)
        return
    emit(result.files_frame(), fmt_, None, title=f"emobench report: {out_dir}",
         meta={"out_dir": str(out_dir), "notes": result.notes}, console=console, schema=SCHEMAS["report"],
         columns=COLUMNS["report"])
