"""Model references: zoo names, timm:NAME, torchvision:NAME, package.module:factory, file.py:factory, with
,key=value arguments and @HxW; every kind of bad reference is one line and exit code 2."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from test_cli import assert_user_error, run

import emobench
from emobench.errors import EmobenchError
from emobench.models.references import FALLBACK_INPUT, build_model, parse_reference, resolve

FACTORIES = Path(__file__).with_name("model_factories.py")
HAS_TIMM = importlib.util.find_spec("timm") is not None


def test_parse_every_kind():
    ref = parse_reference("emo_1m")
    assert (ref.kind, ref.target, ref.size, ref.kwargs) == ("zoo", "emo_1m", None, {})
    ref = parse_reference("timm:edgenext_xx_small@256")
    assert (ref.kind, ref.target, ref.size) == ("timm", "edgenext_xx_small", (256, 256))
    ref = parse_reference("torchvision:mobilenet_v3_large,num_classes=10@192x320")
    assert (ref.kind, ref.target, ref.kwargs, ref.size) == ("torchvision", "mobilenet_v3_large", {"num_classes": 10}, (192, 320))
    ref = parse_reference("torch.nn:Conv2d,in_channels=3,out_channels=8,kernel_size=(3, 3)")
    assert (ref.kind, ref.target, ref.attribute) == ("module", "torch.nn", "Conv2d")
    assert ref.kwargs == {"in_channels": 3, "out_channels": 8, "kernel_size": (3, 3)}
    ref = parse_reference("nets/my.py:make,act=relu,scale=0.5")
    assert (ref.kind, ref.target, ref.attribute, ref.kwargs) == ("file", "nets/my.py", "make", {"act": "relu", "scale": 0.5})


@pytest.mark.parametrize("text, needle", [
    ("emo_1m@0", "must be positive"), ("emo_1m@abc", "must look like 256 or 192x320"), ("emo_1m@", "after '@'"),
    ("emo_1m@2x3x4", "must be positive"), ("torch.nn:", "package.module:factory"), ("emo_1m,oops", ",key=value"),
    ("torch.nn:1bad", "not a Python name"),
])
def test_malformed_references(text, needle):
    with pytest.raises(EmobenchError, match=needle.replace("(", r"\(")):
        parse_reference(text)


def test_a_module_factory_with_keyword_arguments_is_counted_by_hand(capsys, monkeypatch):
    """torch.nn.Conv2d(3 → 8, 3×3, no padding) at 32×32: a 30×30 map; 8·30·30·(3·3·3) MACs, 8·27 + 8 parameters."""
    code, out, err = run(capsys, monkeypatch, "profile", "torch.nn:Conv2d,in_channels=3,out_channels=8,kernel_size=3@32",
                         "--counts-only", "-f", "json")
    assert code == 0, err
    (prof,) = json.loads(out)["profiles"]
    assert prof["input_shape"] == [1, 3, 32, 32]
    assert prof["metrics"]["params"]["value"] == 8 * 27 + 8
    assert prof["metrics"]["macs"]["value"] == 8 * 30 * 30 * 27
    assert prof["model"] == "torch.nn:Conv2d,in_channels=3,out_channels=8,kernel_size=3@32"


def test_file_factory_default_input_and_sizes():
    ref = resolve(f"{FACTORIES}:tiny_attention")
    assert ref.input_shape() == (1, 3, 32, 32)  # the module's default_input_size
    assert resolve(f"{FACTORIES}:tiny_attention@64x48").input_shape((96, 96), 2) == (2, 3, 64, 48)  # @ wins over -r
    assert resolve(f"{FACTORIES}:tiny_attention").input_shape((96, 96)) == (1, 3, 96, 96)
    plain = resolve(f"{FACTORIES}:three_convs,width=2")
    assert plain.default_input_size()[0] == FALLBACK_INPUT and "assumed" in plain.default_input_size()[1]
    model = build_model(f"{FACTORIES}:three_convs,width=2@40")
    assert model.default_input_size == (3, 40, 40) and not model.training
    assert model[0].out_channels == 2


def test_zoo_reference_with_overrides_and_size():
    model = build_model("emo_1m,num_classes=10@256")
    direct = emobench.create_model("emo_1m", num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in direct.parameters())
    assert model.default_input_size == (3, 256, 256)
    assert resolve("emo_1m@256").input_shape() == (1, 3, 256, 256)


def test_a_checkpoint_loads_into_a_factory_model(tmp_path):
    from safetensors.torch import save_file

    source = build_model(f"{FACTORIES}:three_convs,width=3")
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    loaded = build_model(f"{FACTORIES}:three_convs,width=3", tmp_path / "w.safetensors")
    for a, b in zip(source.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("reference, needles", [
    ("os.path:missing_attr", ["'os.path' has no attribute 'missing_attr'"]),
    ("no_such_package_xyz.mod:make", ["cannot import 'no_such_package_xyz.mod'"]),
    (f"{FACTORIES}:not_a_module", ["returned list, not a torch.nn.Module"]),
    (f"{FACTORIES}:needs_width", ["the factory failed: TypeError"]),
    (f"{FACTORIES}:three_convs,act=tanh", ["the factory failed: KeyError"]),
    ("missing_dir/nets.py:make", ["file not found"]),
    ("emo_1m@0", ["must be positive"]),
    ("emo_1m@abc", ["must look like 256 or 192x320"]),
    ("no_such_zoo_model", ["no_such_zoo_model"]),
])
@pytest.mark.parametrize("command", [["profile", "--counts-only"], ["rf"], ["bench", "--no-store"], ["erf", "-n", "1"]])
def test_bad_references_are_one_line_and_exit_2(capsys, monkeypatch, reference, needles, command):
    code, _, err = run(capsys, monkeypatch, command[0], reference, *command[1:])
    assert_user_error(code, err, *needles)


def test_timm_reference_without_timm_or_with_a_wrong_name(capsys, monkeypatch):
    code, _, err = run(capsys, monkeypatch, "profile", "timm:edgenext_xx_smal", "--counts-only")
    if HAS_TIMM:  # the close match is named
        assert_user_error(code, err, "timm has no model 'edgenext_xx_smal'", "edgenext_xx_small")
    else:
        assert_user_error(code, err, "needs timm, which is not installed", "pip install 'emobench[timm]'")


def test_zoo_show_takes_zoo_references_only(capsys, monkeypatch):
    code, out, err = run(capsys, monkeypatch, "zoo", "show", "emo_1m@256", "-f", "json")
    assert code == 0, err
    assert json.loads(out)["meta"]["input"] == [3, 256, 256]
    code, _, err = run(capsys, monkeypatch, "zoo", "show", f"{FACTORIES}:three_convs")
    assert_user_error(code, err, "zoo show describes zoo entries", "emobench profile")


def test_bench_and_profile_resolve_each_model_once(monkeypatch):
    """A model named on the command line is looked up once: the CLI's checks, the memory pre-flight, the build,
    the record's name, the export's cache key and every batch's input shape all take the one ResolvedModel."""
    from emobench.models import references
    from emobench.runs.bench import BenchPlan, run_bench
    from emobench.runs.profile import profile_models

    counts = references.RESOLUTIONS
    counts.clear()
    profile_models(["irmb", "irb@16"], counts_only=True, depth=0)
    assert dict(counts) == {"irmb": 1, "irb@16": 1}
    counts.clear()
    plan = BenchPlan(["irmb@16"], ["torch"], batches=[1, 2], warmup=1, min_time=0.0, min_runs=2, rounds=2)
    plan.validate()  # the CLI validates before running; run_bench validates again
    records = run_bench(plan)
    assert [r.status for r in records] == ["ok", "ok"] and dict(counts) == {"irmb@16": 1}


