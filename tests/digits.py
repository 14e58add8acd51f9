"""A real classifier on offline data: scikit-learn's ``load_digits`` (8×8 grey digits) upsampled to 3×32×32,
written as an ImageFolder of PNGs, and a tiny MobileNetV2 zoo entry trained on it in seconds, so accuracy
and agreement in the eval and int8 tests are real figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ZOO_ENTRY = """family = "mobilenetv2"
summary = "A tiny MobileNetV2 for scikit-learn's digits at 32x32 (emobench tests)"
source = "emobench tests: trained on sklearn.datasets.load_digits"
input_size = [3, 32, 32]
tags = ["test"]

[config]
width = 0.5
stages = [[1, 16, 1, 1], [4, 24, 1, 2], [4, 32, 1, 2]]
num_classes = 10
drop = 0.0
"""
NAME = "digits_net"


@dataclass
class Digits:
    images: Path  # ImageFolder: 0/ … 9/
    zoo: Path  # folder holding digits_net.toml
    checkpoint: Path  # trained weights (.safetensors)
    accuracy: float  # eager torch top-1 on the whole folder, computed here by the test's own code


def write_image_folder(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as 32×32 RGB PNGs in class folders; returns the uint8 images and labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images / 16.0 * 255).round().astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(p).resize((32, 32), Image.BILINEAR)) for p in pixels])
    for i, (image, label) in enumerate(zip(images, digits.target)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).convert("RGB").save(folder / f"{i:04d}.png")
    return images, digits.target


_BUILT: dict[str, Digits] = {}


def shared_digits(tmp_path_factory) -> Digits:
    """One trained classifier per test process, whichever test module asks first."""
    if "digits" not in _BUILT:
        _BUILT["digits"] = make_digits(tmp_path_factory.mktemp("digits"))
    return _BUILT["digits"]


def make_digits(base: Path, epochs: int = 6) -> Digits:
    from safetensors.torch import save_file

    from emobench.measure.images import Preprocessing, scan_image_folder
    from emobench.models.references import build_reference
    from emobench.zoo.catalog import extra_zoo_dirs

    images_dir, zoo_dir = base / "digits", base / "zoo"
    zoo_dir.mkdir(parents=True, exist_ok=True)
    (zoo_dir / f"{NAME}.toml").write_text(ZOO_ENTRY)
    write_image_folder(images_dir)
    # train on exactly what eval feeds the model: the folder through the default preprocessing
    from PIL import Image

    folder = scan_image_folder(images_dir)
    prep = Preprocessing(size=(32, 32))
    x = torch.from_numpy(np.stack([prep(Image.open(p)) for p, _ in folder.samples]))
    y = torch.tensor([label for _, label in folder.samples])
    with extra_zoo_dirs([zoo_dir]):
        model = build_reference(NAME).train()
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: one thread is as fast, and never stalls on a busy shared machine
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), 64):
            idx = order[start:start + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    checkpoint = base / "digits_net.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    return Digits(images_dir, zoo_dir, checkpoint, accuracy)
