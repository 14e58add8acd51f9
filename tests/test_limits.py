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


import os  # noqa: E402 - the tests below were added at the end
import subprocess  # noqa: E402
import sys  # noqa: E402


# ---- configurations the builders cannot take, refused when read (one line naming the field) -------------------

@pytest.mark.parametrize("args, needle", [
    (("zoo", "show", "emo_tiny,exp_ratios=[1e308,1.0,1.0,1.0]"), "exp_ratios"),
    (("zoo", "show", "emo_tiny,exp_ratios=[1e999,1.0,1.0,1.0]"), "exp_ratios"),  # inf
    (("profile", "--counts-only", "emo_tiny,exp_ratios=[1e-9,1.0,1.0,1.0]"), "exp_ratios"),  # 0 channels
    (("zoo", "show", "mobilenetv2_100,width=1e9"), "width"),
    (("zoo", "show", "mobilenetv2_100,width=60.0"), "width"),  # finite, but 1280·60 head channels
    (("zoo", "show", "emo_tiny,dw_kss=[2,2,2,2]"), "dw_kss"),
    (("zoo", "show", "irmb,dw_kernel=2"), "dw_kernel"),
    (("zoo", "show", "irmb,exp_ratio=nan"), "exp_ratio"),
    (("zoo", "show", "irmb,se_ratio=1e-9"), "se_ratio"),
    (("zoo", "show", "irmb,dim_in=50"), "dim_head"),
    (("zoo", "show", "irmb,dim_in=100000"), "dim_in"),
    (("zoo", "show", "mobilenetv2_100,norm_eps=-1"), "norm_eps"),
    (("zoo", "show", "pvt_tiny,patch_sizes=[64,2,2,2]"), "patch_sizes"),
    (("zoo", "show", "deit_tiny,irmb_kernel=4"), "irmb_kernel"),
    (("zoo", "show", "ssdlite_emo_1m,out_indices=[9]"), "out_indices"),
])
def test_configurations_that_cannot_build_are_refused_when_read(capsys, monkeypatch, args, needle):
    code, out, err = run(capsys, monkeypatch, *args)
    assert_user_error(code, err, needle)
    assert not out


def test_what_builds_today_still_validates():
    """Odd kernels everywhere, an even kernel where it only downsamples (stride 2: no 'same' size to keep), tiny
    widths that round up to the divisor, and every zoo entry."""
    import emobench

    get_entry("irmb").with_overrides(dw_kernel=5, dw_dilation=2)
    get_entry("irb").with_overrides(stride=2, dw_kernel=2, dim_out=32, skip=False)
    get_entry("emo_tiny").with_overrides(depths=[1, 1, 1, 1], dw_kss=[3, 2, 4, 5])  # stages 1-3: only stride-2 blocks
    get_entry("mobilenetv2_100").with_overrides(width=1e-9)  # every layer rounds up to 8 channels
    for name in emobench.list_models():
        get_entry(name)


def test_a_zoo_file_with_a_huge_depth_is_refused_before_anything_is_built(capsys, monkeypatch, tmp_path):
    """depths = [10^8, ...] once grew `zoo show` past 8 GB (block configs and modules made one by one)."""
    (tmp_path / "deep.toml").write_text('extends = "emo_tiny"\n[config]\ndepths = [100000000, 1, 1, 1]\n')
    (tmp_path / "inf.toml").write_text('extends = "emo_tiny"\n[config]\nexp_ratios = [inf, 1.0, 1.0, 1.0]\n')
    for name, needle in (("deep", "depths"), ("inf", "exp_ratios")):
        code, _, err = run(capsys, monkeypatch, "zoo", "show", name, "--zoo", str(tmp_path))
        assert_user_error(code, err, f"{name}.toml", needle)


def test_the_weights_are_estimated_from_the_configuration_before_building(capsys, monkeypatch):
    """A model too big to hold is refused from its configuration alone: no module is built, not even on meta."""
    def no_build(target):
        raise AssertionError("built before the configuration estimate")

    monkeypatch.setattr(models, "_meta_model", no_build)
    monkeypatch.setattr(models, "available_memory", lambda: 16 * 2**30)
    code, _, err = run(capsys, monkeypatch, "profile", "--counts-only", "emo_tiny,num_classes=1000000000000")
    assert_user_error(code, err, "weights alone", "parameters from its configuration", "available")
    assert models.config_estimate(get_entry("irmb")) == (1, 44_288)  # the block's closed form: exact (see above)


@pytest.mark.parametrize("args, needle", [
    (("mpl", "-k", "2"), "odd number from 1 to"),
    (("mpl", "-k", "4"), "odd number from 1 to"),
    (("mpl", "-k", "8", "--blocks", "dwconv"), "odd number from 1 to"),
    (("mpl", "-w", "100000"), "window must be from 1 to"),
    (("modules", "-C", "100000000"), "channels must be from 1 to"),
    (("modules", "-W", "100000"), "width must be from 1 to"),
    (("modules", "-k", "4"), "odd number from 1 to"),
    (("modules", "-e", "inf"), "expansion"),
    (("modules", "-e", "1e-9"), "expansion"),
])
def test_analysis_numbers_outside_their_range_are_one_line(capsys, monkeypatch, args, needle):
    code, out, err = run(capsys, monkeypatch, *args)
    assert_user_error(code, err, needle)


@pytest.mark.parametrize("error", [MemoryError(), MemoryError("Unable to allocate 7.45 GiB for an array"),
                                   RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                                                "can't allocate memory: you tried to allocate 80 bytes.\nmore")])
def test_a_failed_allocation_is_one_line(capsys, monkeypatch, error):
    from emobench.analysis import modules

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(modules, "module_table", fail)
    code, out, err = run(capsys, monkeypatch, "modules")
    assert_user_error(code, err, "out of memory")


def test_other_runtime_errors_keep_their_traceback(capsys, monkeypatch):
    from emobench.analysis import modules

    def fail(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(modules, "module_table", fail)
    with pytest.raises(RuntimeError, match="a bug"):
        run(capsys, monkeypatch, "modules")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS")
def test_under_a_memory_limit_a_real_allocation_failure_is_one_line(tmp_path):
    """The estimate is told the machine is vast, so the weights' allocation itself fails under RLIMIT_AS."""
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))\n"
            "from emobench.models import budget\n"
            "budget.available_memory = lambda: 2**50\n"
            "from emobench.cli import main\n"
            "sys.argv = ['emobench', 'profile', '--counts-only', 'emo_tiny,num_classes=10000000']\n"
            "main()\n")
    env = {**os.environ, "EMOBENCH_CACHE": str(tmp_path / "cache"), "EMOBENCH_STORE": str(tmp_path / "s.sqlite")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert_user_error(proc.returncode, proc.stderr, "out of memory")


def test_a_reference_with_a_line_break_is_still_one_line(capsys, monkeypatch):
    code, _, err = run(capsys, monkeypatch, "zoo", "show", "emo\n_5")
    assert_user_error(code, err, "unknown model")