def test_a_factory_that_reads_tensor_values_while_building_is_built_normally(tmp_path):
    """timm-style drop-path schedules call .item() in the constructor, which fails on the meta device: the
    shape-only build falls back to a normal build instead of failing the reference."""
    path = tmp_path / "dpr.py"
    path.write_text("import torch\n"
                    "def net(depth=3):\n"
                    "    rates = [x.item() for x in torch.linspace(0, 0.1, depth)]\n"
                    "    return torch.nn.Sequential(*[torch.nn.Conv2d(3, 3, 3, padding=1) for _ in rates])\n")
    ref = resolve(f"{path}:net")
    assert ref.meta_module() is not None and ref.input_shape() == (1, *FALLBACK_INPUT)
    assert sum(p.numel() for p in build_model(ref).parameters()) == 3 * (3 * 3 * 9 + 3)


@pytest.mark.parametrize("text, kwargs, size, expected", [
    ("emo_1m", {"depths": [2, 2, 10, 3]}, (64, 64), "emo_1m,depths=[2, 2, 10, 3]@64x64"),
    ("emo_1m,window='contiguous'@96", {"window": "grid", "qkv_bias": False}, (64, 64),
     "emo_1m,window='grid',qkv_bias=False@96x96"),
    ("timm:edgenext_xx_small", {}, None, "timm:edgenext_xx_small"),
    ("my_pkg.nets:make_net,width=32", {"depth": 2}, None, "my_pkg.nets:make_net,width=32,depth=2"),
])
def test_a_reference_written_back_with_more_keywords_parses_to_them(text, kwargs, size, expected):
    written = parse_reference(text).with_kwargs(kwargs, size)
    assert written == expected
    again = parse_reference(written)
    assert again.kwargs == {**parse_reference(text).kwargs, **kwargs} and again.size == (parse_reference(text).size or size)
