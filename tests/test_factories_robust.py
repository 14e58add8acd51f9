"""A user's model that fails (its forward raises, its input is too small, it declares an odd input size, returns a
dict, or its factory calls sys.exit) and odd files and references: each is one line on stderr naming the model and
the cause, exit code 2, never a traceback."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from test_cli import assert_user_error, run

from emobench.errors import EmobenchError
from emobench.models.references import parse_reference, resolve

FACTORIES = Path(__file__).with_name("model_factories.py")
F = str(FACTORIES)


# --- 1. a failing forward, or an input too small ------------------------------------------------------------


@pytest.mark.parametrize("args, needles", [
    (["profile", "--counts-only", f"{F}:bad_forward"],
     ["bad_forward", "the forward pass failed at input 1x3x8x8", "RuntimeError: this model is broken"]),
    (["profile", "--counts-only", f"{F}:stride4@2x2"],
     ["stride4@2x2", "the forward pass failed at input 1x3x2x2", "RuntimeError"]),
    (["rf", f"{F}:stride4@2x2"], ["stride4@2x2", "the forward pass failed at input 1x3x2x2", "RuntimeError"]),
    (["rf", f"{F}:bad_forward"], ["bad_forward", "the forward pass failed at input 1x3x8x8", "this model is broken"]),
    (["erf", f"{F}:bad_forward", "-n", "1"], ["bad_forward", "the forward pass failed at input 1x3x224x224",
                                              "this model is broken"]),  # erf's resolution: 224 unless -r
    (["bench", f"{F}:bad_forward", "-B", "torch", "--no-store"],
     ["bad_forward", "the forward pass failed at input 1x3x8x8", "this model is broken"]),
], ids=["profile", "profile-too-small", "rf-too-small", "rf", "erf", "bench"])
def test_a_failing_forward_is_one_line(capsys, monkeypatch, tmp_path, args, needles):
    if args[0] == "erf":
        args = [*args, "--out-dir", str(tmp_path)]
    code, _, err = run(capsys, monkeypatch, *args)
    assert_user_error(code, err, *needles)
    assert "second line" not in err  # the cause's first line only


# --- 2. odd declarations and outputs ------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["('a', 'b', 'c')", "(3, -5, 0)", "5", "(224, 224)", "'abc'"])
def test_an_odd_default_input_size_is_one_line(capsys, monkeypatch, size):
    ref = f"{F}:declares_input_size,size={size}"
    code, _, err = run(capsys, monkeypatch, "profile", "--counts-only", ref)
    assert_user_error(code, err, "declares_input_size", "default_input_size is", "three positive integers")
    with pytest.raises(EmobenchError, match="three positive integers"):
        resolve(ref).input_shape()


def test_a_declared_size_given_at_the_reference_still_is_checked():
    """``@HxW`` replaces H and W, but the declaration it replaces is still refused when it is malformed."""
    with pytest.raises(EmobenchError, match="default_input_size is 5"):
        resolve(f"{F}:declares_input_size,size=5@32").input_shape()


def test_a_good_declared_size_is_taken():
    assert resolve(f"{F}:declares_input_size,size=(3, 20, 24)").input_shape() == (1, 3, 20, 24)


def test_a_dict_output_is_one_line_in_bench(capsys, monkeypatch):
    code, _, err = run(capsys, monkeypatch, "bench", f"{F}:dict_output", "-B", "torch", "--no-store")
    assert_user_error(code, err, "dict_output", "returns a dict", "a tensor, or a tuple or list of tensors")


# --- 3. silent exits ----------------------------------------------------------------------------------------


def test_a_factory_calling_sys_exit_is_one_line(capsys, monkeypatch):
    code, _, err = run(capsys, monkeypatch, "profile", "--counts-only", f"{F}:exits")
    assert_user_error(code, err, f"{F}:exits", "the factory exited (sys.exit(7))")
    with pytest.raises(EmobenchError, match=r"the factory exited \(sys.exit\('bye'\)\)"):
        resolve(f"{F}:exits,code='bye'").construct()  # the normal build, not only the meta-device one


def test_a_factory_file_exiting_at_import_is_one_line(capsys, monkeypatch, tmp_path):
    path = tmp_path / "exits_at_import.py"
    path.write_text("import sys\n\nsys.exit(7)\n\n\ndef net():\n    pass\n")
    code, _, err = run(capsys, monkeypatch, "profile", "--counts-only", f"{path}:net")
    assert_user_error(code, err, f"{path}:net", "exited (sys.exit(7))")


def test_a_factory_module_exiting_or_failing_at_import_is_one_line(capsys, monkeypatch, tmp_path):
    (tmp_path / "emobench_test_exits_mod.py").write_text("import sys\nsys.exit(7)\n")
    (tmp_path / "emobench_test_raises_mod.py").write_text("raise ValueError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = run(capsys, monkeypatch, "profile", "--counts-only", "emobench_test_exits_mod:net")
    assert_user_error(code, err, "emobench_test_exits_mod:net", "exited (sys.exit(7))")
    code, _, err = run(capsys, monkeypatch, "profile", "--counts-only", "emobench_test_raises_mod:net")
    assert_user_error(code, err, "emobench_test_raises_mod:net", "failed: ValueError: no GPU here")


def test_keyboard_interrupt_still_propagates(tmp_path):
    path = tmp_path / "interrupted.py"
    path.write_text("def net():\n    raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        resolve(f"{path}:net").construct()


# --- 4. messages --------------------------------------------------------------------------------------------


def test_a_raw_pickle_checkpoint_is_emobench_s_line_alone(capsys, monkeypatch, tmp_path):
    import argparse
    import pickle

    path = tmp_path / "objects.pth"
    with open(path, "wb") as f:
        pickle.dump({"net": {"conv.weight": torch.zeros(1)}, "args": argparse.Namespace(lr=0.1)}, f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run(capsys, monkeypatch, "profile", "--counts-only", f"{F}:three_convs@16", "--checkpoint", str(path))
    assert_user_error(code, err, "objects.pth", "never runs code from a file")
    assert not [w for w in caught if "pickle" in str(w.message)], [str(w.message) for w in caught]


def test_safetensors_named_pth_loads_as_safetensors(capsys, monkeypatch, tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    state = {k: v.contiguous() for k, v in resolve(f"{F}:three_convs").construct().state_dict().items()}
    path = tmp_path / "weights.pth"
    save_file(state, str(path))
    model = resolve(f"{F}:three_convs").build(path)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    code, out, err = run(capsys, monkeypatch, "profile", "--counts-only", f"{F}:three_convs@16", "--checkpoint", str(path))
    assert code == 0, err


def test_a_repeated_keyword_is_refused(capsys, monkeypatch):
    with pytest.raises(EmobenchError, match="'window' is given twice"):
        parse_reference("emo_1m,window=grid,window=contiguous")
    code, _, err = run(capsys, monkeypatch, "zoo", "show", "emo_1m,window=grid,window=contiguous")
    assert_user_error(code, err, "emo_1m,window=grid,window=contiguous", "'window' is given twice")
