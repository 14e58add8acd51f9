"""Down-stream models (SSDLite, RetinaNet, DeepLabv3, PSPNet on EMO): reported parameter counts reproduced,
hand-derived counts of one head of each kind, mmdet/mmseg key names, and the backbone equal to the classifier's."""

from __future__ import annotations

import math

import pytest
import torch

from emobench.measure.counters import count_emobench
from emobench.models.build import create_model
from emobench.nn.dense import (ASPPHead, ASPPHeadConfig, FPN, FPNConfig, SSDHead, SSDHeadConfig)
from emobench.zoo.papers import get_table

TASKS = {"SSDLite COCO 320": "ssdlite", "RetinaNet 1x COCO": "retinanet", "DeepLabv3 ADE20K": "deeplabv3",
         "PSPNet ADE20K": "pspnet"}


def _reported() -> dict[str, dict[str, float]]:
    """zoo name → reported values, from zoo/papers/downstream.toml (the EMO rows)."""
    table = get_table("downstream")
    out = {}
    for row in table.rows:
        if not row.model.startswith("EMO-"):
            continue
        prefix = next((z for t, z in TASKS.items() if row.task and row.task.lower().startswith(t.split()[0].lower())), None)
        assert prefix, f"unmapped task {row.task}"
        out[f"{prefix}_emo_{row.model[4:].lower()}"] = row.values
    return out


def _truncate(value: float, digits: int = 1) -> float:
    """The README's convention: counts truncated, not rounded, to one decimal (EMO-1M's 1.361 M is '1.3M')."""
    return math.floor(value * 10**digits) / 10**digits


REPORTED = _reported()


def test_all_twelve_emo_downstream_models_are_in_the_table():
    assert sorted(REPORTED) == sorted(f"{t}_emo_{v}" for t in TASKS.values() for v in ("1m", "2m", "5m"))


@pytest.mark.parametrize("name", sorted(REPORTED))
def test_parameter_count_reproduces_the_reported_one(name):
    model = create_model(name)
    params = sum(p.numel() for p in model.parameters())
    assert _truncate(params / 1e6) == pytest.approx(REPORTED[name]["params_m"]), params


def test_emo_backbone_is_the_classifier_without_its_head():
    classifier = create_model("emo_1m").eval()
    det = create_model("retinanet_emo_1m").eval()
    state = {k: v for k, v in classifier.state_dict().items() if not k.startswith(("norm.", "head."))}
    det.backbone.load_state_dict(state, strict=True)  # same keys, nothing missing, nothing left over
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        want = classifier.forward_stages(x)
        got = det.backbone(x)
    assert len(got) == 4
    for a, b in zip(got, want[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_task_windows_follow_the_official_configs():
    assert {b.cfg.attention.window_size for b in create_model("ssdlite_emo_5m").backbone.modules()
            if getattr(getattr(b, "cfg", None), "attention", None)} == {10}
    assert {b.cfg.attention.window_size for b in create_model("pspnet_emo_5m").backbone.modules()
            if getattr(getattr(b, "cfg", None), "attention", None)} == {16}
    assert {b.cfg.attention.window_size for b in create_model("deeplabv3_emo_2m").backbone.modules()
            if getattr(getattr(b, "cfg", None), "attention", None)} == {7}


def test_key_names_follow_mmdet_and_mmseg():
    ssd = create_model("ssdlite_emo_1m").state_dict()
    for key in ["backbone.stage0.0.convs.0.0.weight", "neck.extra_layers.0.0.conv.weight", "neck.extra_layers.0.0.bn.weight",
                "neck.extra_layers.0.1.depthwise_conv.conv.weight", "neck.extra_layers.0.1.pointwise_conv.bn.running_var",
                "bbox_head.cls_convs.0.0.conv.weight", "bbox_head.cls_convs.5.1.bias", "bbox_head.reg_convs.0.1.weight"]:
        assert key in ssd, key
    retina = create_model("retinanet_emo_1m").state_dict()
    for key in ["neck.lateral_convs.0.conv.bias", "neck.fpn_convs.4.conv.weight", "bbox_head.cls_convs.3.conv.weight",
                "bbox_head.retina_cls.weight", "bbox_head.retina_reg.bias"]:
        assert key in retina, key
    deeplab = create_model("deeplabv3_emo_1m").state_dict()
    for key in ["decode_head.image_pool.1.conv.weight", "decode_head.aspp_modules.3.bn.weight",
                "decode_head.bottleneck.conv.weight", "decode_head.conv_seg.bias", "auxiliary_head.convs.0.conv.weight",
                "auxiliary_head.conv_seg.weight"]:
        assert key in deeplab, key
    assert "decode_head.psp_modules.3.1.conv.weight" in create_model("pspnet_emo_1m").state_dict()
    assert not any(k.startswith(("backbone.norm", "backbone.head")) for k in ssd)


def test_ssdlite_outputs_per_level():
    model = create_model("ssdlite_emo_1m").eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 320, 320))
    sides = [20, 10, 5, 3, 2, 1]  # strides 16, 32 from the backbone, then four stride-2 extra levels
    assert [tuple(o.shape) for o in outs] == [(1, 6 * 81, s, s) for s in sides] + [(1, 6 * 4, s, s) for s in sides]
    assert model.output_names() == [f"cls_{i}" for i in range(6)] + [f"reg_{i}" for i in range(6)]


