"""Real images for ``emobench eval`` and int8 calibration: ImageFolder layout, the model's preprocessing, scoring.

Folder layout and class order follow torchvision's ``ImageFolder`` (one sub-folder per class, classes in sorted
order, files with an image extension, found recursively), or a class-index file (timm's ``class_map``: one
class name per line, or a JSON object name → index). Preprocessing follows timm's evaluation transform: resize
the shorter side to ``floor(size / crop_pct)`` (both sides for a non-square input, or with timm's ``squash``
crop mode), centre crop to the input size, scale to [0, 1], normalise with mean/std. Images are decoded with
Pillow; a file Pillow cannot read is skipped and counted, never fatal (:func:`read_images`, shared by eval,
calibration and ``erf --images``). Decoded images go to a ``.npy`` file on disk (memory-mapped), so a large
folder never has to fit in memory, and worker processes read the same bytes.

This module imports only numpy (and Pillow when decoding): worker processes score with it.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from emobench.errors import EmobenchError

#: what torchvision's ImageFolder accepts as an image file
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: ImageNet statistics and timm's default evaluation crop: the preprocessing of every zoo entry (EMO was
#: trained and evaluated with timm's ImageNet pipeline)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875
DEFAULT_INTERPOLATION = "bicubic"
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
#: timm's crop modes: ``center`` keeps the aspect ratio of a square input (shorter side resized), ``squash``
#: resizes both sides to ``size / crop_pct`` (with crop_pct 1: exactly the input size, nothing cropped)
CROP_MODES = ("center", "squash")


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input (timm's eval transform) and where these settings come from."""

    size: tuple[int, int]  # H, W of the model input
    channels: int = 3
    crop_pct: float = DEFAULT_CROP_PCT
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = DEFAULT_INTERPOLATION
    source: str = "defaults (ImageNet mean/std, crop_pct 0.875, bicubic)"
    crop_mode: str = "center"

    @classmethod
    def exact(cls, size: tuple[int, int], channels: int = 3, interpolation: str = DEFAULT_INTERPOLATION,
              **kwargs) -> "Preprocessing":
        """Resize to exactly ``size`` (H, W; the aspect ratio is not kept, nothing is cropped), scale to [0, 1],
        normalise (ImageNet mean/std unless given): torchvision's ``Resize((H, W))`` + ``ToTensor`` +
        ``Normalize``, as RepLKNet's ERF script feeds images."""
        source = kwargs.pop("source", f"resized to exactly {size[0]}x{size[1]} ({interpolation}, no crop)")
        return cls(size=tuple(size), channels=channels, crop_pct=1.0, crop_mode="squash",
                   interpolation=interpolation, source=source, **kwargs)

    def check(self) -> None:
        if not 0 < self.crop_pct <= 1:
            raise EmobenchError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.interpolation not in INTERPOLATIONS:
            raise EmobenchError(f"unknown interpolation '{self.interpolation}' (choose {', '.join(INTERPOLATIONS)})")
        if self.crop_mode not in CROP_MODES:
            raise EmobenchError(f"unknown crop mode '{self.crop_mode}' (choose {', '.join(CROP_MODES)})")
        if self.channels not in (1, 3):
            raise EmobenchError(f"images are decoded as RGB or grayscale: a model taking {self.channels} channels cannot be fed images")
        for what, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                raise EmobenchError(f"{what} needs {self.channels} value(s) (or one for all channels) for a "
                                    f"{self.channels}-channel input, got {len(values)} (--{what} …)")
        if any(s <= 0 for s in self.std):
            raise EmobenchError(f"std must be > 0, got {list(self.std)}")

    def __call__(self, image) -> np.ndarray:
        """A PIL image → float32 C×H×W, normalised."""
        from PIL import Image

        resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}[self.interpolation]
        image = image.convert("RGB" if self.channels == 3 else "L")
        h, w = self.size
        if h == w and self.crop_mode == "center":
            # timm: Resize(int) keeps the aspect ratio, the shorter side becomes floor(size / crop_pct)
            scale = math.floor(h / self.crop_pct)
            iw, ih = image.size
            if iw <= ih:
                new = (scale, int(scale * ih / iw))
            else:
                new = (int(scale * iw / ih), scale)
        else:  # timm (a non-square input, or crop mode squash): Resize((h, w)) scaled by 1 / crop_pct
            new = (math.floor(w / self.crop_pct), math.floor(h / self.crop_pct))
        if new != image.size:
            image = image.resize(new, resample)
        iw, ih = image.size
        top, left = int(round((ih - h) / 2.0)), int(round((iw - w) / 2.0))  # torchvision's CenterCrop
        image = image.crop((left, top, left + w, top + h))
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(-1, 1, 1)
        return (array - mean) / std


