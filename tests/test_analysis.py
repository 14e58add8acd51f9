"""Receptive field, ERF and MPL. Expected values are derived by hand in each test, not read from the code."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from test_cli import assert_user_error, run
from torch import nn

import emobench
from emobench.analysis import reach
from emobench.analysis.erf import effective_receptive_field, high_contribution_area_ratio
from emobench.analysis.mpl import block_mpl, mpl_table, stage_table
from emobench.analysis.modules import module_table
from emobench.analysis.rf import (
    conv_unit, entry_receptive_field, gradient_support, reach_mask, receptive_field, residual_unit, units_for,
)


def test_vgg16_to_pool5():
    units = []
    for i, n in enumerate([2, 2, 3, 3, 3]):
        units += [conv_unit(f"conv{i}_{j}", 3, 1, 1) for j in range(n)] + [conv_unit(f"pool{i}", 2, 2, 0)]
    last = receptive_field(units, (224, 224)).table.iloc[-1]
    # r = 1 + Σ (k−1)·jump: five stages of 3×3 convs (2,2,3,3,3 of them) at jumps 1,2,4,8,16 plus the pools
    r = 1 + 2 * (2 * 1 + 2 * 2 + 3 * 4 + 3 * 8 + 3 * 16) + 1 * (1 + 2 + 4 + 8 + 16)
    assert r == 212
    assert last["rf unclipped H"] == last["rf unclipped W"] == 212 and last["jump"] == 32
    assert (last["rf H"], last["rf W"], last["output H"], last["output W"]) == (212, 212, 7, 7)


def test_residual_is_a_union():
    """x + conv3(conv3(x)) reaches 5 pixels per axis, not 3 (the sequential-only tools' answer)."""
    table = receptive_field([residual_unit("res", [conv_unit("a", 3, 1, 1), conv_unit("b", 3, 1, 1)])], (33, 33)).table
    assert (table.iloc[0]["rf H"], table.iloc[0]["rf W"]) == (5, 5) and table.iloc[0]["rf unclipped H"] == 5


@pytest.mark.parametrize("name", ["irmb", "irmb_contiguous", "irmb_global", "irmb_no_attn", "swmhsa"])
@pytest.mark.parametrize("width", [14, 28])
def test_reach_equals_gradient_support(name, width):
    model = emobench.create_model(name)
    units = units_for(model.zoo_entry)
    for pos in [(width // 2, width // 2), (0, 0), (width - 1, 3), (5, width - 2)]:
        expected = gradient_support(model, (1, 64, width, width), pos)
        assert np.array_equal(reach_mask(units, (width, width), pos), expected), pos


def test_reach_equals_gradient_support_through_strided_blocks():
    """A stride-2 block then a grid-attention block on a non-square map whose windows need padding
    (20×26 → 10×13 → padded to 14×14, 2 groups per axis): composition, strides and padding together."""
    from emobench.analysis.rf import block_unit
    from emobench.nn import AttentionConfig, M2Block, M2BlockConfig

    down = M2BlockConfig(dim_in=16, dim_out=32, exp_ratio=2.0, stride=2, norm="bn", act="silu", dw_kernel=3, skip=False)
    attend = M2BlockConfig(dim_in=32, dim_out=32, exp_ratio=2.0, norm="ln", act="gelu", dw_kernel=3,
                           attention=AttentionConfig(window="grid", window_size=7, dim_head=16))
    model = nn.Sequential(M2Block(down), M2Block(attend))
    units = [block_unit("down", "s", down, False), block_unit("attend", "s", attend, False)]
    for pos in [(0, 0), (5, 6), (9, 12), (3, 11)]:
        expected = gradient_support(model, (1, 16, 20, 26), pos)
        assert np.array_equal(reach_mask(units, (20, 26), pos), expected), pos
    table = entry_receptive_field(emobench.get_entry("emo_tiny"), (224, 224)).table
    assert (table.iloc[1]["rf H"], table.iloc[1]["rf W"]) == (7, 7)  # stem conv 3 (stride 2) then DW 3 at jump 2: 3 + 2·2


def test_grid_windows_are_sparse_then_filled():
    """One grid-window layer on 14 tokens with w = 7: n = 2 groups, token 7 (odd) sees the 7 odd tokens."""
    d = reach.window(14, 7, "grid")
    assert d[7].sum() == 7 and d[7, 1::2].all() and not d[7, ::2].any()
    c = reach.window(14, 7, "contiguous")
    assert c[7, 7:].all() and not c[7, :7].any()
    # padding: 16 tokens pad to 21, n = 3 groups; token 0 sees 0, 3, …, 15 (the padded 18 is not an input)
    assert np.flatnonzero(reach.window(16, 7, "grid")[0]).tolist() == [0, 3, 6, 9, 12, 15]


def test_mpl_known_values():
    conv3 = emobench.get_entry("dwconv").config
    for w in (7, 14, 28):
        assert block_mpl(conv3, w)[0] == math.ceil((w - 1) / 1)  # a 3-tap conv moves 1 token per block
    k5 = emobench.get_entry("dwconv").with_overrides(dw_kernel=5).config
    assert block_mpl(k5, 28)[0] == math.ceil(27 / 2)
    assert block_mpl(emobench.get_entry("mhsa").config, 56)[0] == 1
    assert math.isinf(block_mpl(emobench.get_entry("wmhsa").config, 14)[0])  # windows alone never connect
    assert block_mpl(emobench.get_entry("wmhsa").config, 7)[0] == 1  # …unless one window covers the map
    # a stack of 3-tap convs with dilation 2 never reaches odd offsets
    assert math.isinf(reach.distances(lambda n: reach.conv(n, 3, 1, 2), 14).max())


def test_shifted_windows_alternating_with_plain_windows():
    """Swin: W-MSA then SW-MSA (shift 3, cyclic), each attention layer one step. W = 14: after the plain
    windows token 0 holds 0…6 (token 7: 7…13), and either set meets both shifted windows {3…9} and
    {10…13, 0…2}, so 2 layers connect every pair."""
    table = mpl_table(["wmhsa+swmhsa"], [14, 28])
    assert table["MPL"].tolist() == [2, 4]
    # shifted windows alone do not connect either
    assert math.isinf(block_mpl(emobench.get_entry("swmhsa").config, 14)[0])
    # the shifted partition by hand, 14 tokens, w = 7: roll by −3 → windows {3..9} and {10..13, 0..2}
    d = reach.window(14, 7, "shifted")
    assert np.flatnonzero(d[0]).tolist() == [0, 1, 2, 10, 11, 12, 13]
    assert np.flatnonzero(d[5]).tolist() == list(range(3, 10))


def test_mpl_of_irmb_grid_and_contiguous():
    grid = emobench.get_entry("irmb").with_overrides(dw_kernel=5).config
    cont = emobench.get_entry("irmb_contiguous").with_overrides(dw_kernel=5).config
    # W = 14, w = 7: grid n = 2 groups; after the window a 5-tap conv covers both parities → 1 block.
    assert block_mpl(grid, 14)[0] == 1
    # contiguous: two windows of 7; token 0 reaches 0…6 by attention, then 2 more by the conv: 8 < 13 → 2 blocks
    assert block_mpl(cont, 14)[0] == 2
    # W = 28, grid: n = 4 groups. From token 27 (residue 3) the window gives residues {3}, the conv ±2 →
    # {1, 2, 3, 0 (via 4), …} but only positions within ±2 of its window members: the far edge needs 2 blocks.
    assert block_mpl(grid, 28)[0] == 2


def test_mean_path_length_by_hand():
    """dwconv (3-tap) at W = 3: per-axis distances |i − j| ∈ {0,1,2} with counts 3, 4, 2 over 9 pairs.
    2-D distance = max of the axes: P(max ≤ 0) = (3/9)², P(max ≤ 1) = (7/9)², P(max ≤ 2) = 1."""
    mpl, mean = block_mpl(emobench.get_entry("dwconv").config, 3)
    p1 = (7 / 9) ** 2 - (3 / 9) ** 2
    p2 = 1 - (7 / 9) ** 2
    assert mpl == 2 and mean == pytest.approx(1 * p1 + 2 * p2)


def test_layers_count_at_least_blocks():
    cfg = emobench.get_entry("irmb_contiguous").config
    assert block_mpl(cfg, 28, count="layers")[0] >= block_mpl(cfg, 28)[0]


def test_stage_table_of_emo():
    df, rf_result = stage_table(emobench.get_entry("emo_1m"))
    assert rf_result.first_all_global == "stage3.1"
    assert df["stage"].tolist() == ["stage1", "stage2", "stage3", "stage4"]
    assert (df.iloc[2]["map H"], df.iloc[2]["map W"]) == (14, 14)  # 224 / 16: stage 3's stride
    assert df.iloc[2]["MPL"] == 1  # grid windows + 5×5 conv: one block
    assert df.iloc[0]["MPL"] == 55  # a 3×3 DW conv across 56 tokens


def test_module_table_closed_forms_against_built_modules():
    df = module_table(channels=32, width=14, window=7, kernel=3).set_index("module")
    for row in ("MHSA", "W-MHSA", "Conv", "DW-Conv"):
        assert df.loc[row, "params (formula)"] == df.loc[row, "params (built)"], row
    # Counters skip softmax/scaling, the formulas' 3L² (MHSA) and 3Ll (W-MHSA) terms: exactly that apart.
    L, l = 196, 49
    assert df.loc["MHSA", "FLOPs (formula)"] - df.loc["MHSA", "FLOPs (counted)"] == 3 * L * L
    assert df.loc["W-MHSA", "FLOPs (formula)"] - df.loc["W-MHSA", "FLOPs (counted)"] == 3 * L * l
    assert df.loc["Conv", "FLOPs (formula)"] == df.loc["Conv", "FLOPs (counted)"]
    assert df.loc["DW-Conv", "FLOPs (formula)"] == df.loc["DW-Conv", "FLOPs (counted)"]
    assert df.loc["MHSA", "MPL (exact)"] == 1 and math.isinf(df.loc["W-MHSA", "MPL (exact)"])


def _uniform_stack(n: int) -> nn.Module:
    layers = []
    for _ in range(n):
        conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        nn.init.constant_(conv.weight, 1 / 9)
        layers.append(conv)
    return nn.Sequential(*layers)


def test_erf_spread_grows_like_sqrt_depth():
    """Luo et al. 2016: n uniform linear 3×3 convs give a binomial-like ERF with variance n · 2/3 per axis."""
    spreads, ratios = [], []
    for n in (4, 16):
        # a positive input keeps the centre output positive, so its ReLU passes the gradient
        r = effective_receptive_field(_uniform_stack(n), [torch.rand(1, 1, 65, 65) + 0.5], f"stack{n}")
        g = r.mean_gradient / r.mean_gradient.sum()
        rows = np.arange(g.shape[0])
        mean = (g.sum(1) * rows).sum()
        spreads.append(np.sqrt((g.sum(1) * (rows - mean) ** 2).sum()))
        ratios.append(r.area_ratios())
    assert spreads[0] == pytest.approx(np.sqrt(4 * 2 / 3), rel=1e-3)
    assert spreads[1] / spreads[0] == pytest.approx(2.0, rel=1e-3)  # √(16/4), not 16/4
    for t in (0.2, 0.5, 0.99):
        assert ratios[1][t] > ratios[0][t]


def test_area_ratio_edge_cases():
    flat = np.ones((9, 9))
    # squares of side 3, 5, 7, 9 hold 9, 25, 49, 81 of 81: t = 0.5 needs side 7 (49/81 > 0.5)
    assert high_contribution_area_ratio(flat, 0.5) == pytest.approx(49 / 81)
    assert high_contribution_area_ratio(flat, 0.999) == pytest.approx(1.0)
    assert high_contribution_area_ratio(flat, 1.0) is None  # never strictly above: reported missing, no crash
    assert high_contribution_area_ratio(np.zeros((5, 5)), 0.2) is None


def test_cli_rf_erf_mpl_modules(capsys, monkeypatch, tmp_path):
    code, out, _ = run(capsys, monkeypatch, "rf", "emo_1m", "-f", "json")
    data = json.loads(out)
    assert code == 0 and data["meta"]["first_centre_global"] == "stage3.1"
    code, out, _ = run(capsys, monkeypatch, "erf", "emo_tiny", "irmb", "-n", "4", "--out-dir", str(tmp_path), "-f", "json")
    assert code == 0
    html = (tmp_path / "erf_emo_tiny_irmb_224x224.html").read_text()
    # plotly.js inlined and nothing fetched from the network: the file opens offline
    assert len(html) > 1_000_000 and re.search(r"<script[^>]*\ssrc=[\"']https?://", html) is None
    rows = json.loads(out)["rows"]
    assert [r["model"] for r in rows] == ["emo_tiny", "irmb"] and rows[0]["images"] == 4
    plot = tmp_path / "mpl.html"
    code, out, _ = run(capsys, monkeypatch, "mpl", "--blocks", "irmb,irmb_contiguous,dwconv,wmhsa,mhsa",
                       "--width", "7,14,28,56", "--plot", str(plot), "-f", "json")
    assert code == 0 and plot.exists()
    assert len(json.loads(out)["rows"]) == 20
    code, out, _ = run(capsys, monkeypatch, "mpl", "--model", "emo_1m", "-f", "csv")
    assert code == 0 and out.startswith("stage,")
    code, out, _ = run(capsys, monkeypatch, "modules", "-C", "32", "-f", "csv")
    assert code == 0 and "W-MHSA" in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["rf", "emo_1m", "-r", "16"], "smaller than"),
        (["erf", "emo_1m", "-r", "16", "-n", "1"], "smaller than"),
        (["mpl", "--blocks", "irmb,nope"], "unknown model 'nope'"),
        (["mpl", "--blocks", "emo_1m"], "is a network"),
        (["rf", "irmb_parallel"], "not separable"),
    ],
)
def test_cli_analysis_bad_input(capsys, monkeypatch, args, needle):
    code, _, err = run(capsys, monkeypatch, *args)
    assert_user_error(code, err, needle)