def test_segmenter_logits_at_the_input_and_aux_only_in_training():
    model = create_model("pspnet_emo_1m").eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        assert model(x).shape == (1, 150, 96, 128)
    model.train()  # batch 2: BatchNorm after the 1×1 pooling needs more than one value per channel in training
    main, aux = model(torch.cat([x, x]))
    assert main.shape == aux.shape == (2, 150, 96, 128)


# ---- hand-derived counts (MACs = multiply-accumulates, fvcore's convention) --------------------------------------

def _macs(module, *inputs) -> int:
    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = module

        def forward(self, x):
            return self.m(list(inputs))

    result, _ = count_emobench(Wrap().eval(), inputs[0])
    return result.by_operator.get("convolution", 0)


def test_ssdlite_predictor_count_by_hand():
    c, h, w, anchors, classes = 32, 5, 7, 6, 80
    head = SSDHead([c], SSDHeadConfig(type="ssd", num_classes=classes, num_anchors=[anchors])).eval()
    # class branch: depth-wise 3×3 (c·9 per pixel) + 1×1 to anchors·(classes+1); box branch the same to anchors·4
    want = h * w * (c * 9 + c * anchors * (classes + 1)) + h * w * (c * 9 + c * anchors * 4)
    assert _macs(head, torch.randn(1, c, h, w)) == want
    params = sum(p.numel() for p in head.parameters())
    bn = 2 * c  # weight and bias of each depth-wise conv's BatchNorm
    assert params == 2 * (c * 9 + bn) + (c * anchors * (classes + 1) + anchors * (classes + 1)) + (c * anchors * 4 + anchors * 4)


def test_aspp_branch_count_by_hand():
    cin, ch, h, w = 16, 8, 6, 6
    head = ASPPHead([cin], ASPPHeadConfig(type="aspp", in_index=0, channels=ch, num_classes=3, dilations=[2])).eval()
    pool = cin * ch  # image pooling: 1×1 conv on a 1×1 map
    branch = h * w * cin * ch * 9  # one dilated 3×3 branch (zero padding counted, as every counter does)
    bottleneck = h * w * (2 * ch) * ch * 9
    classifier = h * w * ch * 3
    assert _macs(head, torch.randn(1, cin, h, w)) == pool + branch + bottleneck + classifier


def test_fpn_level_count_by_hand():
    cfg = FPNConfig(type="fpn", out_channels=8, start_level=0, num_outs=2, add_extra_convs="on_input")
    fpn = FPN([4], cfg).eval()
    h = w = 6
    lateral = h * w * 4 * 8
    output = h * w * 8 * 8 * 9
    extra = 3 * 3 * 4 * 8 * 9  # stride-2 3×3 on the input level: a 3×3 map
    assert _macs(fpn, torch.randn(1, 4, h, w)) == lateral + output + extra
    outs = fpn([torch.randn(1, 4, h, w)])
    assert [tuple(o.shape) for o in outs] == [(1, 8, 6, 6), (1, 8, 3, 3)]


