"""Every registered zoo model builds, runs and fuses; zoo files are validated with clear errors."""

from __future__ import annotations

import pytest
import torch
from conftest import randomize_norms

import emobench
from emobench.errors import InputSizeError, ZooError
from emobench.nn import EMOFeatures
from emobench.nn.forms.fused import has_fused_form
from emobench.models.build import input_shape, parse_resolution
from emobench.zoo.catalog import Zoo

ALL = emobench.list_models()


def test_zoo_has_the_required_entries():
    required = {"emo_1m", "emo_2m", "emo_5m", "emo_6m", "irb", "mhsa", "ffn", "irmb", "irmb_contiguous", "wmhsa", "dwconv"}
    assert required <= set(ALL)
    assert emobench.list_models("emo_?m") == ["emo_1m", "emo_2m", "emo_5m", "emo_6m"]
    assert set(emobench.list_models(family="m2")) >= {"irb", "mhsa", "ffn", "irmb"}


@pytest.mark.parametrize("name", ALL)
def test_every_model_runs_and_fuses(name):
    model = randomize_norms(emobench.create_model(name)).eval()
    entry = model.zoo_entry
    assert entry.source and entry.summary, "every zoo entry names its source"
    shape = input_shape(entry, resolution=(64, 64) if entry.family in ("emo", "mobilenetv2") else None, batch=2)
    x = torch.randn(shape)
    with torch.no_grad():
        y = model(x)
        if entry.family in ("detector", "segmenter"):  # raw head tensors (tests/test_downstream.py checks them)
            outs = y if isinstance(y, tuple) else (y,)
            assert all(torch.isfinite(o).all() for o in outs) and all(o.shape[0] == 2 for o in outs)
            return
        assert torch.isfinite(y).all()
        if has_fused_form(model):
            assert torch.allclose(emobench.fuse(model)(x), y, atol=1e-4, rtol=0), "the fused form computes the same function"
        else:
            with pytest.raises(emobench.EmobenchError, match="no fused form"):
                emobench.fuse(model)
    if entry.family == "m2":
        assert y.shape == (2, entry.config.dim_out, shape[2] // entry.config.stride, shape[3] // entry.config.stride)
    else:
        assert y.shape == (2, entry.config.num_classes)


def test_features_mode_returns_strides_4_to_32():
    model = emobench.create_model("emo_1m", features_only=True).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 224, 224))
    assert [f.shape[1] for f in feats] == [32, 48, 80, 168]
    assert [224 // f.shape[-1] for f in feats] == [4, 8, 16, 32]
    assert [i["reduction"] for i in model.feature_info] == [4, 8, 16, 32]
    fused = EMOFeatures(emobench.fuse(model.model))
    assert emobench.create_model("emo_1m", fused=True, features_only=True).feature_info == model.feature_info
    with torch.no_grad():
        x = torch.randn(1, 3, 96, 128)
        for a, b in zip(model(x), fused(x)):
            assert torch.allclose(a, b, atol=1e-4)


def test_overrides_and_forward_features():
    model = emobench.create_model("emo_1m", num_classes=10, window="contiguous").eval()
    assert model.head.out_features == 10 and model.cfg.window == "contiguous"
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 168, 2, 2)
    headless = emobench.create_model("emo_1m", num_classes=0).eval()
    with torch.no_grad():
        assert headless(torch.randn(1, 3, 64, 64)).shape == (1, 168)
    with pytest.raises(ZooError, match="depths"):
        emobench.create_model("emo_1m", depths=[1, 2])
    with pytest.raises(ZooError, match="no_such_field"):
        emobench.create_model("emo_1m", no_such_field=1)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ZooError, match="did you mean emo_5m"):
        emobench.create_model("emo5m")


def test_input_sizes():
    entry = emobench.get_entry("emo_1m")
    assert input_shape(entry) == (1, 3, 224, 224)
    assert input_shape(entry, (192, 320), batch=4) == (4, 3, 192, 320)
    with pytest.raises(InputSizeError):
        input_shape(entry, (16, 16))
    with pytest.raises(InputSizeError):
        input_shape(entry, batch=0)
    assert parse_resolution("256") == (256, 256) and parse_resolution("192x320") == (192, 320)
    for bad in ["0", "axb", "1x2x3", "-5"]:
        with pytest.raises(InputSizeError):
            parse_resolution(bad)