def preprocessing_for(model, size: tuple[int, int], channels: int = 3, **overrides) -> Preprocessing:
    """The preprocessing of a built model at input ``size``: a timm-style ``pretrained_cfg`` (mean, std,
    crop_pct, interpolation) where the module carries one, else the defaults above; ``overrides`` (the
    command line's --crop-pct, --mean, …; None = keep) win."""
    cfg = getattr(model, "pretrained_cfg", None)
    values, source = {}, "defaults (ImageNet mean/std, crop_pct 0.875, bicubic)"
    if isinstance(cfg, dict) and any(k in cfg for k in ("mean", "std", "crop_pct", "interpolation")):
        values = {k: cfg[k] for k in ("mean", "std", "crop_pct", "interpolation") if cfg.get(k) is not None}
        if values.get("interpolation") not in INTERPOLATIONS:
            values.pop("interpolation", None)
        source = "the model's pretrained_cfg"
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        source += "; command line: " + ", ".join(sorted(given))
    merged = {**values, **given}
    prep = Preprocessing(size=tuple(size), channels=channels, source=source,
                         **{k: tuple(v) if k in ("mean", "std") else v for k, v in merged.items()})
    prep.check()
    return prep


# --- finding images ---------------------------------------------------------------------------------------


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMG_EXTENSIONS and not path.name.startswith(".")


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if _is_image(p))


def read_class_index(path: Path) -> dict[str, int]:
    """timm's class map: one class (folder) name per line (index = line number), or JSON ``{name: index}``."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise EmobenchError(f"cannot read class-index file {path}: {getattr(err, 'strerror', None) or err}") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as err:
            raise EmobenchError(f"{path}: not valid JSON: {err}") from None
        if not isinstance(data, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in data.values()):
            raise EmobenchError(f"{path}: expected a JSON object mapping class names to indices >= 0")
        return {str(k): v for k, v in data.items()}
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(set(names)) != len(names):
        raise EmobenchError(f"{path}: a class name is listed twice")
    return {name: i for i, name in enumerate(names)}


@dataclass
class ImageFolder:
    """An ImageFolder's classes (index order) and its (file, class index) samples."""

    root: Path
    classes: list[str]
    class_to_idx: dict[str, int]
    samples: list[tuple[Path, int]]

    @property
    def num_outputs_needed(self) -> int:
        return max(self.class_to_idx.values()) + 1


def scan_image_folder(root: str | Path, class_index: str | Path | None = None) -> ImageFolder:
    """Classes and samples of an ImageFolder; a folder without class folders or without images is an error."""
    root = Path(root)
    if not root.is_dir():
        raise EmobenchError(f"images folder not found: {root}")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        loose = sum(1 for p in root.iterdir() if _is_image(p))
        extra = f" ({loose} images lie directly in it)" if loose else ""
        raise EmobenchError(f"{root} has no class folders{extra}: expected one sub-folder per class (ImageFolder layout)")
    if class_index is not None:
        mapping = read_class_index(Path(class_index))
        unknown = [f for f in folders if f not in mapping]
        if unknown:
            raise EmobenchError(f"class folder(s) {', '.join(unknown[:4])} of {root} are not in the class index {class_index}")
        class_to_idx = {f: mapping[f] for f in folders}
    else:
        class_to_idx = {f: i for i, f in enumerate(folders)}
    samples = [(p, class_to_idx[f]) for f in folders for p in _images_under(root / f)]
    if not samples:
        raise EmobenchError(f"{root}: its {len(folders)} class folder(s) hold no image files ({', '.join(IMG_EXTENSIONS)})")
    empty = [f for f in folders if not _images_under(root / f)]
    if empty:  # as torchvision's ImageFolder: a class without images is a layout mistake, not a class of 0
        raise EmobenchError(f"{root}: class folder(s) {', '.join(empty[:4])} hold no image files "
                            f"({', '.join(IMG_EXTENSIONS)}): remove them or add images")
    return ImageFolder(root, folders, class_to_idx, samples)


def image_files(root: str | Path) -> list[Path]:
    """Every image file under a folder (flat or ImageFolder), sorted by path (calibration needs no labels)."""
    root = Path(root)
    if not root.is_dir():
        raise EmobenchError(f"images folder not found: {root}")
    files = _images_under(root)
    if not files:
        raise EmobenchError(f"{root} holds no image files ({', '.join(IMG_EXTENSIONS)})")
    return files


# --- decoding ---------------------------------------------------------------------------------------------


@dataclass
class ImageSet:
    """Decoded images in a ``.npy`` file (N×C×H×W float32), their labels (or None) and what was skipped."""

    path: Path
    count: int
    labels_path: Path | None
    skipped: list[str] = field(default_factory=list)  # "file: why"
    source: str = ""

    def array(self) -> np.ndarray:
        return np.load(self.path, mmap_mode="r", allow_pickle=False)


class UnreadableImage(EmobenchError):
    """A file Pillow cannot decode (corrupt, truncated, not an image): skipped and counted, never fatal."""


