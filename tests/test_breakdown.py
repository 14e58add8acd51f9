"""Where the time goes: operators attributed to modules and M² parts, MACs per part against hand-derived
counts on every formulation, the real profilers of torch, ONNX Runtime and OpenVINO, prefix differencing, and
the command line. Nothing here asserts a time beyond its being a finite number."""

from __future__ import annotations

import json
import math

import pytest
import torch

from emobench.analysis.breakdown import (PARTS, UNATTRIBUTED, OpTime, assign_parts, attribute, counted_ops, op_kind,
                                         prefix_summary, rollup, summarise)
from emobench.models.build import create_model
from emobench.nn.forms import FORMULATIONS, formulate
from emobench.nn.forms.prefix import Prefix, block_count
from emobench.nn.m2 import M2Block, M2BlockConfig
from emobench.runtimes.backends import BACKENDS
from tests.test_cli import assert_user_error, run

ATTENTION = ("attention: scores + softmax", "attention: weighted sum", "attention: fused core")


@pytest.fixture(scope="module")
def tiny():
    model = create_model("emo_tiny").eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    sizes = {}
    hooks = [b.register_forward_pre_hook(lambda mod, a, n=n: sizes.__setitem__(n, tuple(a[0].shape)))
             for n, b in model.named_modules() if isinstance(b, M2Block)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return model, x, sizes


def hand_macs(cfg: M2BlockConfig, shape: tuple[int, ...]) -> dict[str, int]:
    """The MACs of an M² block's parts from its configuration and input map, by hand: 1×1 projections are
    H·W·C_in·C_out (MLP_s at the output resolution), window attention scores and weighted sum are each
    H·W·N·C over windows of N = ws² tokens (heads · dim_head = C), Q/K projection H·W·C·2C."""
    _, c, h, w = shape
    ho, wo = -(-h // cfg.stride), -(-w // cfg.stride)
    out = {"MLP_s": ho * wo * cfg.dim_mid * cfg.dim_out}
    if cfg.expand:
        out["MLP_e"] = h * w * c * cfg.dim_mid
    if cfg.attention is not None:
        n = cfg.attention.window_size ** 2
        out["attention: Q/K projection"] = h * w * c * 2 * c
        out["attention"] = 2 * h * w * n * c
    return out


@pytest.mark.parametrize("form", list(FORMULATIONS))
def test_part_macs_equal_hand_counts_on_every_formulation(tiny, form):
    """The same parts, whatever operators a formulation writes them with: emobench's MACs of each part of each
    block equal the hand-derived count, and blocks carry the reference network's labels."""
    model, x, sizes = tiny
    f = formulate(model, form)
    got: dict[tuple[str, str], int] = {}
    for r in attribute(counted_ops(f, x), f, model).rows:
        part = "attention" if r["part"] in ATTENTION else r["part"]
        got[(r["block"], part)] = got.get((r["block"], part), 0) + (r["macs"] or 0)
    blocks = dict(model.named_modules())
    for name, shape in sizes.items():
        for part, macs in hand_macs(blocks[name].cfg, shape).items():
            assert got.get((name, part)) == macs, (form, name, part)


def test_op_kinds_across_runtimes():
    kinds = {"aten::linear": "matmul", "addmm": "matmul", "FusedMatMul": "matmul", "FullyConnected": "matmul",
             "Gemm": "matmul", "aten::conv2d": "conv", "FusedConv": "conv", "GroupConvolution": "conv",
             "aten::_softmax": "softmax", "Softmax": "softmax", "aten::scaled_dot_product_attention": "attention",
             "MHA": "attention", "MVN": "norm", "LayerNormalization": "norm", "native_batch_norm": "norm",
             "Reorder": "layout", "ReorderInput": "layout", "aten::permute": "layout", "Transpose": "layout",
             "constant_pad_nd": "layout", "ReduceMean": "reduce", "aten::mean": "reduce", "Add": "add",
             "aten::add": "add", "QuickGelu": "elementwise", "aten::silu_": "elementwise", "Eltwise": "elementwise"}
    assert {op: op_kind(op) for op in kinds} == kinds


def cfg(**kw) -> M2BlockConfig:
    base = dict(dim_in=32, dim_out=32, exp_ratio=2.0, attention={"window": "grid", "window_size": 7, "dim_head": 16})
    return M2BlockConfig(**{**base, **kw})


@pytest.mark.parametrize("config, kinds, parts", [
    (cfg(),  # cascaded, attn_pre: norm, Q/K, scores, softmax, weighted sum, MLP_e, DW (+ local skip), MLP_s, residual
     ["norm", "layout", "matmul", "matmul", "elementwise", "softmax", "matmul", "layout", "conv", "elementwise",
      "conv", "elementwise", "add", "conv", "add"],
     ["norm", "layout", "attention: Q/K projection", "attention: scores + softmax", "attention: scores + softmax",
      "attention: scores + softmax", "attention: weighted sum", "layout", "MLP_e", "MLP_e", "local DW-conv",
      "local DW-conv", "local DW-conv", "MLP_s", "residual"]),
    (cfg(),  # a runtime's fused attention kernel, and separate Q and K projections
     ["matmul", "matmul", "attention", "matmul", "conv", "conv", "add"],
     ["attention: Q/K projection", "attention: Q/K projection", "attention: fused core", "MLP_e", "local DW-conv",
      "MLP_s", "residual"]),
    (cfg(cascade="parallel", attention={"window": "grid", "window_size": 7, "dim_head": 16, "attn_pre": False}),
     ["matmul", "matmul", "matmul", "softmax", "matmul", "conv", "add", "conv", "add"],
     ["MLP_e", "attention: Q/K projection", "attention: scores + softmax", "attention: scores + softmax",
      "attention: weighted sum", "local DW-conv", "local DW-conv", "MLP_s", "residual"]),
    (cfg(attention={"window": "grid", "window_size": 7, "dim_head": 16, "attn_pre": False}),  # values expanded first
     ["matmul", "matmul", "matmul", "softmax", "matmul", "conv", "conv", "add"],
     ["attention: Q/K projection", "MLP_e", "attention: scores + softmax", "attention: scores + softmax",
      "attention: weighted sum", "local DW-conv", "MLP_s", "residual"]),
    (cfg(attention=None, se_ratio=0.25, skip=False),  # no attention, squeeze-excite, no residual
     ["conv", "elementwise", "conv", "reduce", "conv", "elementwise", "conv", "elementwise", "elementwise", "conv"],
     ["MLP_e", "MLP_e", "local DW-conv", "SE", "SE", "SE", "SE", "SE", "SE", "MLP_s"]),
])
def test_part_rules(config, kinds, parts):
    assert assign_parts(kinds, config) == parts


def test_summary_closure_and_unattributed_row(tiny):
    model, x, _ = tiny
    ops = [OpTime(name, name, scope, 0.01, macs) for name, name, scope, macs in
           [(o.name, o.op, o.scope, o.macs) for o in counted_ops(model, x)]]
    attributed = 0.01 * len(ops)
    result = summarise(ops, model, x, source="synthetic", headline_ms=attributed / 0.8)
    assert result["attributed_ms"] == pytest.approx(attributed)
    assert result["closure"] == pytest.approx(0.8) and not result["closes"]
    for by in ("part", "block", "stage", "op"):
        table = rollup(result, by)
        rest = table[table["group"] == UNATTRIBUTED]
        assert rest["ms"].item() == pytest.approx(attributed / 0.8 - attributed)  # never hidden
        assert table["ms"].sum() == pytest.approx(attributed / 0.8)  # parts + remainder = the headline
    parts = rollup(result, "part")
    assert set(parts["group"]) - {UNATTRIBUTED} <= set(PARTS)
    assert parts["ops"].dropna().sum() == len(ops)  # a profiler's operators, each counted once
    assert parts["macs"].sum() == sum(o.macs for o in ops)  # every counted MAC lands in one part
    assert summarise(ops, model, x, source="s", headline_ms=attributed * 1.05)["closes"]
    # measured beside the profiled calls, the unprofiled network is the basis; the headline is compared too
    beside = summarise(ops, model, x, source="s", headline_ms=attributed * 2, beside_ms=attributed * 1.05)
    assert beside["closes"] and beside["basis_ms"] == pytest.approx(attributed * 1.05)
    assert beside["closure_headline"] == pytest.approx(0.5)
    assert rollup(beside, "part")["ms"].sum() == pytest.approx(attributed * 1.05)


def test_prefix_summary_takes_differences_with_their_noise(tiny):
    model, x, _ = tiny
    n = block_count(model)
    passes = [[1.0 + k for k in range(n + 1)] + [n + 1.5], [1.2 + k for k in range(n + 1)] + [n + 1.9]]
    result = prefix_summary(passes, model, x, headline_ms=n + 1.7)
    stem, *blocks, head = result["rows"]
    assert (stem["block"], head["block"]) == ("stem", "head")
    assert stem["ms"] == pytest.approx(1.1) and stem["noise_ms"] == pytest.approx(0.2)
    assert all(b["ms"] == pytest.approx(1.0) and b["noise_ms"] == pytest.approx(0.0) for b in blocks)
    assert head["ms"] == pytest.approx(0.6) and head["noise_ms"] == pytest.approx(0.2)
    assert [b["block"] for b in blocks] == [n for n, m in model.named_modules() if isinstance(m, M2Block)]
    assert result["attributed_ms"] == pytest.approx(n + 1.7) and result["closes"]
    with pytest.raises(ValueError):
        prefix_summary([[1.0, 2.0]], model, x, headline_ms=2.0)


@pytest.mark.parametrize("form", ["mobile", "mobile-tokens"])
def test_block_cuts_stop_after_each_m2_part(tiny, form):
    """The mobile forms' blocks stop after any of their parts: the last cut is the block, every earlier one
    returns what is live there, the cut shares the block's weights and leaves it whole."""
    from emobench.nn.forms.prefix import part_cuts

    model, x, _ = tiny
    f = formulate(model, form)
    groups = part_cuts(f, x)
    assert sorted(k for g in groups for k in g.blocks) == list(range(block_count(f)))
    attention = [g for g in groups if g.block.cfg.attention is not None]
    assert attention, "emo_tiny has attention blocks"
    for g in groups:
        block = f.blocks[g.blocks[0]]
        with torch.no_grad():
            outs = [g.cut(tap)(g.input) for tap in range(1, len(g.parts) + 1)]
            assert torch.equal(outs[-1], block(g.input).reshape(-1)[:1]) and block.stop is None
            assert all(o.dim() == 1 and len(o) <= 4 for o in outs)  # one element of each live tensor
        assert g.parts[-1] == ("residual" if block.cfg.has_skip else "MLP_s")
        assert "MLP_s" in g.parts and ("local DW-conv" in g.parts) == (block.cfg.dw_kernel is not None)
        assert g.cut(1).proj_weight is block.proj_weight  # no copy of the weights
    for g in attention:
        wanted = {"attention: Q/K projection", "layout", "attention: scores + softmax", "attention: weighted sum"}
        assert wanted <= set(g.parts)
        order = [g.parts.index(p) for p in ("attention: Q/K projection", "attention: scores + softmax",
                                            "attention: weighted sum")]
        assert order == sorted(order)
    assert part_cuts(formulate(model, "cpu-ort"), x) is None  # taps only in the mobile forms


def test_prefix_summary_splits_blocks_into_parts_by_their_cuts(tiny):
    """Hand-made passes: a block's in-network time is split in the proportions of its isolated cut
    differences (less the empty call), and the parts add up to it exactly."""
    model, x, _ = tiny
    n = block_count(model)
    names = ["norm", "MLP_e", "MLP_s", "residual"]
    cuts = [0.5, 1.0, 2.0, 4.5, 5.0]  # empty call, then the cuts: isolated parts 0.5, 1.0, 2.5, 0.5 (sum 4.5)
    passes = [[1.0 + 2 * k for k in range(n + 1)] + [2 * n + 1.5] + cuts] * 2
    result = prefix_summary(passes, model, x, headline_ms=2 * n + 1.5, parts=[([0, 2], names)])
    rows = result["rows"]
    split = [r for r in rows if r.get("isolated_ms") is not None]
    assert [r["part"] for r in split] == names * 2
    assert [r["ms"] for r in split[:4]] == pytest.approx([2.0 * t / 4.5 for t in (0.5, 1.0, 2.5, 0.5)])
    assert sum(r["ms"] for r in split[:4]) == pytest.approx(2.0)
    assert len(rows) == n + 2 - 2 + 8 and result["m2"] and result["closes"]
    assert result["attributed_ms"] == pytest.approx(2 * n + 1.5)
    parts = rollup(result, "part")
    assert set(parts["group"]) >= {"stem", "head", *names}
    assert parts["ops"].isna().all()  # differences of cuts: no runtime operator is counted
    with pytest.raises(ValueError, match="in-block cuts"):
        prefix_summary(passes, model, x, headline_ms=1.0, parts=[([0], names + ["SE"])])


@pytest.mark.parametrize("form", ["reference", "fused", "official", "mobile", "cpu-ort"])
def test_prefix_cuts_compute_the_network_up_to_the_block(tiny, form):
    model, x, _ = tiny
    f = formulate(model, form)
    n = block_count(f)
    assert n == sum(isinstance(m, M2Block) for m in model.modules())
    with torch.no_grad():
        whole = Prefix(f, n)(x)
        features = model.forward_features(x)
        if whole.shape != features.shape:  # NHWC forms
            whole = whole.permute(0, 3, 1, 2)
        assert torch.allclose(whole, features, atol=1e-4)
        assert Prefix(f, 0)(x).numel() > 0
    with pytest.raises(ValueError):
        Prefix(f, n + 1)


def _profiled(backend: str, form: str, tiny, tmp_path) -> dict:
    from emobench.runtimes.base import Artifact

    model, x, _ = tiny
    b = BACKENDS[backend]
    if b.unavailable():
        pytest.skip(b.unavailable())
    f = formulate(model, form)
    if b.suffix is None:
        artifact = b.prepare(f, x, "")
    else:
        path = tmp_path / f"m{b.suffix}"
        b.export(f, x, path)
        artifact = Artifact(path, path, None, False, companions=b.companions)
    prof = b.profile(artifact, 1, "fp32", x, runs=3, warmup=1)
    ops = [OpTime(o["name"], o["op"], o["scope"], o["ms"]) for o in prof.ops]
    return summarise(ops, f, x, source=prof.source, headline_ms=prof.wall_ms, reference=model,
                     profiled_ms=prof.wall_ms, runs=prof.runs)


@pytest.mark.parametrize("backend, form", [("torch", "fused"), ("onnxruntime", "cpu-ort"), ("openvino", "cpu-ov")])
def test_real_profilers_attribute_every_operator_to_a_block_part(backend, form, tiny, tmp_path):
    result = _profiled(backend, form, tiny, tmp_path)
    rows = result["rows"]
    assert rows and all(r["ms"] >= 0 and math.isfinite(r["ms"]) for r in rows)
    assert all(r["part"] in PARTS for r in rows)
    model = tiny[0]
    labels = {n for n, m in model.named_modules() if isinstance(m, M2Block)}
    assert {r["block"] for r in rows} - {"stem", "head"} == labels  # every block timed, under its reference name
    attention_blocks = {n for n, m in model.named_modules() if isinstance(m, M2Block) and m.cfg.attention is not None}
    for block in attention_blocks:
        parts = {r["part"] for r in rows if r["block"] == block}
        assert {"attention: Q/K projection", "MLP_e", "local DW-conv", "MLP_s"} <= parts, (block, parts)
        assert parts & {"attention: fused core", "attention: weighted sum"}, (block, parts)
    assert math.isfinite(result["closure"]) and result["closure"] > 0
    assert result["total_macs"] == sum(v for v in result["macs"]["part"].values() if v is not None)


def test_bench_breakdown_on_the_command_line(capsys, monkeypatch, tmp_path):
    store = tmp_path / "s.sqlite"
    code, out, err = run(capsys, monkeypatch, "bench", "irmb", "-B", "torch,onnxruntime", "--breakdown",
                         "--breakdown-method", "both", "--rounds", "1", "--min-time", "0.05", "--min-runs", "3",
                         "--warmup", "1", "-t", "1", "--store", str(store), "--format", "json")
    assert code == 0, err
    records = json.loads(out)["rows"]
    torch_rec = next(r for r in records if r["backend"] == "torch")
    assert "no stem and block sequence to cut" in torch_rec["breakdown"]["prefix"]["error"]  # one block alone
    profiler = torch_rec["breakdown"]["profiler"]
    assert profiler["schema"] == "breakdown/1" and profiler["headline_ms"] == torch_rec["median_ms"]  # same run
    assert profiler["basis_ms"] > 0 and profiler["basis_ms"] != profiler["headline_ms"]  # timed beside the profiler
    assert profiler["closure"] == pytest.approx(profiler["attributed_ms"] / profiler["basis_ms"])
    ort = next(r for r in records if r["backend"] == "onnxruntime")["breakdown"]
    assert "source" in ort["profiler"] and "error" in ort["prefix"]  # a single block has no sequence to cut
    code, out, err = run(capsys, monkeypatch, "results", "breakdown", "--store", str(store), "--format", "json",
                         "--by", "part")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["meta"]["schema"] == "emobench.breakdown/1"
    assert {r["backend"] for r in doc["rows"]} == {"torch", "onnxruntime"}
    assert {r["group"] for r in doc["rows"]} >= {"attention: Q/K projection", "MLP_e", "MLP_s", UNATTRIBUTED}
    assert {s["method"] for s in doc["meta"]["breakdowns"]} == {"profiler", "prefix"}
    code, out, err = run(capsys, monkeypatch, "results", "breakdown", "--store", str(store))
    assert code == 0 and "closure" in out and "MLP_e" in out
    plot = tmp_path / "where.html"
    code, _, err = run(capsys, monkeypatch, "results", "breakdown", "--store", str(store), "--plot", str(plot))
    assert code == 0 and plot.read_text().count("MLP_e") >= 1
    code, _, err = run(capsys, monkeypatch, "results", "breakdown", "--store", str(store), "--by", "module")
    assert_user_error(code, err, "--by takes part, block, stage, op")
    code, _, err = run(capsys, monkeypatch, "results", "breakdown", "--store", str(store), "--plot", str(store))
    assert_user_error(code, err)
    code, _, err = run(capsys, monkeypatch, "bench", "irmb", "--breakdown", "--breakdown-method", "guess")
    assert_user_error(code, err, "unknown breakdown method 'guess'")


def test_prefix_differencing_through_bench(tmp_path):
    """A runtime without a profiler emobench reads: the network cut after each block, and each distinct block
    of a mobile form cut after each M² part on its own input, timed interleaved in one worker."""
    from emobench.runs.bench import PASSES_PER_ROUND, BenchPlan, run_bench

    if BACKENDS["onnxruntime"].unavailable():
        pytest.skip(BACKENDS["onnxruntime"].unavailable())
    ref = "emo_tiny,depths=[1, 1, 1, 2]"  # the last stage's second block: attention and a residual
    plan = BenchPlan(models=[ref], backends=["onnxruntime"], forms=["mobile"], threads=[1], rounds=2,
                     min_time=0.02, min_runs=3, warmup=1, breakdown="prefix", resolution=(64, 64))
    (rec,) = run_bench(plan)
    result = rec.breakdown["prefix"]
    assert "error" not in result, result.get("error")
    blocks = {r["block"] for r in result["rows"]} - {"stem", "head"}
    assert len(blocks) == 6 and result["runs"] == 2 * PASSES_PER_ROUND and result["m2"] and "M² parts" in result["source"]
    assert all(math.isfinite(r["ms"]) and r["noise_ms"] >= 0 for r in result["rows"])
    split = [r for r in result["rows"] if r.get("isolated_ms") is not None]
    assert split and all(r["part"] for r in split)
    for block in {r["block"] for r in split}:  # a block's parts share its sign (its time may be noise below zero)
        assert len({r["ms"] > 0 for r in split if r["block"] == block and r["ms"] != 0}) <= 1
    assert result["headline_ms"] == rec.median_ms and math.isfinite(result["closure"])
    assert sum(result["macs"]["block"].values()) == result["total_macs"]
    parts = set(rollup(result, "part")["group"])
    assert {"stem", "attention: Q/K projection", "attention: scores + softmax", "attention: weighted sum", "layout",
            "MLP_e", "local DW-conv", "SE", "MLP_s", "residual", "head", UNATTRIBUTED} <= parts


def test_prefix_differencing_on_eager_torch(tmp_path):
    """Eager torch has no file of its own: its cuts and the whole network are torch.export programs, timed in
    one worker's interleaved passes like a runtime's files; by block (the fused form marks no parts)."""
    from emobench.runs.bench import PASSES_PER_ROUND, BenchPlan, run_bench

    plan = BenchPlan(models=["emo_tiny,depths=[1, 1, 1, 2]"], backends=["torch"], forms=["fused"], threads=[1],
                     rounds=2, min_time=0.02, min_runs=3, warmup=1, breakdown="prefix", resolution=(64, 64))
    (rec,) = run_bench(plan)
    result = rec.breakdown["prefix"]
    assert "error" not in result, result.get("error")
    assert "torch.export programs" in result["source"] and result["runs"] == 2 * PASSES_PER_ROUND
    assert {r["block"] for r in result["rows"]} - {"stem", "head"} == {r for r in result["macs"]["block"]} - {"stem", "head"}
    assert len({r["block"] for r in result["rows"]} - {"stem", "head"}) == 6 and not result["m2"]  # the stem's block (stage0.1) and 1, 1, 1, 2
    assert result["headline_ms"] == rec.median_ms and math.isfinite(result["closure"]) and result["basis_ms"] > 0
    assert sum(result["macs"]["block"].values()) == result["total_macs"]


def test_a_model_outside_the_zoo_is_broken_down_by_module(capsys, monkeypatch, tmp_path):
    """No M² blocks: every operator under the module that ran it, rolled up by module and top-level module; a
    roll-up by M² part is refused in one line. Prefix differencing needs a block sequence, which it has not."""
    from pathlib import Path

    import model_factories

    ref = f"{Path(model_factories.__file__)}:tiny_attention"
    backends = [b for b in ("torch", "onnxruntime", "openvino") if not BACKENDS[b].unavailable()]
    store = tmp_path / "s.sqlite"
    code, out, err = run(capsys, monkeypatch, "bench", ref, "-B", ",".join(backends), "--breakdown", "--rounds", "1",
                         "--min-time", "0.02", "--min-runs", "3", "--warmup", "1", "-t", "1", "--store", str(store),
                         "--format", "json")
    assert code == 0, err
    for rec in json.loads(out)["rows"]:
        result = rec["breakdown"]["profiler"]
        assert "error" not in result, (rec["backend"], result)
        assert not result["m2"] and all(r["part"] is None for r in result["rows"])
        modules = {r["block"] for r in result["rows"]}
        assert {"embed", "qkv", "proj"} <= modules, (rec["backend"], modules)
        assert sum(r["ms"] for r in result["rows"]) == pytest.approx(result["attributed_ms"])
    code, out, err = run(capsys, monkeypatch, "results", "breakdown", "--store", str(store), "--by", "block", "-f", "json")
    rows = json.loads(out)["rows"]
    assert code == 0 and {r["backend"] for r in rows} == set(backends)
    assert {r["group"] for r in rows} >= {"embed", "qkv", "proj", UNATTRIBUTED}
    code, out, err = run(capsys, monkeypatch, "results", "breakdown", "--store", str(store), "--by", "part")
    assert code == 0 and "no M² parts (use --by block)" in out


def test_a_staged_model_outside_the_zoo_is_cut_after_each_stage(tmp_path):
    """timm's layout (stem → stages → head): prefix differencing cuts after each stage, on any file runtime."""
    from pathlib import Path

    import model_factories
    from emobench.nn.forms.prefix import generic_cuts
    from emobench.runs.bench import BenchPlan, run_bench

    model = model_factories.staged()
    assert block_count(model) == 2 and generic_cuts(model) == ["stages.0", "stages.1"]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(Prefix(model, 2)(x), model.forward_features(x))
    if BACKENDS["onnxruntime"].unavailable():
        pytest.skip(BACKENDS["onnxruntime"].unavailable())
    plan = BenchPlan(models=[f"{Path(model_factories.__file__)}:staged"], backends=["onnxruntime"], threads=[1],
                     rounds=2, min_time=0.02, min_runs=3, warmup=1, breakdown="prefix")
    (rec,) = run_bench(plan)
    result = rec.breakdown["prefix"]
    assert "error" not in result, result
    assert [r["block"] for r in result["rows"]] == ["stem", "stages.0", "stages.1", "head"]
    conv1, conv2 = 8 * 8 * 9 * 16 * 16, 16 * 8 * 9 * 8 * 8  # C_out · C_in · k² · H_out · W_out
    stem, head = 8 * 3 * 9 * 16 * 16, 16 * 10  # the stem conv; the classifier (the pooling mean is not counted)
    assert result["macs"]["block"] == {"stem": stem, "stages.0": conv1, "stages.1": conv2, "head": head}
    assert sum(result["macs"]["block"].values()) == result["total_macs"]
    assert "stage" in result["source"]
