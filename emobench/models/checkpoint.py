"""Loading weights without executing code: ``torch.load(weights_only=True)`` or safetensors."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from emobench.errors import CheckpointError

#: Keys under which training frameworks nest the state dict, in order of preference (EMA first, as the
#: official EMO release reports its EMA accuracy).
NESTED_KEYS = ("net_E", "net", "state_dict", "model")


def is_safetensors(path: Path) -> bool:
    """Whether the file is laid out as safetensors, whatever its suffix: an 8-byte little-endian header length (of
    a sane size), then the JSON header's "{". A pickle (``\\x80``), a zip (``PK``) or text reads as an absurd length."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and 2 <= int.from_bytes(head[:8], "little") <= 100_000_000 and head[8:] == b"{"


def read_state_dict(path: str | os.PathLike, prefer_ema: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a checkpoint file and where they were found (``"net_E"``, ``"(top level)"``, ...)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors" or is_safetensors(path):  # by content: a .pth may hold safetensors
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), "(safetensors)"
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file: {err}") from None
    try:
        with warnings.catch_warnings():  # torch's advice on pickle protocols: emobench says what matters below
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is the same user error
        # torch's own message advises loading with weights_only=False: emobench never does, nor suggests it.
        if "weights only load failed" in str(err).lower():
            raise CheckpointError(
                f"{path}: holds Python objects beyond tensors, and emobench never runs code from a file; save "
                "the state dict (torch.save(model.state_dict(), path)) or a .safetensors file") from None
        raise CheckpointError(f"{path}: not a PyTorch weights file or a .safetensors file ({type(err).__name__})") from None
    order = NESTED_KEYS if prefer_ema else tuple(k for k in NESTED_KEYS if k != "net_E") + ("net_E",)
    if isinstance(data, dict):
        for key in order:
            if isinstance(data.get(key), dict):
                data, where = data[key], key
                break
        else:
            where = "(top level)"
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: holds no state dict (a mapping of names to tensors)")
    # DataParallel / DDP checkpoints prefix every key with "module.".
    if data and all(k.startswith("module.") for k in data):
        data = {k[len("module."):]: v for k, v in data.items()}
    return data, where


def _listing(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_checkpoint(model: nn.Module, path: str | os.PathLike, prefer_ema: bool = True, strict: bool = True) -> str:
    """Load a checkpoint into ``model``; returns where in the file the weights were found.

    Accepts a raw state dict, a dict holding ``net_E`` (EMA, preferred) or ``net`` as the official EMO release
    ships, ``state_dict``/``model`` nests, and ``.safetensors``. Nothing is unpickled beyond tensors. A
    checkpoint that does not fit raises one :class:`CheckpointError` naming the missing, unexpected and
    mis-shaped keys.
    """
    state, where = read_state_dict(path, prefer_ema)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    if missing and strict:
        problems.append(f"{len(missing)} missing: {_listing(missing)}")
    if unexpected and strict:
        problems.append(f"{len(unexpected)} unexpected: {_listing(unexpected)}")
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped (checkpoint vs model): {_listing(misshaped, 3)}")
    if problems:
        raise CheckpointError(f"{path} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return where
