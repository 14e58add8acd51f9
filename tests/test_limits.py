"""Input limits: sizes the machine cannot hold are refused from an estimate (meta device, nothing allocated),
numeric options are range-checked, and usage errors are one line. Each: exit 2, one line, nothing written."""

from __future__ import annotations

import pytest
from test_cli import assert_user_error, run

from emobench.models import budget as models
from emobench.models.budget import memory_need
from emobench.zoo.catalog import get_entry


def test_estimate_is_hand_checkable():
    """An irmb block at 1x64x14x14: the input is 64·14·14·4 bytes and no operation can need less.

    Its weights by hand (C = 64, λ = 4: 256 mid channels): LayerNorm 64 + 64; qk 1×1 64→128 with bias 8,320;
    v 1×1 64→256 with bias 16,640; DW 3×3 on 256 without bias 2,304; BN 256 + 256; proj 1×1 256→64 without bias
    16,384: 44,288 parameters. Buffers: the BN's running mean and variance (256 each) and its batch counter
    (1): 513 elements. At 4 bytes an element: (44,288 + 513) · 4 = 179,204 bytes."""
    need = memory_need(get_entry("irmb"), (1, 64, 14, 14))
    assert need.input_bytes == 64 * 14 * 14 * 4
    assert need.largest_op_bytes >= need.input_bytes
    assert need.params == 44_288 and need.weight_bytes == 179_204
    bigger = memory_need(get_entry("irmb"), (4, 64, 14, 14))
    assert bigger.largest_op_bytes == 4 * need.largest_op_bytes  # everything scales with the batch


@pytest.mark.parametrize("args", [
    ("profile", "emo_tiny", "--counts-only", "-r", "100000"),
    ("profile", "emo_tiny", "--counts-only", "-b", "100000"),
    ("bench", "emo_tiny", "-b", "100000", "--no-store"),
    ("erf", "emo_tiny", "-r", "60000", "-n", "1"),
    ("rf", "emo_tiny", "-r", "100000"),
    ("mpl", "-W", "7,200000"),
    ("mpl", "--model", "emo_tiny", "-r", "100000"),
])
def test_sizes_beyond_the_machine_are_refused(capsys, monkeypatch, tmp_path, args):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(models, "available_memory", lambda: 16 * 2**30)  # the same verdict on any machine
    code, out, err = run(capsys, monkeypatch, *args, "-o", str(tmp_path / "out.json"))
    assert_user_error(code, err, "GiB", "available")
    assert not out and list(tmp_path.iterdir()) == []  # nothing written, no erf folder either


def test_a_zoo_file_with_a_huge_head_is_refused(capsys, monkeypatch, tmp_path):
    (tmp_path / "huge.toml").write_text('family = "emo"\nextends = "emo_tiny"\nsummary = "x"\nsource = "test"\n'
                                        "[config]\nnum_classes = 1000000000000\n")
    monkeypatch.setattr(models, "available_memory", lambda: 16 * 2**30)
    for args in (("profile", "huge", "--counts-only"), ("zoo", "load", "huge", str(tmp_path / "none.pth"))):
        code, _, err = run(capsys, monkeypatch, *args, "--zoo", str(tmp_path))
        assert_user_error(code, err, "huge at", "weights")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.toml"]


def test_the_limit_follows_the_memory_available(capsys, monkeypatch):
    """The same small input is refused when psutil reports less memory than its estimate."""
    monkeypatch.setattr(models, "available_memory", lambda: 1000)
    code, _, err = run(capsys, monkeypatch, "profile", "irmb", "--counts-only")
    assert_user_error(code, err, "irmb at 1x64x14x14", "available")


@pytest.mark.parametrize("args, needle", [
    (("profile", "emo_1m", "-b", "abc"), "--batch"),
    (("profile", "emo_1m", "-b", "0"), "--batch"),
    (("profile", "emo_1m", "-d", "-1"), "--depth"),
    (("profile", "emo_1m", "-t", "0"), "--threads"),
    (("profile", "emo_1m", "-t", "100000"), "cores"),
    (("bench", "irmb", "--rounds", "0", "--no-store"), "--rounds"),
    (("bench", "irmb", "--tolerance", "-1", "--no-store"), "--tolerance"),
    (("bench", "irmb", "--min-runs", "0", "--no-store"), "--min-runs"),
    (("bench", "irmb", "--timeout", "0", "--no-store"), "timeout"),
    (("bench", "irmb", "-b", "0", "--no-store"), "batch"),
    (("erf", "emo_tiny", "-n", "0"), "--num-images"),
    (("modules", "-C", "0"), "--channels"),
    (("modules", "-k", "0"), "--kernel"),
    (("mpl", "-W", "0"), "widths"),
    (("mpl", "--count", "pixels"), "--count"),
    (("report", "--erf-images", "0"), "--erf-images"),
    (("zoo", "frobnicate"), "No such command"),
    (("zoo", "list", "--nope"), "--nope"),
    (("profile",), "Missing argument"),
])
def test_bad_numbers_and_usage_are_one_line(capsys, monkeypatch, tmp_path, args, needle):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, monkeypatch, *args)
    assert_user_error(code, err, needle)
    assert "╭" not in err and not out and list(tmp_path.iterdir()) == []


def test_a_bare_group_shows_its_help_and_exits_2(capsys, monkeypatch):
    code, out, err = run(capsys, monkeypatch, "zoo")
    assert code == 2 and "list" in out and "Traceback" not in err