def test_cli_erf_empty_image_folder(capsys, monkeypatch, tmp_path):
    (tmp_path / "imgs").mkdir()
    code, _, err = run(capsys, monkeypatch, "erf", "emo_tiny", "--images", str(tmp_path / "imgs"), "--out-dir", str(tmp_path))
    assert_user_error(code, err, "no image files")


def test_erf_study_is_the_measurement_the_cli_and_report_share():
    """erf_study = effective_receptive_field on the seeded model and images, with stable ratio columns, and the
    caller's random state untouched."""
    from emobench.analysis.erf import RATIO_COLUMNS, erf_study, random_images

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    study = erf_study(["irmb"], (14, 14), num_images=3, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        model = emobench.create_model("irmb")
    images = (x[:, :1].expand(-1, 64, -1, -1).clone() for x in random_images(3, (14, 14), 5))
    direct = effective_receptive_field(model, images, "irmb")
    assert np.array_equal(study.results[0].mean_gradient, direct.mean_gradient)
    frame = study.frame()
    assert list(frame.columns) == ["model", "output", "images", "skipped", *RATIO_COLUMNS]
    assert RATIO_COLUMNS == ("area_ratio_t20", "area_ratio_t30", "area_ratio_t50", "area_ratio_t99")
    assert frame.loc[0, "images"] == 3 and frame.loc[0, "skipped"] == 0
    ratios = direct.area_ratios()
    assert frame.loc[0, "area_ratio_t50"] == ratios[0.5]
    assert "3 random images (seed 5)" in study.source


@pytest.mark.parametrize("kwargs, needle", [({"num_images": 0}, "num-images"),
                                            ({"checkpoint": "x.pth", "models": ["irmb", "mhsa"]}, "one model")])
def test_erf_study_bad_input(kwargs, needle):
    from emobench.analysis.erf import erf_study
    from emobench.errors import EmobenchError

    with pytest.raises(EmobenchError, match=needle):
        erf_study(**{"models": ["irmb"], **kwargs})


def test_mpl_sweep_overrides_only_the_blocks_that_have_the_part():
    """A 5-tap kernel: DW-Conv at W = 14 needs ceil(13 / 2) = 7 blocks (the paper: 2W/(k−1) = 7); MHSA has no
    depth-wise conv and keeps its MPL 1; a window override leaves DW-Conv alone."""
    from emobench.analysis.mpl import mpl_sweep
    from emobench.errors import EmobenchError

    df = mpl_sweep(["mhsa", "dwconv"], [14], kernel=5).set_index("block")
    assert df.loc["dwconv", "MPL"] == 7 and df.loc["dwconv", "k"] == 5 and df.loc["dwconv", "paper (asymptotic)"] == 7
    assert df.loc["mhsa", "MPL"] == 1 and df.loc["mhsa", "k"] == 0
    windowed = mpl_sweep(["wmhsa", "dwconv"], [14], window=14).set_index("block")
    assert windowed.loc["wmhsa", "MPL"] == 1 and windowed.loc["wmhsa", "w"] == 14  # one window covers the map
    assert windowed.loc["dwconv", "MPL"] == 13  # untouched 3-tap conv: one token per block
    with pytest.raises(EmobenchError, match="names no block"):
        mpl_sweep([" ", ""], [7])
