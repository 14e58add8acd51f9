"""``emobench export``: write the artifact ``emobench bench`` measures, with a sidecar JSON describing it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from emobench.cli import options as opt
from emobench.cli.options import ResolutionOpt, ZooDirs, console, err_console


@opt.zoo_scoped
def export(
    model: Annotated[str, typer.Argument(help=opt.MODEL_REFS_HELP)],
    backend: Annotated[str, typer.Option("--backend", "-B", help="A backend that writes a file: onnxruntime (.onnx), openvino (.xml + .bin), executorch (.pte), litert (.tflite).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The artifact's path (the backend's suffix is added when it has none; the sidecar is PATH.json).")],
    form: Annotated[str, typer.Option("--form", help="auto (the first of the backend's preferred formulations that passes parity) or a formulation name.")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="fp32, or int8 (static post-training quantization, calibrated on random inputs).")] = "fp32",
    resolution: ResolutionOpt = None,
    batch: Annotated[int, typer.Option("--batch", "-b", min=1, help="The batch size the artifact is exported at.")] = 1,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Weights to load first.")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="table (a short summary, default) or json (the sidecar).", show_default=False)] = None,
    zoo: ZooDirs = None,
) -> None:
    """Write the exact artifact `emobench bench` measures for MODEL on one backend (same export, same cache, same
    parity check against eager fp32 torch), and PATH.json beside it: the model, runtime, form, dtype, input,
    parity figures, versions and the artifact's sha256."""
    from emobench.errors import EmobenchError
    from emobench.runs.export import export_artifact

    if fmt not in (None, "table", "json"):
        raise EmobenchError(f"--format: choose table or json, not {fmt}")
    res = export_artifact(model, backend, output, form=form, dtype=dtype, resolution=opt.resolution(resolution),
                          batch=batch, checkpoint=str(checkpoint) if checkpoint else None)
    if fmt == "json":
        print(json.dumps(res.to_dict(), indent=2, default=str))
        return
    parity = res.parity
    check = (f"max |Δ| {parity['max_abs']:.3g} <= {parity['tolerance']:g}" if res.dtype != "int8" else
             f"top-1 agreement {parity['top1_agreement']:.4f}, logit cosine {parity['logit_cosine']:.4f}")
    console.print(f"{escape(res.artifact)}: {escape(res.model)} on {res.backend} {escape(res.runtime_version)}, "
                  f"form {res.form}, {res.dtype}, input {'x'.join(map(str, res.input_shape))}, {res.bytes:,} bytes",
                  highlight=False, soft_wrap=True)
    console.print(f"parity vs eager fp32 torch: {check}; sha256 {res.sha256}", highlight=False, soft_wrap=True)
    for c in res.companions:
        console.print(f"with {escape(c['path'])} ({c['bytes']:,} bytes)", highlight=False, soft_wrap=True)
    err_console.print(f"[dim]sidecar: {escape(res.artifact)}.json[/]")
