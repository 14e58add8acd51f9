"""The cost of a training step: forward and backward MACs against hand-derived counts, torch's FlopCounterMode
reconciled exactly, the memory split against hand-counted saved tensors, checkpointing and bf16 autocast as
switches, the CLI's JSON, store record and errors. Nothing is timed here beyond running the code path."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from emobench.measure import training
from emobench.models.references import resolve
from emobench.results.store import ResultStore, headline
from tests.test_cli import assert_user_error, run


def hand_model() -> nn.Module:
    """conv 3→8 (3×3, same) → ReLU → flatten → linear 512→16 → ReLU → linear 16→10, on 2×3×8×8."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 16), nn.ReLU(),
                         nn.Linear(16, 10))


X = (2, 3, 8, 8)
CONV = 2 * 8 * 3 * 9 * 8 * 8  # N · C_out · C_in · k² · H · W
FC1, FC2 = 2 * 512 * 16, 2 * 16 * 10


def inputs(shape=X, grad=False):
    x = torch.randn(shape, requires_grad=grad)
    return x, torch.randint(0, 10, (shape[0],))


def test_forward_and_backward_macs_equal_hand_derived_counts():
    x, y = inputs()
    count = training.count_train_step(hand_model(), x, y)
    assert count.forward.macs == CONV + FC1 + FC2
    # each gradient of a product is a product of the same size: the linears compute input and weight gradients,
    # the first conv only its weight's (the input needs none); biases and element-wise backward are not counted
    assert count.backward.macs == CONV + 2 * FC1 + 2 * FC2
    assert count.by_module["0"] == {"forward": CONV, "backward": CONV}
    assert count.by_module["3"] == {"forward": FC1, "backward": 2 * FC1}
    assert count.by_module["5"] == {"forward": FC2, "backward": 2 * FC2}
    assert count.by_module[""] == {"forward": count.forward.macs, "backward": count.backward.macs}
    assert not count.forward.uncounted and not count.backward.uncounted
    # an input that needs its gradient costs the first conv a second product
    x, y = inputs(grad=True)
    assert training.count_train_step(hand_model(), x, y).by_module["0"]["backward"] == 2 * CONV


def test_grouped_conv_backward_and_torchs_ungrouped_weight_gradient():
    conv = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
    x = torch.randn(1, 16, 8, 8, requires_grad=True)
    macs = 16 * 9 * 8 * 8  # C · k² · H · W: one input channel per group
    count = training.count_train_step(conv, x, None)
    assert (count.forward.macs, count.backward.macs) == (macs, 2 * macs)
    with FlopCounterMode(display=False) as flops:
        conv(x).float().mean().backward()
    # torch counts the weight gradient as an ungrouped convolution's (× groups): the gap is exactly that
    assert count.ungrouped_extra == 15 * macs
    assert flops.get_total_flops() == 2 * (count.forward.macs + count.backward.macs + count.ungrouped_extra)


def test_norm_and_attention_backward_conventions():
    n, length, c, heads = 2, 6, 8, 2
    ln = nn.LayerNorm(c)
    x = torch.randn(n, length, c, requires_grad=True)
    count = training.count_train_step(ln, x, None)
    elements = n * length * c
    assert count.forward.macs == 5 * elements  # fvcore's convention: 5 per element with an affine part
    assert count.backward.macs == 2 * 5 * elements + 2 * elements  # input gradient 2 × forward, + weight and bias

    class Attention(nn.Module):
        def forward(self, q):
            return nn.functional.scaled_dot_product_attention(q, q * 2, q * 3)

    q = torch.randn(n, heads, length, c, requires_grad=True)
    count = training.count_train_step(Attention(), q, None)
    forward = n * heads * length * length * (c + c)  # Q Kᵀ and P V
    assert count.forward.macs == forward
    assert count.backward.macs == 2 * forward  # dV, dP, dQ, dK


def test_matches_torchs_flop_counter_on_a_zoo_model_exactly():
    model = resolve("emo_tiny").build(None)
    x = torch.randn(2, 3, 64, 64)
    y = torch.randint(0, 10, (2,))
    count = training.count_train_step(copy.deepcopy(model), x, y)
    with FlopCounterMode(display=False) as flops:
        nn.functional.cross_entropy(copy.deepcopy(model).train()(x), y).backward()
    norms = sum(v for phase in (count.forward, count.backward) for op, v in phase.by_operator.items() if "norm" in op)
    assert norms > 0 and count.ungrouped_extra > 0  # emo_tiny has norms and depth-wise convs
    assert flops.get_total_flops() == 2 * (count.forward.macs + count.backward.macs - norms + count.ungrouped_extra)
    # the forward of a training step is the inference count in training mode (BatchNorm at 5 per element)
    from emobench.measure.counters import count_emobench

    assert count.forward.macs == count_emobench(copy.deepcopy(model).train(), x)[0].macs


