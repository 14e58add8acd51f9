"""``emobench rf|erf|mpl|modules``: how far a network sees, and the paper's module comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from emobench.cli import options as opt
from emobench.cli.options import (
    MODEL_REFS_HELP,
    FormatOpt,
    OutputOpt,
    ResolutionOpt,
    ZooDirs,
    checks_output,
    console,
    err_console,
    output_format,
    zoo_scoped,
)
from emobench.errors import EmobenchError


@zoo_scoped
@checks_output
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
    JSON schema: emobench.rf/2."""
    from emobench.analysis.rf import model_receptive_field
    from emobench.report.render import emit
    from emobench.report.views import COLUMNS, SCHEMAS, shown

    result = model_receptive_field(model, opt.resolution(resolution), se_as_global)
    h, w = result.input_size
    emit(shown(result.table, "rf", output_format(fmt), output), output_format(fmt), output,
         title=f"{model}: receptive field at {h}x{w} ({result.method.split(' (')[0]})",
         meta={**result.meta, "se_as_global": se_as_global}, console=console, schema=SCHEMAS["rf"],
         columns=COLUMNS["rf"])


@zoo_scoped
@checks_output
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
    from emobench.analysis.erf import erf_study
    from emobench.report.plots import erf_figure, erf_plot_path, write_figure
    from emobench.report.render import emit
    from emobench.report.views import COLUMNS, SCHEMAS

    res = opt.resolution(resolution)
    with opt.progress_bar() as bar:
        tasks: dict[str, object] = {}

        def step(name: str, done: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"ERF {name}", total=num_images)
            bar.advance(tasks[name], done)

        study = erf_study(models, res, images, num_images, seed, checkpoint, step)
    files = write_figure(erf_figure(study.results), erf_plot_path(out_dir, models, res), png)
    emit(study.frame(), output_format(fmt), output, title=f"ERF high-contribution area ratios at {res[0]}x{res[1]}",
         meta={"caption": f"transform log10(x+1)/max; ratio = side²/(H·W) of the smallest centred square above t; "
                          f"heatmap: {files['html']}" + (f", {files['png']}" if files["png"] else ""),
               "input": list(res), "files": files, "inputs": study.source},
         console=console, schema=SCHEMAS["erf"], columns=COLUMNS["erf"])
    if png and files["png_note"]:
        err_console.print(f"warning: {files['png_note']}", markup=False, highlight=False)


@zoo_scoped
@checks_output
def mpl(
    blocks: Annotated[str, typer.Option("--blocks", help="Zoo blocks, comma-separated.")] = "irmb,irmb_contiguous,dwconv,wmhsa,mhsa",
    width: Annotated[str, typer.Option("--width", "-W", help="Map widths W, comma-separated.")] = "7,14,28,56",
    kernel: Annotated[Optional[int], typer.Option("--kernel", "-k", min=1, help="Override the depth-wise kernel of every block.")] = None,
    window: Annotated[Optional[int], typer.Option("--window", "-w", min=1, help="Override the attention window of every block.")] = None,
    count: Annotated[str, typer.Option(help="blocks (the paper's sense: one block = 1) or layers (each spatial op = 1).")] = "blocks",
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Instead: the per-stage MPL of a network at a real resolution.")] = None,
    resolution: ResolutionOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write an MPL-vs-W plot (HTML) here.")] = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Maximum path length: exact (boolean reachability per axis; ∞ when a stack never connects), mean path
    length, and the paper's asymptotic forms (MHSA 1, W-MHSA ∞, DW-Conv 2W/(k−1), iRMB 2W/(k−1+2w)).
    JSON schema: emobench.mpl/1 (emobench.mpl_stages/2 with --model)."""
    from emobench.analysis.mpl import mpl_sweep, stage_table
    from emobench.report.render import emit
    from emobench.report.views import COLUMNS, SCHEMAS, shown
    from emobench.zoo.catalog import get_entry

    units = {"mpl": count, "mean_path": count}
    if model:
        if plot is not None:
            raise EmobenchError("--plot draws the block sweep; leave out --model")
        df, rf_result = stage_table(get_entry(model), opt.resolution(resolution), count)
        emit(shown(df, "mpl_stages", output_format(fmt), output), output_format(fmt), output,
             title=f"{model}: path lengths per stage ({count})",
             meta={"caption": rf_result.caption, "input": list(rf_result.input_size), "count": count, "units": units},
             console=console, schema=SCHEMAS["mpl_stages"], columns=COLUMNS["mpl_stages"])
        return
    if resolution is not None:
        raise EmobenchError("--resolution goes with --model (the block sweep takes --width)")
    df = mpl_sweep(blocks.split(","), opt.ints(width, "widths"), count, kernel, window)
    files = None
    if plot is not None:
        from emobench.report.plots import mpl_figure, write_figure

        files = write_figure(mpl_figure(df), plot)
    emit(df, output_format(fmt), output, title=f"maximum path length ({count})",
         meta={"caption": f"plot: {files['html']}" if files else None, "count": count,
               "units": {**units, "paper_asymptotic": count}},
         console=console, schema=SCHEMAS["mpl"], columns=COLUMNS["mpl"])


@checks_output
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
    from emobench.analysis.modules import irmb_heads, module_table
    from emobench.report.render import emit
    from emobench.report.views import COLUMNS, SCHEMAS

    df = module_table(channels, width, window, kernel, expansion)
    heads, dim_head = irmb_heads(channels)
    emit(df, output_format(fmt), output, title=f"modules at C={channels}, W={width}, w={window}, k={kernel}, "
                                               f"λ={expansion} (iRMB: {heads} head(s) of {dim_head} channels)",
         meta={"input": {"channels": channels, "width": width, "window": window, "kernel": kernel, "expansion": expansion},
               "caption": "formula FLOPs include softmax/scaling terms (3L², 3Ll) that counters skip"},
         console=console, schema=SCHEMAS["modules"], columns=COLUMNS["modules"])