def read_image(path: Path, prep: Preprocessing) -> np.ndarray:
    """One image file, decoded with Pillow and preprocessed (C×H×W float32); :class:`UnreadableImage`
    ("file: why") when Pillow cannot read it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return prep(image)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as err:  # corrupt files raise these
        raise UnreadableImage(f"{path}: {type(err).__name__}") from None


def read_images(files: list[Path], prep: Preprocessing, skipped: list[str] | None = None, limit: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(index in files, C×H×W float32)`` of each readable file, in order, up to ``limit`` images; each
    unreadable file is appended to ``skipped`` ("file: why") and left out. ``progress(files done, files)``
    after each file. When no file at all could be read, an error."""
    skipped = [] if skipped is None else skipped
    kept, first = 0, len(skipped)
    for i, path in enumerate(files):
        if limit is not None and kept >= limit:
            return
        try:
            array = read_image(path, prep)
        except UnreadableImage as err:
            skipped.append(str(err))
        else:
            kept += 1
            yield i, array
        if progress:
            progress(i + 1, len(files))
    if kept == 0 and limit != 0:
        raise EmobenchError(f"none of the {len(files)} image(s) could be read ({skipped[first] if len(skipped) > first else ''})")


def decode_images(files: list[Path], prep: Preprocessing, out: Path, labels: list[int] | None = None,
                  progress: Callable[[int, int], None] | None = None, source: str = "") -> ImageSet:
    """Decode and preprocess ``files`` into ``out`` (.npy); unreadable files are skipped and listed."""
    h, w = prep.size
    array = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(len(files), prep.channels, h, w))
    kept, skipped, kept_labels = 0, [], []
    try:
        for i, image in read_images(files, prep, skipped, progress=progress):
            array[kept] = image
            if labels is not None:
                kept_labels.append(labels[i])
            kept += 1
    finally:
        array.flush()
        del array
    if kept < len(files):  # drop the unused tail: rewrite the kept rows (only when something was skipped)
        full = np.load(out, mmap_mode="r")
        trimmed = np.array(full[:kept])
        del full
        np.save(out, trimmed, allow_pickle=False)
    labels_path = None
    if labels is not None:
        labels_path = out.with_name(out.stem + "-labels.npy")
        np.save(labels_path, np.asarray(kept_labels, dtype=np.int64), allow_pickle=False)
    return ImageSet(out, kept, labels_path, skipped, source)


def calibration_files(root: str | Path, count: int, seed: int = 0) -> list[Path]:
    """Up to ``count`` image files of a folder, a seeded random sample (sorted before sampling, so the same
    folder always gives the same calibration set)."""
    files = image_files(root)
    if len(files) <= count:
        return files
    return sorted(random.Random(seed).sample(files, count))


# --- scoring (worker side) --------------------------------------------------------------------------------


def run_batches(run: Callable, images: np.ndarray, batch: int, to_tensor: Callable) -> np.ndarray:
    """Logits of every image, ``batch`` at a time (the artifact's static batch): the last batch is padded with
    zeros and the padding's outputs dropped."""
    outs = []
    for start in range(0, len(images), batch):
        chunk = np.array(images[start:start + batch], dtype=np.float32)  # a writable copy of the memory-mapped rows
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), np.float32)])
        out = run(to_tensor(chunk))
        out = out[0] if isinstance(out, (tuple, list)) else out
        outs.append(np.asarray(out.float().cpu().numpy() if hasattr(out, "float") else out, dtype=np.float32)[:n])
    return np.concatenate(outs).reshape(len(images), -1)


def score(logits: np.ndarray, labels: np.ndarray | None, reference: np.ndarray | None) -> dict:
    """top-1/top-5 against labels; top-1 agreement and mean cosine similarity of the logits against the
    reference logits (eager fp32 torch on the same images). Fractions in [0, 1]; None where not defined."""
    out: dict = {"images": int(len(logits)), "top1": None, "top5": None, "top1_agreement": None, "logit_cosine": None}
    order = np.argsort(-logits, axis=1, kind="stable")
    if labels is not None:
        out["top1"] = float(np.mean(order[:, 0] == labels))
        if logits.shape[1] >= 5:
            out["top5"] = float(np.mean((order[:, :5] == labels[:, None]).any(axis=1)))
    if reference is not None:
        out["top1_agreement"] = float(np.mean(order[:, 0] == np.argmax(reference, axis=1)))
        num = np.sum(logits.astype(np.float64) * reference, axis=1)
        den = np.linalg.norm(logits.astype(np.float64), axis=1) * np.linalg.norm(reference.astype(np.float64), axis=1)
        cos = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(np.abs(num) == 0, 1.0, 0.0))
        out["logit_cosine"] = float(np.mean(cos))
    return out


# --- the images of a sweep (parent side) ------------------------------------------------------------------


#: calibration inputs used when no --calibration folder is given (seeded normal noise, flagged in the record)
RANDOM_CALIBRATION = 32


def random_calibration(shape: tuple[int, ...], count: int = RANDOM_CALIBRATION, seed: int = 2) -> np.ndarray:
    """``count`` seeded standard-normal inputs of one image's shape (C, H, W)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn((count, *shape), generator=g).numpy()
