"""Checkpoint loading: the official layouts, safetensors, readable mismatch errors, no code execution."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

import emobench
from emobench.errors import CheckpointError


@pytest.fixture()
def weights():
    torch.manual_seed(3)
    return emobench.create_model("irmb").state_dict()


def _same(model, state):
    return all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("layout", ["raw", "net", "net_E", "module_prefix"])
def test_official_layouts(tmp_path, weights, layout):
    data = {
        "raw": weights,
        "net": {"net": weights, "epoch": 300},
        "net_E": {"net": {k: torch.zeros_like(v) for k, v in weights.items()}, "net_E": weights},
        "module_prefix": {f"module.{k}": v for k, v in weights.items()},
    }[layout]
    path = tmp_path / "net.pth"
    torch.save(data, path)
    model = emobench.create_model("irmb")
    where = emobench.load_checkpoint(model, path)
    assert _same(model, weights)
    assert where == {"raw": "(top level)", "net": "net", "net_E": "net_E", "module_prefix": "(top level)"}[layout]


def test_safetensors(tmp_path, weights):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    model = emobench.create_model("irmb", checkpoint=path)
    assert _same(model, weights)


def test_mismatch_names_missing_unexpected_and_misshaped(tmp_path, weights):
    bad = dict(weights)
    bad.pop("qk.conv.bias")
    bad["extra.weight"] = torch.zeros(1)
    bad["proj.conv.weight"] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(CheckpointError) as err:
        emobench.load_checkpoint(emobench.create_model("irmb"), path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "1 missing: qk.conv.bias" in msg and "1 unexpected: extra.weight" in msg
    assert "proj.conv.weight (3, 3, 1, 1) vs (64, 256, 1, 1)" in msg


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_CHECKPOINT",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_code_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"net": _Payload()}, f)
    with pytest.raises(CheckpointError, match="never runs code from a file") as err:
        emobench.load_checkpoint(emobench.create_model("irmb"), path)
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()
    assert "weights_only=False" not in str(err.value) and "\n" not in str(err.value)  # never suggested


def test_a_text_file_is_named_as_not_a_weights_file(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("epoch 1: loss 0.5\n")
    with pytest.raises(CheckpointError, match="not a PyTorch weights file or a .safetensors file"):
        emobench.load_checkpoint(emobench.create_model("irmb"), path)


def test_missing_and_non_state_dict_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        emobench.load_checkpoint(emobench.create_model("irmb"), tmp_path / "nope.pth")
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="no state dict"):
        emobench.load_checkpoint(emobench.create_model("irmb"), path)


def test_no_torch_warning_comes_before_the_refusal(tmp_path):
    """torch warns about the pickle protocol of a raw pickle before refusing it: emobench's line stands alone."""
    import warnings

    path = tmp_path / "objects.pth"
    with open(path, "wb") as f:
        pickle.dump({"net": {"w": torch.zeros(1)}, "epoch": 3, "args": _Payload()}, f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match="never runs code from a file"):
            emobench.load_checkpoint(emobench.create_model("irmb"), path)
    assert [str(w.message) for w in caught if "pickle" in str(w.message).lower()] == []


@pytest.mark.parametrize("suffix", [".pth", ".bin", ""])
def test_safetensors_is_recognised_by_content_whatever_the_suffix(tmp_path, weights, suffix):
    path = tmp_path / f"weights{suffix}"
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    model = emobench.create_model("irmb")
    assert emobench.load_checkpoint(model, path) == "(safetensors)"
    assert _same(model, weights)


def test_a_broken_safetensors_file_is_named_as_such(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes((40).to_bytes(8, "little") + b'{"w": ')  # header cut short
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        emobench.load_checkpoint(emobench.create_model("irmb"), path)
    pth = tmp_path / "w.pth"
    pth.write_bytes(path.read_bytes())  # safetensors by its layout, whatever the suffix: said as such
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        emobench.load_checkpoint(emobench.create_model("irmb"), pth)
