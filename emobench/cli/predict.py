"""``emobench predict``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from emobench.cli import options as opt
from emobench.cli.options import (MODEL_REFS_HELP, FormatOpt, OutputOpt, ResolutionOpt, StoreOpt, ZooDirs, console,
                                  err_console, output_format, progress_bar, resolution, zoo_scoped)


@zoo_scoped
def predict(
    models: Annotated[list[str], typer.Argument(help=MODEL_REFS_HELP)],
    backend: Annotated[str, typer.Option("--backend", "-B", help="Runtimes, comma-separated (torch, onnxruntime, openvino, executorch, litert).")] = "torch",
    threads: Annotated[int, typer.Option("--threads", "-t", min=1, help="CPU threads the tables are measured with.")] = 1,
    form: Annotated[str, typer.Option("--form", help="Formulation: auto (the runtime's preferred one the model has) or a name.")] = "auto",
    method: Annotated[str, typer.Option("--method", help="isolated: each piece alone, less an empty call per piece; pairs: each piece timed followed by the next, less the next alone (a call's borders cancel; the sum telescopes to one call); calibrated: isolated with each empty call taken off k times, k fitted per runtime on calibration networks measured whole (--calibrate-on); several: 'isolated,calibrated'.")] = "isolated",
    calibrate_on: Annotated[list[str] | None, typer.Option("--calibrate-on", help="A calibration network of --method calibrated (a model reference; repeat the option for several; default: the zoo's EMO variants emo_1m, emo_2m, emo_5m, emo_6m); each measured whole once per runtime and threads, a calibration network itself predicted from the others.")] = None,
    measure: Annotated[bool, typer.Option("--measure", help="Also time each whole network in the same formulation, in the same worker's interleaved passes as every table row it needs (re-timed, stored ones included), and show the prediction's error.")] = False,
    rounds: Annotated[int, typer.Option(min=1, help="Interleaved passes over the table rows (and with --measure, the networks): many short passes outlast the host's slow spells.")] = 10,
    min_time: Annotated[float, typer.Option(min=0, help="Seconds timed per table row (and network) in each pass.")] = 0.05,
    resolution_: ResolutionOpt = None,
    store: StoreOpt = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Latency predicted from measured block tables: each network cut into stem, blocks and tail in the
    runtime's formulation, every distinct table row measured once (stored as `piece:…` records and reused on
    this machine, runtime version and threads), measured per runtime in one worker's interleaved passes; the
    network = the sum of its pieces less an empty call per piece (--method isolated), or each piece's cost when
    followed by the next (--method pairs), or the isolated sum with each empty call taken off k times, k fitted
    per runtime on calibration networks measured whole (--method calibrated). JSON schema emobench.predict/3."""
    from emobench.report.render import emit
    from emobench.results.store import ResultStore
    from emobench.runs.predict import SCHEMA, error_summary, predict as run, prediction_errors

    backends = opt.backends(backend)
    fmt_ = output_format(fmt)
    opt.check_outputs(output, store, False)
    with ResultStore(store) as db, progress_bar("predict", 1) as bar:
        task = bar.add_task("predict", total=1)
        preds = run(models, backends, threads, db, form, resolution(resolution_), rounds, min_time,
                    lambda label, done, total: bar.update(task, description=label, completed=done, total=total), method,
                    measure=measure, calibration=calibrate_on or None)
    import pandas as pd

    rows = prediction_errors(preds)
    df = pd.DataFrame(rows)
    meta = {"schema": SCHEMA, "threads": threads, "summary": error_summary(rows) if measure else None,
            "pieces": {f"{p.model} {p.backend}": p.rows for p in preds}}
    emit(df, fmt_, output, title="emobench predict", meta=meta, schema=SCHEMA, console=console)
    if measure and opt.on_screen(fmt_, output):
        for b, s in meta["summary"].items():
            if s["n"]:
                err_console.print(escape(f"{b}: {s['within']} of {s['n']} within 10 %, median |error| "
                                         f"{s['median_abs_error']:.1%}"), highlight=False)