def test_memory_split_equals_hand_counted_tensors():
    x, y = inputs()
    params = 4 * ((3 * 8 * 9 + 8) + (512 * 16 + 16) + (16 * 10 + 10))
    mem = training.train_memory(hand_model(), x, y, "adamw")
    assert mem.parameters == mem.gradients == params
    assert mem.optimizer_state == 2 * params + 6 * 4  # exp_avg, exp_avg_sq, and a float step per parameter
    # saved for backward: both ReLU outputs, log_softmax's output and nll_loss's total weight (float32)
    saved = 4 * (2 * 8 * 8 * 8 + 2 * 16 + 2 * 10 + 1)
    assert mem.activations_saved == saved
    assert mem.output_and_loss == 4 * (2 * 10 + 1)  # the logits and the loss: live, not saved
    assert mem.activations == saved + mem.output_and_loss and mem.other == 0
    assert mem.step_peak >= mem.activations + mem.gradients
    assert mem.peak == params + mem.optimizer_state + mem.step_peak  # the model has no buffers
    assert training.train_memory(hand_model(), x, y, "sgd").optimizer_state == params  # one momentum buffer
    # the meta-device estimate sees the model's saved tensors (the loss is outside the model)
    with torch.device("meta"):
        meta = hand_model()
    assert training.saved_bytes_estimate(meta, X) == 4 * (2 * 8 * 8 * 8 + 2 * 16)


def test_checkpointing_recomputes_in_backward_and_keeps_less():
    model = resolve("emo_tiny").build(None)
    x = torch.randn(2, 3, 64, 64)
    y = torch.randint(0, 10, (2,))
    plain = training.count_train_step(copy.deepcopy(model), x, y)
    checkpointed = copy.deepcopy(model)
    assert "M² blocks" in training.enable_checkpointing(checkpointed)
    copied = copy.deepcopy(checkpointed)  # a deep copy checkpoints its own blocks, not the original's
    count = training.count_train_step(copied, x, y)
    assert count.forward.macs == plain.forward.macs
    assert count.backward.macs > plain.backward.macs  # the blocks' forward again, inside backward
    assert all(p.grad is None for p in checkpointed.parameters())  # the original was not run
    mem_plain = training.train_memory(copy.deepcopy(model), x, y)
    mem = training.train_memory(copy.deepcopy(checkpointed), x, y)
    assert mem.activations_saved < mem_plain.activations_saved
    with pytest.raises(ValueError, match="no M² blocks"):
        training.enable_checkpointing(hand_model())


def test_bf16_autocast_counts_the_same_and_keeps_less():
    model = resolve("emo_tiny").build(None)
    x = torch.randn(2, 3, 64, 64)
    y = torch.randint(0, 10, (2,))
    fp32 = training.count_train_step(copy.deepcopy(model), x, y)
    bf16 = training.count_train_step(copy.deepcopy(model), x, y, "bf16-autocast")
    assert (bf16.forward.macs, bf16.backward.macs) == (fp32.forward.macs, fp32.backward.macs)
    assert training.train_memory(copy.deepcopy(model), x, y, dtype="bf16-autocast").activations < \
        training.train_memory(copy.deepcopy(model), x, y).activations


def test_step_times_have_one_value_per_timed_step():
    x, y = inputs()
    times = training.time_steps(hand_model(), x, y, steps=3, warmup=1, threads=1)
    assert len(times.forward) == len(times.backward) == len(times.optimizer) == len(times.step) == 3
    assert times.threads == 1 and times.first_step_s > 0 and min(times.step) > 0