def test_reported_segmentation_flops_are_counts_without_attention_matmuls():
    """The reading that reproduces the reported FLOPs (docs/tables.md): DeepLabv3 at the 512×512 crop, every
    convolution and linear layer counted, the attention's two matmuls not (the module-hook counters of
    mmcv cannot see them), truncated to one decimal."""
    model = create_model("deeplabv3_emo_1m").eval()
    result, _ = count_emobench(model, torch.randn(1, 3, 512, 512))
    without_matmuls = result.macs - result.by_operator.get("bmm", 0)
    assert _truncate(without_matmuls / 1e9) == REPORTED["deeplabv3_emo_1m"]["flops_g"]


TINY_DETECTOR = """
family = "detector"
summary = "test: SSDLite on the tiny EMO"
input_size = [3, 128, 128]

[config]
backbone = "emo_tiny"
out_indices = [3, 4]

[config.neck]
type = "ssd"
out_channels = [32, 48, 64, 32]
level_strides = [2, 2]
level_paddings = [1, 1]

[config.bbox_head]
type = "ssd"
num_classes = 5
num_anchors = [4, 6, 6, 6]
"""


@pytest.mark.parametrize("backend", ["onnxruntime", "executorch"])
def test_bench_checks_parity_on_every_output_of_a_detector(backend, tmp_path, monkeypatch):
    from emobench.runs.bench import BenchPlan, run_bench

    (tmp_path / "tiny_ssdlite.toml").write_text(TINY_DETECTOR)
    monkeypatch.setenv("EMOBENCH_ZOO_PATH", str(tmp_path))
    (rec,) = run_bench(BenchPlan(["tiny_ssdlite"], [backend], warmup=1, min_time=0.0, min_runs=3, rounds=1))
    assert rec.status == "ok", rec.error
    assert rec.parity_max_abs is not None and rec.parity_max_abs < 1e-4


def test_parity_names_the_output_that_differs():
    from emobench.runtimes.worker import parity

    import numpy as np

    a, b = torch.zeros(2, 3), torch.ones(4)
    assert parity((a, b), [np.zeros((2, 3)), np.ones(4)]) == (0.0, None)
    assert parity((a, b + 0.5), [np.zeros((2, 3)), np.ones(4)])[0] == 0.5
    assert parity((a,), [np.zeros((2, 3)), np.ones(4)]) == (float("inf"), "1 output(s), expected 2")
    diff, why = parity((a, b), [np.zeros((2, 3)), np.ones(5)])
    assert diff == float("inf") and why == "output 1: (4,) ≠ (5,)"


@pytest.mark.parametrize("name", ["ssdlite_emo_1m", "pspnet_emo_1m"])
def test_profile_splits_backbone_neck_and_head_and_the_parts_sum_to_the_model(name):
    from emobench.runs.profile import profile_model

    prof = profile_model(name, resolution=(128, 128), latency=False, memory=False)
    parts = prof.parts.set_index("part")
    want = ["backbone", "neck", "head"] if name.startswith("ssdlite") else ["backbone", "head", "auxiliary head"]
    assert list(parts.index) == want
    assert parts["params"].sum() == prof.metrics["params"].value
    if name.startswith("ssdlite"):  # the segmenter's final resize sits outside every part
        assert parts["MACs"].sum() == prof.metrics["macs"].value
    else:  # the auxiliary head runs only in training, so it costs nothing at inference
        assert parts.loc["auxiliary head", "MACs"] == 0
    layers = prof.layers.set_index("module")
    assert layers.loc["backbone", "part"] == "backbone"
    assert set(prof.layers["part"]) == set(want)
    assert "parts" in prof.to_dict()


def test_a_classifier_has_no_parts():
    from emobench.runs.profile import profile_model

    prof = profile_model("emo_1m", resolution=(64, 64), latency=False, memory=False)
    assert prof.parts.empty and prof.layers["part"].isna().all()


