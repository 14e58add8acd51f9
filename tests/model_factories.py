"""Small networks built by factories, for the model-reference tests (``tests/model_factories.py:NAME``).
Their counts and receptive fields are derived by hand in the tests."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


def three_convs(width: int = 4, act: str = "gelu") -> nn.Module:
    """3×3, 3×3 stride 2, 3×3 (all same-padded): receptive field 3 + 2·1 + 2·2 = 9 along each axis."""
    layer = {"gelu": nn.GELU, "relu": nn.ReLU}[act]
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), layer(), nn.Conv2d(width, width, 3, stride=2, padding=1),
                         layer(), nn.Conv2d(width, width, 3, padding=1))


class TinyAttention(nn.Module):
    """Patch embedding (k×k conv, stride k), one multi-head self-attention through
    ``F.scaled_dot_product_attention`` on the tokens, an output projection; returns the map (B, C, H/k, W/k)."""

    def __init__(self, dim: int = 16, heads: int = 2, patch: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.default_input_size = (3, 32, 32)

    def forward(self, x):
        x = self.embed(x)
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        q, k, v = self.qkv(tokens).reshape(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
        return self.proj(out).transpose(1, 2).reshape(b, c, h, w)


def tiny_attention(dim: int = 16, heads: int = 2, patch: int = 4) -> nn.Module:
    return TinyAttention(dim, heads, patch)


def two_outputs() -> nn.Module:
    """A stride-2 map and a stride-4 map, as a tuple (a dense model's shape of output)."""

    class TwoLevels(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, stride=2, padding=1)
            self.b = nn.Conv2d(4, 4, 3, stride=2, padding=1)

        def forward(self, x):
            y = self.a(x)
            return y, self.b(y)

    return TwoLevels()


def not_a_module():
    return [1, 2, 3]


def needs_width(width):
    return nn.Conv2d(3, width, 1)


class ThreeConvClassifier(nn.Module):
    """:func:`three_convs` as ``forward_features`` under a pooled linear head (a classifier's layout)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = three_convs()
        self.head = nn.Linear(4, 10)

    def forward_features(self, x):
        return self.features(x)

    def forward(self, x):
        return self.head(self.forward_features(x).mean((2, 3)))


# --- models that fail: each is one line on stderr and exit code 2 (tests/test_factories_robust.py) -------------


class BadForward(nn.Module):
    """Builds fine; its forward raises."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.default_input_size = (3, 8, 8)

    def forward(self, x):
        raise RuntimeError("this model is broken\nsecond line of the message")


def bad_forward() -> nn.Module:
    return BadForward()


def stride4() -> nn.Module:
    """A 4×4 stride-4 patch conv: an input under 4×4 is too small for it."""
    net = nn.Sequential(nn.Conv2d(3, 4, 4, stride=4), nn.GELU())
    net.default_input_size = (3, 16, 16)
    return net


def declares_input_size(size=("a", "b", "c")) -> nn.Module:
    """A module whose ``default_input_size`` is whatever it is given (``,size=5``, ``,size=(3, -5, 0)``)."""
    net = nn.Conv2d(3, 4, 3, padding=1)
    net.default_input_size = size
    return net


class DictOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.default_input_size = (3, 8, 8)

    def forward(self, x):
        return {"features": self.conv(x)}


def dict_output() -> nn.Module:
    return DictOutput()


def exits(code=7):
    """A factory that ends the process (``sys.exit(code)``) instead of returning a module."""
    import sys

    sys.exit(code)


class Staged(nn.Module):
    """timm's layout: ``stem`` → ``stages`` (a Sequential) → pooled head, with ``forward_features``."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.default_input_size = (3, 32, 32)
        self.stem = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.stages = nn.Sequential(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.GELU()),
            nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GELU()),
        )
        self.head = nn.Linear(2 * width, 10)

    def forward_features(self, x):
        return self.stages(self.stem(x))

    def forward(self, x):
        return self.head(self.forward_features(x).mean((2, 3)))


def staged(width: int = 8) -> nn.Module:
    return Staged(width)
