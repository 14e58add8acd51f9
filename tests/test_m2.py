"""The M² block: hand-derived parameter counts, window partitions, pre/post attention, ablation switches."""

from __future__ import annotations

import pytest
import torch
from conftest import randomize_norms
from pydantic import ValidationError

import emobench
from emobench.nn import AttentionConfig, M2Block, M2BlockConfig
from emobench.nn.m2 import partition, unpartition, window_grid


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_hand_counted_parameters():
    c = 64
    # MHSA: Q, K, V and output projections with bias, 4(C+1)C (the paper's module table), plus LN's 2C.
    assert n_params(emobench.create_model("mhsa")) == 4 * (c + 1) * c + 2 * c
    # FFN: C→4C→C with biases, plus LN.
    assert n_params(emobench.create_model("ffn")) == (c * 4 * c + 4 * c) + (4 * c * c + c) + 2 * c
    # IRB (MobileNetV2, t=6, C=32): three convs without bias, each followed by BN (2 per channel).
    c, m = 32, 192
    assert n_params(emobench.create_model("irb")) == c * m + 2 * m + 9 * m + 2 * m + m * c + 2 * c
    # iRMB (C=64, λ=4, k=3): LN, QK (2C, bias), V (4C, bias), DW 3×3 + BN, proj (no bias).
    c, m = 64, 256
    expected = 2 * c + (c * 2 * c + 2 * c) + (c * m + m) + (9 * m + 2 * m) + m * c
    assert n_params(emobench.create_model("irmb")) == expected
    # Switches change exactly their own parameters.
    assert n_params(emobench.create_model("irmb_no_attn")) == expected - (c * 2 * c + 2 * c)
    assert n_params(emobench.create_model("irmb_no_dw")) == expected - 11 * m
    # v_group=true: V is grouped per head (4 heads of 16 channels → 64 outputs each).
    assert n_params(emobench.create_model("irmb_exact")) == expected - (c * m) + (c // 4) * m


def test_grid_partition_gathers_dilated_rows():
    """Official einops pattern 'b c (h1 n1) (w1 n2)': window (i, j) holds rows i, i+n1, … and columns j, j+n2, …"""
    h = w = 14
    ws, n = 7, 2
    x = torch.arange(h * w, dtype=torch.float32).reshape(1, h, w, 1)
    grid = partition(x, ws, ws, "grid").reshape(n, n, ws, ws)
    cont = partition(x, ws, ws, "contiguous").reshape(n, n, ws, ws)
    for i in range(n):
        for j in range(n):
            rows, cols = torch.arange(i, h, n), torch.arange(j, w, n)
            assert torch.equal(grid[i, j], x[0, rows][:, cols, 0])
            assert torch.equal(cont[i, j], x[0, i * ws : (i + 1) * ws, j * ws : (j + 1) * ws, 0])
    for mode in ("grid", "contiguous"):
        assert torch.equal(unpartition(partition(x, ws, ws, mode), 1, h, w, ws, ws, mode), x)


def test_window_padding_is_right_and_bottom():
    att = AttentionConfig(window="grid", window_size=7, dim_head=16)
    assert window_grid(16, 16, att) == (7, 7, 5, 5)
    assert window_grid(14, 14, att) == (7, 7, 0, 0)
    assert window_grid(6, 10, att) == (7, 7, 1, 4)
    assert window_grid(6, 10, AttentionConfig(window="global", dim_head=16)) == (6, 10, 0, 0)


def _pair(name_a: str, name_b: str, **overrides):
    a = randomize_norms(emobench.create_model(name_a, **overrides)).eval()
    b = emobench.create_model(name_b, **overrides).eval()
    b.load_state_dict(a.state_dict())
    return a, b


def test_grid_and_contiguous_differ_on_14_and_agree_on_one_window():
    a, b = _pair("irmb", "irmb_contiguous")
    with torch.no_grad():
        x = torch.randn(2, 64, 14, 14)
        assert (a(x) - b(x)).abs().max() > 1e-3
        x7 = torch.randn(2, 64, 7, 7)
        assert torch.allclose(a(x7), b(x7), atol=1e-6)
        glob = emobench.create_model("irmb_global").eval()
        glob.load_state_dict(a.state_dict())
        assert torch.allclose(a(x7), glob(x7), atol=1e-6)


def test_pre_and_post_attention_differ_as_released():
    """With a dense V conv and an activation (the released setting) the order matters."""
    pre, post = _pair("irmb", "irmb_post")
    with torch.no_grad():
        x = torch.randn(2, 64, 14, 14)
        assert (pre(x) - post(x)).abs().max() > 1e-3


def test_pre_attention_is_exact_under_the_papers_condition():
    """V grouped per head and no activation: attention before or after MLP_e is the same function."""
    pre = randomize_norms(emobench.create_model("irmb_exact")).eval()
    post = emobench.create_model("irmb_exact", attention={"attn_pre": False}).eval()
    post.load_state_dict(pre.state_dict())
    assert pre.cfg.v_group and pre.cfg.act == "none"
    with torch.no_grad():
        for shape in [(2, 64, 14, 14), (1, 64, 16, 16)]:  # 16×16 pads: padded tokens are equal too
            x = torch.randn(shape)
            assert torch.allclose(pre(x), post(x), atol=1e-5)
    # …and only under it: the same weights with an activation differ again.
    pre_act = emobench.create_model("irmb_exact", act="gelu").eval()
    post_act = emobench.create_model("irmb_exact", act="gelu", attention={"attn_pre": False}).eval()
    pre_act.load_state_dict(pre.state_dict())
    post_act.load_state_dict(pre.state_dict())
    with torch.no_grad():
        x = torch.randn(2, 64, 14, 14)
        assert (pre_act(x) - post_act(x)).abs().max() > 1e-4


def test_attention_matches_an_explicit_per_window_computation():
    """One head, grid windows: compare with a loop over windows written from the definition."""
    cfg = M2BlockConfig(
        dim_in=8, dim_out=8, exp_ratio=1.0, norm="none", act="none", expand=False, dw_kernel=None,
        attention=AttentionConfig(window="grid", window_size=2, dim_head=8), skip=False,
    )
    block = M2Block(cfg).eval()
    torch.nn.init.eye_(block.proj.conv.weight.view(8, 8))
    x = torch.randn(1, 8, 4, 4)
    wq, bq = block.qk.conv.weight.view(16, 8), block.qk.conv.bias
    expected = torch.empty_like(x)
    for i in range(2):
        for j in range(2):
            t = x[0, :, i::2, j::2].reshape(8, 4).T  # 4 tokens of window (i, j)
            q, k = (t @ wq.T + bq).split(8, dim=1)
            out = torch.softmax(q @ k.T / 8**0.5, dim=-1) @ t
            expected[0, :, i::2, j::2] = out.T.reshape(8, 2, 2)
    with torch.no_grad():
        assert torch.allclose(block(x), expected, atol=1e-5)


def test_parallel_and_cascaded_differ():
    a, b = _pair("irmb_post", "irmb_parallel")
    with torch.no_grad():
        x = torch.randn(1, 64, 14, 14)
        assert (a(x) - b(x)).abs().max() > 1e-3


def test_train_step_and_drop_path_only_in_training():
    model = emobench.create_model("emo_1m", drop_path=0.5, num_classes=10)
    x = torch.randn(4, 3, 64, 64)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.head.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.head.weight)
    with torch.no_grad():
        torch.manual_seed(1)
        t1 = model(x)
        torch.manual_seed(2)
        t2 = model(x)
        assert not torch.allclose(t1, t2)  # stochastic depth draws differ in training
        model.eval()
        e1, e2 = model(x), model(x)
        assert torch.equal(e1, e2)
        plain = emobench.create_model("emo_1m", drop_path=0.0, num_classes=10).eval()
        plain.load_state_dict(model.state_dict())
        assert torch.equal(plain(x), e1)


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"attention": {"dim_head": 48}}, "dim_head"),
        ({"cascade": "parallel"}, "attn_pre"),
        ({"exp_ratio": 0}, "exp_ratio"),
        ({"attention": {"window": "swin"}}, "window"),
        ({"stride": 2, "dw_kernel": 0}, "dw_kernel"),
    ],
)
def test_invalid_block_configs_are_rejected(bad, field):
    with pytest.raises(emobench.EmobenchError, match=field):
        emobench.create_model("irmb", **bad)


def test_config_validation_without_the_zoo():
    with pytest.raises(ValidationError):
        M2BlockConfig(dim_in=64, dim_out=64, v_group=True)


@pytest.mark.parametrize("name", ["relu", "relu6", "silu", "gelu", "hardswish", "sigmoid"])
def test_in_place_activation_overwrites_only_without_grad(name):
    from emobench.nn.layers import act_fn, in_place_act_fn

    x = torch.randn(2, 5, 7, 3) * 4
    expected = act_fn(name)(x)
    with torch.inference_mode():
        y = x.clone()
        out = in_place_act_fn(name)(y)
        assert torch.equal(out, expected) and out.data_ptr() == y.data_ptr()  # same values, no new map
    leaf = x.clone().requires_grad_()
    fresh = leaf * 1.0
    out = in_place_act_fn(name)(fresh)
    assert torch.equal(out, expected) and torch.equal(fresh, x)  # with grad: out of place, input kept for backward
    out.sum().backward()
    assert leaf.grad is not None