def test_cli_json_store_and_estimate(capsys, monkeypatch, tmp_path):
    store, out = tmp_path / "s.sqlite", tmp_path / "train.json"
    code, _, err = run(capsys, monkeypatch, "train-cost", "emo_tiny", "-b", "2", "--steps", "2", "--warmup", "1",
                       "-t", "1", "--epochs", "2", "--images", "100", "--recipe-batch", "32", "--store", str(store),
                       "-o", str(out))
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["meta"]["schema"] == "emobench.train/1"
    cost = doc["train_costs"][0]
    m = cost["metrics"]
    for key in ("forward_macs", "backward_macs", "step_flops", "backward_forward_ratio", "fvcore_forward_macs",
                "torch_flop_counter_flops", "memory_parameters", "memory_gradients", "memory_optimizer_state",
                "memory_activations", "memory_activations_saved", "peak_memory_cpu", "step_ms", "forward_ms",
                "backward_ms", "optimizer_ms"):
        assert {"value", "unit", "method", "status"} <= set(m[key]), key
    assert m["step_macs"]["value"] == m["forward_macs"]["value"] + m["backward_macs"]["value"]
    assert m["fvcore_forward_macs"]["value"] == m["forward_macs"]["value"]  # fvcore agrees on the forward
    assert m["estimate_2x_forward_flops"]["value"] == 6 * m["forward_macs"]["value"]
    est = cost["estimate"]
    assert (est["inputs"]["steps_per_epoch"], est["inputs"]["images_seen"]) == (3, 2 * 3 * 32)  # drop_last
    assert est["train_flops"] == 2 * m["step_macs"]["value"] * 192 // 2
    assert {r["module"] for r in cost["layers"]} >= {"(model)", "stage1", "head"}
    with ResultStore(store, readonly=True) as db:
        df = db.records()
    assert len(df) == 1
    rec = df.iloc[0]
    assert (rec["form"], rec["form_requested"], rec["backend"], rec["batch"]) == ("train:adamw", "train", "torch", 2)
    assert rec["train"]["metrics"]["step_macs"]["value"] == m["step_macs"]["value"]
    assert rec["median_ms"] == pytest.approx(m["step_ms"]["value"])
    assert headline(df).empty  # never an inference latency


def test_cli_counts_only_screen_and_csv(capsys, monkeypatch, tmp_path):
    code, out, err = run(capsys, monkeypatch, "train-cost", "emo_tiny", "-b", "2", "--counts-only")
    assert code == 0, err
    assert "backward_forward_ratio" in out and "paper-scale estimate" in out and "step_ms" not in out
    code, out, _ = run(capsys, monkeypatch, "train-cost", "emo_tiny", "-b", "2", "--counts-only", "-f", "csv",
                       "--layers", "-d", "2")
    assert code == 0 and out.splitlines()[0].startswith("module,type,depth,params,forward_macs,backward_macs")


@pytest.mark.parametrize("args, needles", [
    (["--optimizer", "lion"], ["unknown optimizer 'lion'", "adamw"]),
    (["--dtype", "fp16"], ["unknown training dtype 'fp16'", "bf16-autocast"]),
    (["-t", "999"], ["999 threads"]),
])
def test_cli_bad_input_is_one_line(capsys, monkeypatch, args, needles):
    code, _, err = run(capsys, monkeypatch, "train-cost", "emo_tiny", "-b", "2", "--counts-only", *args)
    assert_user_error(code, err, *needles)


def test_cli_checkpointing_of_a_model_without_blocks_is_one_line(capsys, monkeypatch, tmp_path):
    factory = tmp_path / "plain.py"
    factory.write_text("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), "
                       "torch.nn.Flatten(), torch.nn.Linear(784, 10))\n")
    code, _, err = run(capsys, monkeypatch, "train-cost", f"{factory}:make@16", "-b", "2", "--counts-only",
                       "--checkpointing")
    assert_user_error(code, err, "--checkpointing", "no M² blocks")


@pytest.mark.skipif(__import__("importlib").util.find_spec("timm") is None, reason="needs timm")
def test_a_timm_model_checkpoints_with_its_own_api():  # pragma: no cover - only where timm is installed
    from emobench.runs.train import train_cost

    cost = train_cost("timm:edgenext_xx_small@64", batch=2, checkpointing=True, counts_only=True)
    assert cost.settings["checkpointing"].startswith("the model's set_grad_checkpointing")
    assert cost.metrics["backward_forward_ratio"].value > 2  # the recomputed forward is part of backward


def test_cli_a_bad_second_model_costs_nothing(capsys, monkeypatch, tmp_path):
    store = tmp_path / "s.sqlite"
    code, _, err = run(capsys, monkeypatch, "train-cost", "emo_tiny", "emo_nonexistent", "-b", "2", "--store", str(store))
    assert_user_error(code, err, "emo_nonexistent")
    assert not store.exists() or ResultStore(store, readonly=True).count() == 0


@pytest.mark.slow
def test_compiled_step_is_timed_with_compilation_in_the_first_step(tmp_path):
    from emobench.runs.train import train_cost

    factory = tmp_path / "tiny.py"
    factory.write_text("import torch\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), "
                       "torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(512, 10))\n")
    cost = train_cost(f"{factory}:make@8", batch=2, compile_=True, steps=2, warmup=1, threads=1)
    assert cost.settings["compile"] and "torch.compile" in cost.metrics["step_ms"].method
    assert "compilation included" in cost.metrics["first_step_s"].method
    assert cost.step_stats.runs == 2 and cost.metrics["forward_macs"].value == 2 * 8 * 3 * 9 * 64 + 2 * 512 * 10
