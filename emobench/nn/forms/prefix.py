"""Networks cut after each block: prefix differencing times the network cut after block k for every k and
takes differences, attributing latency to blocks on any runtime (no profiler needed)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

import torch
from torch import nn

from emobench.nn.emo import EMO
from emobench.nn.m2 import M2Block


def _parts(form: nn.Module) -> tuple[nn.Module, list[nn.Module]] | None:
    """(what computes the stem, the blocks in order) of a formulation, or None when it has no block sequence."""
    if isinstance(form, EMO):  # the reference form: stage0 opens with the patch embedding
        return form.stage0[0], [b for stage in form.stages for b in stage if isinstance(b, M2Block)]
    if callable(getattr(form, "forward_stem", None)) and isinstance(getattr(form, "blocks", None), nn.Sequential):
        return form, list(form.blocks)
    stem, stages = getattr(form, "stem", None), getattr(form, "stages", None)
    if isinstance(stem, nn.Module) and isinstance(stages, nn.Sequential) and len(stages) \
            and callable(getattr(form, "forward_features", None)):
        return stem, list(stages)  # timm's layout (stem → stages → head): cut after each stage
    return None


def generic_cuts(form: nn.Module) -> list[str] | None:
    """The module paths the cuts of a model outside emobench's families follow (timm's ``stages.K``), or None
    for emobench's own networks (their cuts follow the M² blocks)."""
    parts = _parts(form)
    if parts is None or isinstance(form, EMO) or callable(getattr(form, "forward_stem", None)):
        return None
    return [f"stages.{k}" for k in range(len(parts[1]))]


def block_count(form: nn.Module) -> int | None:
    """How many blocks ``form`` runs in sequence after its stem (None: it cannot be cut into prefixes)."""
    parts = _parts(form)
    return None if parts is None else len(parts[1])


class Prefix(nn.Module):
    """``form`` cut after its first ``k`` blocks (the stem alone for k = 0); it returns that block's map."""

    def __init__(self, form: nn.Module, k: int) -> None:
        super().__init__()
        parts = _parts(form)
        if parts is None:
            raise ValueError(f"{type(form).__name__} has no stem and block sequence to cut")
        stem, blocks = parts
        if not 0 <= k <= len(blocks):
            raise ValueError(f"cut after block {k}: the network has {len(blocks)}")
        self.stem = stem
        self.blocks = nn.Sequential(*blocks[:k])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem.forward_stem(x) if callable(getattr(self.stem, "forward_stem", None)) else self.stem(x)
        return self.blocks(x)


class Piece(nn.Module):
    """One block of a formulation alone: what the network spends between cut k and cut k + 1, measured in
    isolation for a latency table."""

    def __init__(self, form: nn.Module, k: int) -> None:
        super().__init__()
        parts = _parts(form)
        if parts is None:
            raise ValueError(f"{type(form).__name__} has no stem and block sequence to cut")
        self.block = parts[1][k]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class CallOverhead(nn.Module):
    """One element added to: the cost of a call itself (dispatch, input and output copies), which a piece timed
    in isolation pays and the network around it does not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


#: block configuration fields that change training, not the inference graph
TRAINING_ONLY = ("drop_path", "drop", "attn_drop")


def inference_config(cfg) -> dict:
    """A block configuration without its training-only rates: what decides the block's inference graph."""
    return {f: v for f, v in cfg.model_dump(mode="json").items() if f not in TRAINING_ONLY}


@dataclass
class PartCuts:
    """A distinct block of a formulation (configuration and input shape), which ``blocks`` of the network share:
    its ``parts`` in execution order and, through :meth:`cut`, the block stopped after each (the last cut is
    the whole block), returning one element of each tensor live there (:class:`EmptyCut` pays the rest)."""

    blocks: list[int]
    input: torch.Tensor
    parts: list[str]
    block: nn.Module = field(repr=False)

    def cut(self, tap: int) -> nn.Module:
        """The block stopped after its ``tap``-th part (1-based)."""
        return self.block.cut_at(tap)


class EmptyCut(nn.Module):
    """What every in-block cut pays besides the block's parts: its input handed in, one element handed back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1)[:1] + 1.0


@torch.no_grad()
def part_cuts(form: nn.Module, x: torch.Tensor) -> list[PartCuts] | None:
    """The distinct blocks of ``form`` on input ``x``, each with its in-block cuts; None when the form's blocks
    have no taps (only the mobile forms mark where their M² parts end)."""
    found = _parts(form)
    if found is None or not found[1] or not all(callable(getattr(b, "cut_at", None)) for b in found[1]):
        return None
    blocks = found[1]
    y = Prefix(form, 0)(x)
    groups: dict[str, PartCuts] = {}
    for k, block in enumerate(blocks):
        key = json.dumps([inference_config(block.cfg), list(y.shape), type(block).__name__,
                          bool(getattr(block, "tokens", False))], sort_keys=True)
        if key not in groups:
            groups[key] = PartCuts([], y, block.parts(y), block)
        groups[key].blocks.append(k)
        y = block(y)
    return list(groups.values())


class Tail(nn.Module):
    """What a formulation runs after its last block (the final norm, pooling and classifier): the network with
    its stem and blocks taken out, on the last block's map."""

    def __init__(self, form: nn.Module) -> None:
        super().__init__()
        if _parts(form) is None or generic_cuts(form) is not None:
            raise ValueError(f"{type(form).__name__} has no tail emobench can separate")
        if isinstance(form, EMO):  # its head reads only these two
            self.norm, self.head, self.emo = form.norm, form.head, True
            return
        rest = copy.copy(form)  # the same parameters; its own module table, so the original keeps its blocks
        rest._modules = dict(form._modules)
        rest._modules["blocks"] = _Skipped(form.blocks)
        rest.forward_stem = _identity
        if "stem" in rest._modules:  # a form whose forward calls its stem module directly
            rest._modules["stem"] = nn.Identity()
        self.net, self.emo = rest, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return EMO.forward_head(self, x) if self.emo else self.net(x)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class _Skipped(nn.Module):
    """A block sequence that passes its input through; indexing still reads the blocks (a form's head may ask
    its first block how it lays tokens out), which stay unregistered here: the tail holds none of their weights."""

    def __init__(self, blocks: nn.Sequential) -> None:
        super().__init__()
        object.__setattr__(self, "skipped", blocks)

    def __getitem__(self, index):
        return self.skipped[index]

    def __len__(self) -> int:
        return len(self.skipped)

    def __iter__(self):
        return iter(())  # a form that loops over its blocks runs none

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