def _zoo(tmp_path, files: dict[str, str]) -> Zoo:
    for name, text in files.items():
        (tmp_path / f"{name}.toml").write_text(text)
    return Zoo((tmp_path,))


GOOD_BLOCK = 'family = "m2"\nsummary = "s"\nsource = "t"\ninput_size = [8, 7, 7]\n[config]\ndim_in = 8\ndim_out = 8\n'


@pytest.mark.parametrize(
    "text, message",
    [
        ("family = \n", "not valid TOML"),
        ('family = "m2"\ninput_size = [8, 7, 7]\ncolour = 1\n', "colour: Extra inputs"),
        ('family = "nope"\ninput_size = [8, 7, 7]\n', "unknown family 'nope'"),
        ('family = "m2"\n[config]\ndim_in = 8\ndim_out = 8\n', "input_size: field required"),
        ('family = "m2"\ninput_size = [8, 7, 7]\n[config]\ndim_in = "eight"\ndim_out = 8\n', "config.dim_in"),
        ('family = "m2"\ninput_size = [8, 0, 7]\n[config]\ndim_in = 8\ndim_out = 8\n', "input_size"),
        ('extends = "bad"\n', "'extends' forms a cycle"),
        ('extends = "missing"\n', "unknown model 'missing'"),
    ],
)
def test_invalid_zoo_files_name_file_and_field(tmp_path, text, message):
    zoo = _zoo(tmp_path, {"bad": text})
    with pytest.raises(ZooError, match=message) as err:
        zoo.get("bad")
    assert "bad.toml" in str(err.value)


def test_extends_merges_nested_config(tmp_path):
    zoo = _zoo(
        tmp_path,
        {
            "base": GOOD_BLOCK + "[config.attention]\nwindow_size = 7\ndim_head = 4\n",
            "child": 'extends = "base"\nsummary = "child"\n[config.attention]\nwindow = "contiguous"\n',
        },
    )
    child = zoo.get("child")
    assert child.config.attention.window == "contiguous" and child.config.attention.dim_head == 4
    assert child.source == "t" and child.summary == "child" and child.input_size == (8, 7, 7)


def test_duplicate_names_and_bad_file_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.toml").write_text(GOOD_BLOCK)
    (tmp_path / "b" / "x.toml").write_text(GOOD_BLOCK)
    with pytest.raises(ZooError, match="defined twice"):
        Zoo((tmp_path / "a", tmp_path / "b"))
    (tmp_path / "a" / "Bad Name.toml").write_text(GOOD_BLOCK)
    with pytest.raises(ZooError, match="file name"):
        Zoo((tmp_path / "a",))


def test_user_zoo_folder_adds_models_without_code(tmp_path, monkeypatch):
    (tmp_path / "my_block.toml").write_text(GOOD_BLOCK.replace("dim_out = 8", "dim_out = 16"))
    monkeypatch.setenv("EMOBENCH_ZOO_PATH", str(tmp_path))
    assert "my_block" in emobench.list_models()
    model = emobench.create_model("my_block")
    assert model(torch.randn(1, 8, 7, 7)).shape == (1, 16, 7, 7)


#: The layout's catch-all row (parameters no called module holds), by hand; every other model has none.
#: ViT: the position map 192 × 14 × 14. PVT: one per stage, 64·56² + 128·28² + 320·14² + 512·7². Segmenters:
#: the FCN auxiliary head (run in training only) on stage 3, 3×3 conv in→256 without bias (in·2,304), BN 512,
#: 1×1 conv 256→150 with bias 38,550; in = 80 / 120 / 160 for EMO-1M / 2M / 5M, 96 for MobileNetV2.
_FCN = lambda channels: channels * 2_304 + 512 + 38_550  # noqa: E731
CATCH_ALL = {
    "deit_tiny": ("pos_embed", 37_632), "deit_tiny_irmb": ("pos_embed", 37_632),
    "pvt_tiny": ("pos_embeds", 388_864), "pvt_tiny_irmb": ("pos_embeds", 388_864),
    **{f"{head}_emo_{size}m": ("auxiliary_head", _FCN(c)) for head in ("deeplabv3", "pspnet")
       for size, c in ((1, 80), (2, 120), (5, 160))},
    "deeplabv3_mobilenetv2_100": ("auxiliary_head", 260_246), "pspnet_mobilenetv2_100": ("auxiliary_head", 260_246),
}


