"""``emobench train-cost``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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
    output_format,
    progress_bar,
    resolution,
    zoo_scoped,
)


@zoo_scoped
def train_cost(
    models: Annotated[list[str], typer.Argument(help=MODEL_REFS_HELP)],
    resolution_: ResolutionOpt = None,
    batch: Annotated[int, typer.Option("--batch", "-b", min=1, help="Batch size of the measured step.")] = 32,
    optimizer: Annotated[str, typer.Option(help="adamw (the EMO recipe's: betas 0.9/0.999, weight decay 0.05) or sgd (momentum 0.9).")] = "adamw",
    dtype: Annotated[str, typer.Option(help="fp32, or bf16-autocast (the forward under bf16 autocast; weights, gradients and optimizer state stay fp32).")] = "fp32",
    checkpointing: Annotated[bool, typer.Option("--checkpointing", help="Gradient checkpointing: each M² block (or the model's own set_grad_checkpointing, timm's API) recomputed in backward.")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="Time the step with torch.compile (compilation in the untimed first step).")] = False,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps (the median is reported with its spread).")] = 10,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed steps first.")] = 3,
    threads: Annotated[Optional[int], typer.Option("--threads", "-t", min=1, help="CPU threads (default: torch's; at most the core count).")] = None,
    depth: Annotated[int, typer.Option("--depth", "-d", min=0, help="Per-layer table down to this module depth (0: the model alone).")] = 1,
    counts_only: Annotated[bool, typer.Option("--counts-only", help="FLOPs only: no memory, no timing, nothing stored.")] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Paper-scale estimate: epochs (default: the EMO recipe's).")] = 300,
    images: Annotated[int, typer.Option(min=1, help="Paper-scale estimate: training images per epoch (default: ImageNet-1k's).")] = 1_281_167,
    recipe_batch: Annotated[int, typer.Option("--recipe-batch", min=1, help="Paper-scale estimate: global batch, drop_last (default: the EMO recipe's).")] = 2048,
    layers: Annotated[bool, typer.Option("--layers", help="With --format csv: the per-layer table instead of the metrics.")] = False,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Weights to load first.")] = None,
    store: StoreOpt = None,
    no_store: NoStoreOpt = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    zoo: ZooDirs = None,
) -> None:
    """What one training step costs: forward and backward FLOPs counted per operator and per layer (the
    backward/forward ratio beside fvcore's forward-only figure, the '2 × forward' estimate and torch's
    FlopCounterMode), peak training memory split into parameters, gradients, optimizer state and the
    activations kept for backward (checked against autograd's saved tensors), and the step's time split into
    forward, backward and optimizer; then a paper-scale estimate (FLOPs and time for the recipe's epochs).

    FLOPs = 2 × MACs. Memory is measured on the CPU at the aten dispatch level (and with
    torch.cuda.max_memory_allocated on a GPU). Timed steps are stored (backend torch, form train:OPTIMIZER);
    JSON schema emobench.train/1."""
    from emobench.environment import environment
    from emobench.report.views import render_train_costs
    from emobench.runs.train import Recipe, check_models, train_cost as run, train_record

    fmt_ = output_format(fmt)
    check_models(models, resolution(resolution_), batch, optimizer)
    recipe = Recipe(epochs=epochs, images=images, batch=recipe_batch)
    keep = not (no_store or counts_only)
    opt.check_outputs(output, store if keep else None, not keep)
    db = _open_store(store) if keep else None
    costs = []
    try:
        with progress_bar("training cost", 1) as bar:
            task = bar.add_task("training cost", total=1)
            for i, model in enumerate(models):
                def step(label: str, done: int, total: int, i=i) -> None:
                    bar.update(task, description=f"[{i + 1}/{len(models)}] {label}", completed=done, total=total)

                cost = run(model, resolution(resolution_), batch, optimizer, dtype, checkpointing, compile_, steps,
                           warmup, threads, depth, counts_only, recipe, str(checkpoint) if checkpoint else None, step,
                           preflight=False)  # check_models did it, for every model before the first
                costs.append(cost)
                if db is not None:
                    db.add(train_record(cost))
    finally:
        if db is not None:
            db.close()
    render_train_costs(costs, fmt_, output, environment(threads), layers, console)
    if db is not None and opt.on_screen(fmt_, output):
        err_console.print(f"[dim]{len(costs)} record(s) stored in {db.path}[/]")


def _open_store(store):
    from emobench.results.store import ResultStore

    return ResultStore(store)
