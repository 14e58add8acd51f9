"""Small layers shared by every model family, named so state-dict keys match the official EMO code."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

ActName = Literal["none", "relu", "relu6", "silu", "gelu", "hardswish", "sigmoid"]
NormName = Literal["none", "bn", "ln"]

# Sanity bounds of every configuration schema: far beyond any real network, and low enough that a model within
# them can be built on the meta device (no tensor's element count overflows, building takes seconds), so that
# what is beyond them is one clear validation error instead of an overflow, an exhausted memory or an endless
# build. Whether a model within them fits the machine is the memory budget's question (emobench.models.budget).
MAX_CHANNELS = 2**16  #: channels of any layer (in, mid, out, head features)
MAX_KERNEL = 255  #: a convolution's kernel side (and the spatial reduction's)
MAX_DILATION = 64
MAX_WINDOW = 1024  #: an attention window's side
MAX_BLOCKS = 512  #: M² blocks in one network (ViT-22B has 96)
MAX_CLASSES = 2**40  #: classifier outputs
MAX_IMAGE = 2**14  #: a fixed input side (ViT's and PVT's position maps)
MAX_SCORES = 2**48  #: attention scores (heads × queries × keys) over a fixed input
MAX_INPUT_SIDE = 2**17  #: an input map's side (a larger map overflows the layers' element counts)
MAX_MAP_ELEMENTS = 2**56  #: elements of one map or attention score tensor for an input

Channels = Annotated[int, Field(ge=1, le=MAX_CHANNELS)]
#: a width multiplier or expansion ratio: finite and positive (the channels it gives are checked where it is used)
Ratio = Annotated[float, Field(gt=0, le=MAX_CHANNELS, allow_inf_nan=False)]
Kernel = Annotated[int, Field(ge=1, le=MAX_KERNEL)]
Eps = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def keeps_size(kernel: int, dilation: int = 1) -> bool:
    """Whether a stride-1 conv padded by :func:`same_padding` keeps the map size: only an odd effective kernel
    ((k − 1)·d + 1) does; an even one pads one row/column too many (the map grows by one)."""
    return (kernel - 1) * dilation % 2 == 0


def even_kernel_message(field: str, kernel: int, dilation: int = 1) -> str:
    dil = f" at dilation {dilation}" if dilation != 1 else ""
    return (f"{field}={kernel}{dil} is an even kernel: the depth-wise conv pads 'same' (ceil((k - 1) / 2) per "
            f"side), which keeps the map size only for an odd kernel, so a stride-1 block would grow its map")

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "none": nn.Identity,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "hardswish": nn.Hardswish,
    "sigmoid": nn.Sigmoid,
}


def make_act(name: ActName) -> nn.Module:
    return _ACTIVATIONS[name]()


#: name → (functional form, in-place form) of each activation, for the inference paths
_FUNCTIONS = {
    "none": (None, None),
    "relu": (F.relu, torch.relu_),
    "relu6": (F.relu6, lambda x: F.relu6(x, inplace=True)),
    "silu": (F.silu, lambda x: F.silu(x, inplace=True)),
    "gelu": (F.gelu, torch.ops.aten.gelu_),
    "hardswish": (F.hardswish, lambda x: F.hardswish(x, inplace=True)),
    "sigmoid": (torch.sigmoid, torch.sigmoid_),
}


def act_fn(name: ActName):
    """The functional form of an activation, for the fused inference path."""
    return _FUNCTIONS[name][0]


def in_place_act_fn(name: ActName):
    """:func:`act_fn` that overwrites its argument while no gradient is recorded (inference).

    For call sites whose argument is a fresh linear/conv output used nowhere else (the fused form's): each
    activation then allocates no new map, and a new multi-MB map costs its page faults on first touch
    (eager emo_1m at 2 threads: 0.59 → 0.55 × the official formulation, same outputs bit for bit)."""
    fn, in_place = _FUNCTIONS[name]
    if fn is None:
        return None
    return lambda x: fn(x) if torch.is_grad_enabled() else in_place(x)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW map (the official ``ln_2d``: the parameters live in ``.norm``)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def same_padding(kernel: int, stride: int = 1, dilation: int = 1) -> int:
    """The official EMO padding, ceil((k_eff − stride) / 2): "same" for stride 1, and k3 → 1, k5 → 2 at stride 2."""
    k_eff = (kernel - 1) * dilation + 1
    return -(-(k_eff - stride) // 2)


def make_norm(name: NormName, channels: int, eps: float) -> nn.Module:
    if name == "bn":
        return nn.BatchNorm2d(channels, eps=eps)
    if name == "ln":
        return LayerNorm2d(channels, eps=eps)
    return nn.Identity()


class ConvNormAct(nn.Module):
    """Conv2d → norm → activation, with the official sub-module names ``conv``, ``norm``, ``act``."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        norm: NormName = "none",
        act: ActName = "none",
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        padding = same_padding(kernel_size, stride, dilation)
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size, stride, padding, dilation, groups, bias=bias)
        self.norm = make_norm(norm, dim_out, norm_eps)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation as in timm (``conv_reduce`` / ``conv_expand``), sigmoid gate."""

    def __init__(self, channels: int, rd_ratio: float, act: ActName) -> None:
        super().__init__()
        rd = round(channels * rd_ratio)
        self.conv_reduce = nn.Conv2d(channels, rd, 1, bias=True)
        self.act = make_act(act)
        self.conv_expand = nn.Conv2d(rd, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.conv_expand(self.act(self.conv_reduce(s))).sigmoid()


class DropPath(nn.Module):
    """Stochastic depth per sample; the identity outside training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ClassifierHead:
    """timm's classifier contract for a network with ``num_features``, a ``head`` and ``forward_features``:
    ``forward`` = ``forward_head(forward_features(x))``; the subclass defines ``forward_head``."""

    num_features: int
    num_classes: int
    head: nn.Module

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier for ``num_classes`` (0: none, forward returns the pooled features)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
