from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# ../shared/reference beside the project (override with EMOBENCH_REFERENCE).
REFERENCE = Path(os.environ.get("EMOBENCH_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference"))


def reference_file(name: str) -> Path:
    path = REFERENCE / name
    if not path.exists():
        why = f"official reference {path} is absent (expected ../shared/reference beside the project)"
        if os.environ.get("CI") == "true":  # CI must compare with the official outputs, never pass by skipping
            pytest.fail(why)
        pytest.skip(why)
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_cache_and_store(tmp_path_factory):
    """Exports and benchmark records of the tests never touch the user's cache or store."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EMOBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("EMOBENCH_STORE", str(tmp_path_factory.mktemp("store") / "results.sqlite"))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every norm's affine parameters and BatchNorm statistics, as the official reference did, so
    that folding a norm into its neighbours is actually exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 2 + 1e-5)
    return model
