"""``emobench eval``: top-1/top-5 on an ImageFolder through eager torch and the exported artifacts, on a real
classifier trained here on scikit-learn's digits (tests/digits.py), and the bad inputs it must refuse."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from digits import NAME, shared_digits, write_image_folder
from PIL import Image
from test_cli import assert_user_error, run

from emobench.errors import EmobenchError
from emobench.measure.images import Preprocessing, scan_image_folder, score


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    return shared_digits(tmp_path_factory)


def eval_json(capsys, monkeypatch, digits, *args: str) -> tuple[int, dict, str]:
    code, out, err = run(capsys, monkeypatch, "eval", NAME, "--zoo", str(digits.zoo), "--checkpoint",
                         str(digits.checkpoint), "--no-store", "-f", "json", "-t", "1", *args)
    return code, (json.loads(out) if out.strip().startswith("{") else {}), err


def test_accuracy_is_the_same_through_torch_onnxruntime_and_executorch(capsys, monkeypatch, digits):
    code, data, err = eval_json(capsys, monkeypatch, digits, "--images", str(digits.images),
                                "-B", "torch,onnxruntime,executorch", "-b", "16")
    assert code == 0, err
    assert data["meta"]["schema"] == "emobench.eval/1"
    rows = {r["backend"]: r for r in data["rows"]}
    n = len(scan_image_folder(digits.images).samples)
    assert set(rows) == {"torch", "onnxruntime", "executorch"}
    for r in rows.values():
        assert r["status"] == "ok" and r["images"] == n and r["images_skipped"] == 0
        # the classifier's own accuracy (computed in the fixture by plain torch), ± one image on every runtime
        assert abs(r["top1"] - digits.accuracy) <= 1 / n + 1e-9, (r["backend"], r["top1"], digits.accuracy)
        assert r["top1"] <= r["top5"] <= 1 and r["top1_agreement"] >= 1 - 1 / n and r["logit_cosine"] > 0.9999
    assert digits.accuracy > 0.9  # a trained classifier, not chance (0.1)


def test_unreadable_images_are_skipped_counted_and_stored(capsys, monkeypatch, digits, tmp_path):
    folder = tmp_path / "few"
    for label in ("0", "1"):
        (folder / label).mkdir(parents=True)
        for path in sorted((digits.images / label).glob("*.png"))[:5]:
            shutil.copy(path, folder / label / path.name)
    (folder / "0" / "broken.png").write_bytes(b"not a png at all")
    (folder / "1" / "empty.jpg").write_bytes(b"")
    store = tmp_path / "results.sqlite"
    code, out, err = run(capsys, monkeypatch, "eval", f"{NAME}", "--zoo", str(digits.zoo), "--images", str(folder),
                         "--class-index", str(_write(tmp_path / "classes.txt", "\n".join(map(str, range(10))))),
                         "--checkpoint", str(digits.checkpoint), "--store", str(store), "-f", "json")
    assert code == 0, err
    (r,) = json.loads(out)["rows"]
    assert (r["images"], r["images_skipped"]) == (10, 2)
    from emobench.results.store import ResultStore

    with ResultStore(store, readonly=True) as db:
        stored = db.records()
    assert list(stored["images_skipped"]) == [2] and list(stored["image_source"]) == [str(folder)]
    assert stored["median_ms"].isna().all()  # eval measures accuracy, never a latency that could stand in


def _write(path, text):
    path.write_text(text)
    return path


def test_bad_folders_and_mismatched_classifiers_are_one_line(capsys, monkeypatch, digits, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(next((digits.images / "3").glob("*.png")), flat / "a.png")
    code, _, err = eval_json(capsys, monkeypatch, digits, "--images", str(flat))
    assert_user_error(code, err, "no class folders", "1 images lie directly")
    code, _, err = eval_json(capsys, monkeypatch, digits, "--images", str(tmp_path / "missing"))
    assert_user_error(code, err, "images folder not found")
    three = tmp_path / "three"
    for label in ("a", "b", "c"):
        (three / label).mkdir(parents=True)
        shutil.copy(next((digits.images / "3").glob("*.png")), three / label / "x.png")
    code, _, err = eval_json(capsys, monkeypatch, digits, "--images", str(three))
    assert_user_error(code, err, "10 outputs", "3 class folders")
    # a checkpoint whose classifier has 10 classes does not load into a 3-class model
    code, out, err = run(capsys, monkeypatch, "eval", f"{NAME},num_classes=3", "--zoo", str(digits.zoo), "--images",
                         str(three), "--checkpoint", str(digits.checkpoint), "--no-store")
    assert_user_error(code, err, "mis-shaped")
    code, _, err = eval_json(capsys, monkeypatch, digits, "--images", str(three), "--class-index",
                             str(_write(tmp_path / "c.txt", "a\nb\n")))
    assert_user_error(code, err, "not in the class index")
    code, _, err = eval_json(capsys, monkeypatch, digits, "--images", str(digits.images), "--calibration", str(flat))
    assert_user_error(code, err, "--dtype int8")
    code, _, err = eval_json(capsys, monkeypatch, digits, "--images", str(digits.images), "--crop-pct", "1.5")
    assert_user_error(code, err, "crop_pct")


# --- the pieces, against hand-derived values ---------------------------------------------------------------


def test_class_order_is_torchvisions_sorted_folder_names(tmp_path):
    for name in ("b", "a", "10", "2"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / name / "x.png")
    folder = scan_image_folder(tmp_path)
    assert folder.classes == ["10", "2", "a", "b"] and folder.class_to_idx == {"10": 0, "2": 1, "a": 2, "b": 3}
    mapped = scan_image_folder(tmp_path, _write(tmp_path / "map.json", json.dumps({"a": 0, "b": 1, "2": 5, "10": 7})))
    assert sorted((p.parent.name, i) for p, i in mapped.samples) == [("10", 7), ("2", 5), ("a", 0), ("b", 1)]
    with pytest.raises(EmobenchError, match="no class folders"):
        scan_image_folder(tmp_path / "a")


def test_preprocessing_resizes_the_shorter_side_and_crops_the_centre():
    # 40 wide, 32 high, crop_pct 1 at 32x32: no resize, columns 4..35 kept (torchvision's CenterCrop offset)
    pixels = np.tile(np.arange(40, dtype=np.uint8)[None, :, None], (32, 1, 3)) * 6
    prep = Preprocessing(size=(32, 32), crop_pct=1.0, mean=(0.0,), std=(1.0,), interpolation="nearest")
    out = prep(Image.fromarray(pixels))
    assert out.shape == (3, 32, 32)
    np.testing.assert_allclose(out[0, 0], pixels[0, 4:36, 0] / 255.0, rtol=1e-6)
    # crop_pct 0.875 at 32: the shorter side goes to floor(32 / 0.875) = 36 before the crop; a constant image
    # comes out as (v / 255 - mean) / std everywhere
    grey = Image.new("RGB", (64, 48), (51, 102, 204))
    out = Preprocessing(size=(32, 32))(grey)
    expected = (np.array([51, 102, 204]) / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(out[:, 16, 16], expected, rtol=1e-5)


def test_exact_preprocessing_resizes_both_sides_and_crops_nothing():
    # 64 wide, 32 high, the left 16 columns red: resized to exactly 16x16 (nearest) the left 4 columns stay red;
    # the centre crop of the same image (shorter side to 16, then columns 8..23 of 32) keeps no red at all
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)
    pixels[:, :16, 0], pixels[:, 16:, 2] = 255, 255
    kw = dict(mean=(0.0,), std=(1.0,), interpolation="nearest")
    exact = Preprocessing.exact((16, 16), **kw)
    assert (exact.crop_pct, exact.crop_mode) == (1.0, "squash")
    out = exact(Image.fromarray(pixels))
    assert out.shape == (3, 16, 16) and (out[0, :, :4] == 1).all() and (out[0, :, 4:] == 0).all()
    assert (Preprocessing(size=(16, 16), crop_pct=1.0, **kw)(Image.fromarray(pixels))[0] == 0).all()
    with pytest.raises(EmobenchError, match="crop mode"):
        Preprocessing(size=(16, 16), crop_mode="border").check()


def test_scores_against_labels_and_reference_logits():
    logits = np.array([[3.0, 2.0, 1.0, 0.0, -1.0, -2.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    labels = np.array([0, 0])  # first: top-1; second: label ranked last → outside the top 5
    reference = np.array([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    s = score(logits, labels, reference)
    assert (s["images"], s["top1"], s["top5"], s["top1_agreement"]) == (2, 0.5, 0.5, 1.0)
    cos_first = 3.0 / np.sqrt(9 + 4 + 1 + 0 + 1 + 4)
    assert s["logit_cosine"] == pytest.approx((cos_first + 1.0) / 2)


def test_digits_folder_holds_every_sample(tmp_path):
    images, labels = write_image_folder(tmp_path)
    folder = scan_image_folder(tmp_path)
    assert len(folder.samples) == len(images) == len(labels) and folder.classes == [str(i) for i in range(10)]


def test_json_and_csv_share_snake_case_keys_and_units(capsys, monkeypatch, digits):
    import csv
    import io
    import re

    args = ("--images", str(digits.images), "--limit", "40", "-b", "8")
    code, data, err = eval_json(capsys, monkeypatch, digits, *args)
    assert code == 0, err
    keys = list(data["rows"][0])
    assert all(re.match(r"^[a-z][a-z0-9_]*$", k) for k in keys) and set(data["meta"]["units"]) <= set(keys)
    assert data["rows"][0]["images"] == 40
    code, out, _ = run(capsys, monkeypatch, "eval", NAME, "--zoo", str(digits.zoo), "--checkpoint", str(digits.checkpoint),
                       "--no-store", "-f", "csv", *args)
    assert code == 0 and next(csv.reader(io.StringIO(out))) == keys


def test_preprocessing_comes_from_a_timm_style_pretrained_cfg_and_the_command_line_wins():
    import torch

    from emobench.measure.images import preprocessing_for

    model = torch.nn.Identity()
    assert preprocessing_for(model, (224, 224)).crop_pct == 0.875  # the documented default
    model.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "crop_pct": 0.95, "interpolation": "bilinear"}
    prep = preprocessing_for(model, (256, 256))
    assert (prep.mean, prep.crop_pct, prep.interpolation) == ((0.5, 0.5, 0.5), 0.95, "bilinear")
    assert "pretrained_cfg" in prep.source
    prep = preprocessing_for(model, (256, 256), crop_pct=1.0)
    assert prep.crop_pct == 1.0 and prep.mean == (0.5, 0.5, 0.5) and "crop_pct" in prep.source
    with pytest.raises(EmobenchError, match="interpolation"):
        preprocessing_for(model, (256, 256), interpolation="lanczos9")


def test_erf_and_eval_read_the_same_files_of_a_folder(capsys, monkeypatch, digits, tmp_path):
    """One image pipeline: from a folder with an unreadable image and a non-image file, ``emobench eval`` and
    ``erf --images`` use the same images and skip the same one file; the junk changes neither result."""
    from emobench.analysis.erf import erf_study
    from emobench.zoo.catalog import extra_zoo_dirs

    clean, messy = tmp_path / "clean", tmp_path / "messy"
    for folder in (clean, messy):
        for label in ("0", "1"):
            (folder / label).mkdir(parents=True)
            for path in sorted((digits.images / label).glob("*.png"))[:3]:
                shutil.copy(path, folder / label / path.name)
    (messy / "0" / "broken.png").write_bytes(b"not a png at all")  # an image file Pillow cannot read
    (messy / "1" / "notes.txt").write_text("not an image")  # not an image file: never read, never counted
    classes = _write(tmp_path / "classes.txt", "\n".join(map(str, range(10))))
    evaluated, studied = {}, {}
    for folder in (clean, messy):
        code, data, err = eval_json(capsys, monkeypatch, digits, "--images", str(folder), "--class-index", str(classes))
        assert code == 0, err
        (r,) = data["rows"]
        evaluated[folder.name] = (r["images"], r["images_skipped"], r["top1"], r["logit_cosine"])
        with extra_zoo_dirs([digits.zoo]):
            (study,) = erf_study([NAME], (32, 32), folder, num_images=50, seed=3).results
        studied[folder.name] = study
    assert evaluated["clean"][:2] == (6, 0) and evaluated["messy"][:2] == (6, 1)
    assert evaluated["messy"][2:] == evaluated["clean"][2:]
    assert (studied["clean"].images, studied["clean"].skipped) == (6, 0)
    assert (studied["messy"].images, studied["messy"].skipped) == (6, 1)
    assert np.array_equal(studied["messy"].mean_gradient, studied["clean"].mean_gradient)