@pytest.mark.parametrize("name", ALL)
def test_layout_rows_cover_every_parameter(name):
    """The rows are disjoint modules (none inside another) and the catch-all row holds exactly the hand-counted
    parameters above: a parameter the layout missed would have to land in the catch-all and break its count."""
    from emobench.models.architecture import block_table

    entry = emobench.get_entry(name)
    table = block_table(entry)
    rest = table[table["attention"] == "parameters"]
    modules = [b for b in table.loc[table["attention"] != "parameters", "block"] if b != "(block)"]
    assert not [(a, b) for a in modules for b in modules if b.startswith(a + ".")], "a row inside another row"
    if name in CATCH_ALL:
        prefix, count = CATCH_ALL[name]
        assert len(rest) == 1 and rest.iloc[0]["params"] == count
        assert all(n.strip().startswith(prefix) for n in rest.iloc[0]["block"].split(","))
    else:
        assert rest.empty, rest
    assert table["params"].sum() == sum(p.numel() for p in emobench.create_model(name).parameters())


@pytest.mark.parametrize(
    "overrides, field",
    [({"cascade": "parallel"}, "attn_pre"), ({"dim_heads": [0, 16, 20, 21]}, "dim_heads"), ({"exp_ratios": [2, 2, 0, 2]}, "exp_ratios")],
)
def test_network_configs_are_checked_when_read(overrides, field):
    with pytest.raises(ZooError, match=field):
        emobench.get_entry("emo_1m").with_overrides(**overrides)


def test_zoo_listing_params_are_real_counts_and_cached(tmp_path, monkeypatch):
    """The listing's parameter column equals a built model's count (EMO-1M: 1,361,168 in the official
    release, docs/tables.md), whether counted now or read back from the cache keyed by the resolved config."""
    from emobench.zoo.catalog import zoo_listing

    monkeypatch.setenv("EMOBENCH_CACHE", str(tmp_path / "cache"))
    names = ["emo_1m", "irmb", "mobilenetv2_100"]
    first = zoo_listing(names).set_index("name")
    assert (tmp_path / "cache" / "zoo_params.json").exists()
    for name in names:
        built = sum(p.numel() for p in emobench.create_model(name).parameters())
        assert first.loc[name, "params"] == built
    assert first.loc["emo_1m", "params"] == 1_361_168
    assert first.loc["mobilenetv2_100", "params"] == 3_504_872  # MobileNetV2 1.0, the published count
    again = zoo_listing(names).set_index("name")
    assert again["params"].tolist() == first["params"].tolist()
    assert zoo_listing(names, use_cache=False)["params"].tolist() == first["params"].tolist()


def test_zoo_listing_cache_follows_the_files(tmp_path, monkeypatch):
    """A changed file (or the file it extends) is a cache miss; a damaged cache is counted again."""
    from emobench.zoo.catalog import extra_zoo_dirs, zoo_listing

    monkeypatch.setenv("EMOBENCH_CACHE", str(tmp_path / "cache"))
    mine = tmp_path / "zoo"
    mine.mkdir()
    (mine / "my_emo.toml").write_text('extends = "emo_1m"\nsummary = "mine"\nsource = "test"\n[config]\nnum_classes = 10\n')
    with extra_zoo_dirs([mine]):
        ten = zoo_listing(["my_emo"])["params"].item()
        assert ten == sum(p.numel() for p in emobench.create_model("my_emo").parameters())
        (mine / "my_emo.toml").write_text('extends = "emo_1m"\nsummary = "mine"\nsource = "test"\n[config]\nnum_classes = 20\n')
        twenty = zoo_listing(["my_emo"])["params"].item()
    # 10 more classes: 10 more rows of the classifier (its input width + 1 bias each)
    head = emobench.create_model("emo_1m").head
    assert twenty - ten == 10 * (head.in_features + 1)
    (tmp_path / "cache" / "zoo_params.json").write_text("{not json")
    assert zoo_listing(["emo_1m"])["params"].item() == 1_361_168


def test_zoo_listing_from_the_cache_does_not_import_torch(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "EMOBENCH_CACHE": str(tmp_path)}
    code = "import sys; from emobench.zoo.catalog import zoo_listing; df = zoo_listing(['emo_1m', 'irmb']); print(df['params'].sum(), 'torch' in sys.modules)"
    warm = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert warm.stdout.split()[1] == "True"  # the first listing builds (meta device) and counts
    cached = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert cached.stdout.split() == [warm.stdout.split()[0], "False"]
