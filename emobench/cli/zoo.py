"""``emobench zoo list|show|load``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from emobench.cli.options import (
    FormatOpt,
    OutputOpt,
    ResolutionOpt,
    ZooDirs,
    checks_output,
    console,
    on_screen,
    output_format,
    resolution,
    zoo_scoped,
)
from emobench.errors import EmobenchError

app = typer.Typer(help="List and inspect the model zoo (zoo/*.toml and EMOBENCH_ZOO_PATH).", no_args_is_help=True)


@app.command("list")
@zoo_scoped
@checks_output
def zoo_list(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'emo_*'.")] = "*",
    family: Annotated[Optional[str], typer.Option(help="Only this family (emo, m2, mobilenetv2, vit, pvt, detector, segmenter).")] = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """Every zoo model: name, family, parameter count, default input and summary. JSON schema: emobench.zoo_list/2."""
    from emobench.report.render import emit
    from emobench.report.views import COLUMNS, SCHEMAS, shown
    from emobench.zoo.catalog import get_zoo, list_models, zoo_listing

    found = list_models(pattern, family)
    if not found:
        raise EmobenchError(f"no zoo model matches '{pattern}'" + (f" in family '{family}'" if family else ""))
    df = zoo_listing(found)
    emit(shown(df, "zoo_list", output_format(fmt), output), output_format(fmt), output, title=f"emobench zoo ({len(df)} models)",
         meta={"zoo": [str(d) for d in get_zoo().dirs]}, console=console, schema=SCHEMAS["zoo_list"],
         columns=COLUMNS["zoo_list"])


@app.command("show")
@zoo_scoped
@checks_output
def zoo_show(
    name: Annotated[str, typer.Argument(help="A zoo model, e.g. emo_5m (also emo_5m@256, emo_5m,window=contiguous).")],
    resolution_: ResolutionOpt = None,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """A model's configuration and its block-by-block layout: widths, strides, kernels, attention, output maps.
    JSON schema: emobench.zoo_show/2. (Built on torch's meta device: nothing is allocated at any size.)"""
    from emobench.models.architecture import describe
    from emobench.report.render import emit
    from emobench.report.views import COLUMNS, SCHEMAS, shown

    layout = describe(name, resolution(resolution_))
    fmt_ = output_format(fmt)
    if on_screen(fmt_, output):
        console.print("\n".join(layout.header()), markup=False, highlight=False)
    c, h, w = layout.input
    emit(shown(layout.blocks, "zoo_show", fmt_, output), fmt_, output, title=f"{layout.entry.name} blocks at {c}x{h}x{w}", meta=layout.meta,
         console=console, schema=SCHEMAS["zoo_show"], columns=COLUMNS["zoo_show"])


@app.command("load")
@zoo_scoped
@checks_output
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

    from emobench.models.loading import check_checkpoint
    from emobench.report.render import emit
    from emobench.report.views import COLUMNS, SCHEMAS

    fit = check_checkpoint(name, checkpoint)
    fmt_ = output_format(fmt)
    if on_screen(fmt_, output):
        console.print(f"{checkpoint}: loaded into {name} from {fit.loaded_from}: {fit.tensors} tensors, "
                      f"{fit.params:,} parameters", markup=False, highlight=False)
        return
    emit(pd.DataFrame([fit.row()]), fmt_, output, title=f"{checkpoint} into {name}", console=console,
         schema=SCHEMAS["zoo_load"], columns=COLUMNS["zoo_load"])
