"""``emobench zoo load``: whether a checkpoint fits a zoo model, checked by loading it (tensors only, no code)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from emobench.models.budget import check_fits
from emobench.models.checkpoint import load_checkpoint
from emobench.models.references import resolve


@dataclass(frozen=True)
class CheckpointFit:
    model: str
    checkpoint: str
    loaded_from: str  #: where in the file the state dict was found ("net_E", "(top level)", "(safetensors)")
    tensors: int  #: entries of the model's state dict, every one loaded
    params: int

    def row(self) -> dict:
        return asdict(self)


def check_checkpoint(model, checkpoint: str | os.PathLike) -> CheckpointFit:
    """Build ``model`` (a zoo reference; its weights must fit in memory, checked first) and load ``checkpoint``
    into it; a checkpoint that does not fit raises one error naming the missing, unexpected and mis-shaped keys."""
    ref = resolve(model)
    check_fits(ref, ref.input_shape(), run=False)
    net = ref.construct()
    where = load_checkpoint(net, checkpoint)
    return CheckpointFit(ref.text, str(checkpoint), where, len(net.state_dict()),
                         sum(p.numel() for p in net.parameters()))