def test_downstream_table_is_measured_and_each_emo_figure_reproduces_under_a_named_reading():
    from emobench.report.tables import comparison_table

    data = comparison_table("downstream").data
    emo = data[data["model"].str.startswith("EMO-")]
    assert len(emo) == 12 and (emo["measured_by"] == "zoo").all()
    assert sorted(emo["zoo_name"]) == sorted(REPORTED)
    flops_printed = {name: values["flops_g"] for name, values in REPORTED.items()}  # as printed: 163, 0.6
    for _, row in emo.iterrows():
        assert _truncate(row["params_m_measured"]) == pytest.approx(row["params_m_reported"])
        printed = flops_printed[row["zoo_name"]]
        digits = 0 if isinstance(printed, int) else 1
        readings = (row["flops_g_measured"], row["flops_g_without_attention_matmuls"])
        assert any(_truncate(r, digits) == pytest.approx(printed) or round(r, digits) == pytest.approx(printed)
                   for r in readings), row["zoo_name"]
        assert row["flops_g_without_attention_matmuls"] < row["flops_g_measured"]  # every EMO has attention
    inputs = dict(zip(emo["zoo_name"], zip(emo["input_c"], emo["input_h"], emo["input_w"])))
    assert inputs["retinanet_emo_1m"] == (3, 800, 1333) and inputs["ssdlite_emo_1m"] == (3, 320, 320)
    # numbers, not text, and null (not NaN) where nothing was measured (a peer without a zoo entry or timm)
    assert all(type(v) is int for size in inputs.values() for v in size)
    assert data.loc[data["measured_by"].isna(), "input_c"].map(lambda v: v is None).all()
    peers = data[(data["model"] == "MobileNetv2") & data["measured_by"].notna()].set_index("zoo_name")
    assert set(peers.index) == {"ssdlite_mobilenetv2_100", "deeplabv3_mobilenetv2_100", "pspnet_mobilenetv2_100"}
    # no attention in MobileNetV2: both readings are the same count
    assert (peers["flops_g_measured"] == peers["flops_g_without_attention_matmuls"]).all()
    assert peers.loc["ssdlite_mobilenetv2_100", "note"].startswith("the reported figures are the MobileNetV2 paper's")


def test_mobilenetv2_backbone_is_the_classifier_without_its_classifier():
    """The MobileNetV2 stages of a down-stream model hold exactly the classifier's parameters less its 1280 → 1000
    linear layer: torchvision's published 3,504,872 − (1280 × 1000 + 1000)."""
    det = create_model("ssdlite_mobilenetv2_100")
    assert sum(p.numel() for p in det.backbone.parameters()) == 3_504_872 - (1280 * 1000 + 1000)
    assert det.backbone.channels == [96, 1280]


def test_dilated_mobilenetv2_keeps_output_stride_8():
    """mmseg's d8 MobileNetV2: strides 1,2,2,1,1,1,1 and dilations 1,1,1,2,2,4,4 keep the 320-channel map at 1/8."""
    seg = create_model("deeplabv3_mobilenetv2_100").eval()
    with torch.no_grad():
        feats = seg.backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(24, 16, 16), (32, 8, 8), (96, 8, 8), (320, 8, 8)]
    dilations = {m.dilation[0] for name, m in seg.backbone.stage7.named_modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1}
    assert dilations == {4}


@pytest.mark.parametrize("name", ["ssdlite_emo_1m", "pspnet_emo_1m"])
def test_inference_forms_of_a_downstream_model_equal_the_reference(name):
    """The neck and heads stay; the EMO backbone takes each form, and every output tensor is the same."""
    from emobench.nn.forms import FORMULATIONS, formulate

    model = create_model(name).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        want = model(x)
        want = want if isinstance(want, tuple) else (want,)
        offered = [f for f, form in FORMULATIONS.items() if form.unavailable(model) is None]
        assert set(offered) == set(FORMULATIONS)  # every inference form can run the EMO backbone
        for form in offered:
            got = formulate(model, form)(x)
            got = got if isinstance(got, tuple) else (got,)
            assert len(got) == len(want)
            for g, w in zip(got, want):
                assert torch.allclose(g, w, atol=1e-5, rtol=1e-4), form


def test_a_mobilenetv2_downstream_model_offers_the_reference_form_only_and_says_why():
    from emobench.nn.forms import candidates
    from emobench.runtimes.backends import BACKENDS

    model = create_model("ssdlite_mobilenetv2_100").eval()
    reasons = dict(candidates("auto", BACKENDS["executorch"].form_preference, model))
    assert reasons["reference"] is None
    assert "need an EMO backbone, not mobilenetv2" in reasons["mobile"]
