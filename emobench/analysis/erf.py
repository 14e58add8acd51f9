"""Effective receptive field, exactly as RepLKNet measures it (Ding et al., CVPR 2022, ``erf/visualize_erf.py``
and ``erf/analyze_erf.py``).

1. The model returns its last feature map (no pooling or head), in eval mode.
2. Per image: the feature vector at the spatial centre (H//2, W//2), ReLU, summed over channels → a scalar;
   its gradient with respect to the input; ReLU of the gradient; summed over RGB → an H×W map. Images whose map
   has a NaN are skipped; the others are averaged.
   Real images (``--images``) are RepLKNet's input: resized bicubically to exactly the input size (no crop),
   ImageNet-normalised. Files are found, decoded and (when unreadable) skipped by ``emobench.measure.images``,
   the pipeline of ``emobench eval``; unreadable files count as skipped, like NaN maps.
3. Analysis: ``log10(map + 1)``, divided by its maximum. For each threshold t, the smallest centred square of
   side 2i+1 whose share of the total is strictly greater than t gives the high-contribution area ratio
   side² / (H·W). When no square up to the map's size gets there, the ratio is reported as missing (the
   original script crashes there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from emobench.errors import EmobenchError
from emobench.measure.images import Preprocessing, image_files, read_images

if TYPE_CHECKING:
    import pandas as pd

THRESHOLDS = (0.2, 0.3, 0.5, 0.99)


@dataclass
class ERFResult:
    model: str
    mean_gradient: np.ndarray  # H × W, the averaged ReLU'd gradient (raw)
    images: int
    skipped: int  #: unreadable image files and images whose map has a NaN
    source: str
    output: str = ""  #: which output tensor, for models with several (``""``: the only one)

    @property
    def scaled(self) -> np.ndarray:
        """log10(x + 1), max-normalised: the map the thresholds are applied to."""
        data = np.log10(self.mean_gradient + 1)
        peak = data.max()
        return data / peak if peak > 0 else data

    def area_ratios(self, thresholds=THRESHOLDS) -> dict[float, float | None]:
        return {t: high_contribution_area_ratio(self.scaled, t) for t in thresholds}


def high_contribution_area_ratio(data: np.ndarray, threshold: float) -> float | None:
    """side² / (H·W) of the smallest centred square (side 2i+1, i ≥ 1) holding strictly more than
    ``threshold`` of the map's total; None when none does."""
    h, w = data.shape
    total = data.sum()
    if total <= 0:
        return None
    ch, cw = h // 2, w // 2
    for i in range(1, max(h, w) // 2 + 1):
        top, left = max(ch - i, 0), max(cw - i, 0)
        part = data[top : ch + i + 1, left : cw + i + 1].sum()
        if part / total > threshold:
            side = 2 * i + 1
            return min(side * side / (h * w), 1.0)
    return None


def random_images(count: int, size: tuple[int, int], seed: int = 0):
    """Standard-normal images (the default input when no folder is given)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(count):
        yield torch.randn(1, 3, *size, generator=g)


def folder_images(folder: str | Path, count: int, size: tuple[int, int], skipped: list[str] | None = None):
    """Up to ``count`` readable images of a folder (eval's image files, sorted by path) as 1×3×H×W tensors,
    resized bicubically to exactly ``size`` and ImageNet-normalised (RepLKNet's input); unreadable files are
    appended to ``skipped``. A missing folder or one without image files is an error here, before any image
    is read."""
    files = image_files(folder)
    return (torch.from_numpy(x)[None] for _, x in read_images(files, Preprocessing.exact(size), skipped, count))


def feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.forward_features(x) if hasattr(model, "forward_features") else model(x)


def _batches(images, size: int):
    batch = []
    for x in images:
        batch.append(x)
        if len(batch) == size:
            yield torch.cat(batch)
            batch = []
    if batch:
        yield torch.cat(batch)


def effective_receptive_fields(
    model: nn.Module, images, name: str = "", source: str = "random", progress=None, batch_size: int = 8
) -> list[ERFResult]:
    """Average the ReLU'd input gradient of the centre feature over ``images`` (an iterable of 1×C×H×W), for
    every (B, C, H, W) map the model returns (``forward_features`` where it has one, else ``forward``; a
    detector's or segmenter's outputs each get their own map).

    Images are processed ``batch_size`` at a time; in eval mode they do not interact, so each image's gradient
    is the one a batch of one would give (RepLKNet's setting)."""
    from emobench.analysis.rf import output_maps, output_names
    from emobench.models.forward import forward, model_failures

    label = name or getattr(model, "model_reference", None) or type(model).__name__
    model = model.eval()
    totals: dict[str, np.ndarray] = {}
    used: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for x in _batches(images, batch_size):
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            names = None if hasattr(model, "forward_features") else output_names(model)
            found = forward(lambda t: feature_map(model, t), x, label)
            maps = [(k, v) for k, v in output_maps(found, names=names) if v.dim() == 4]
            if not maps:
                raise EmobenchError(f"{name or type(model).__name__} returns no (B, C, H, W) feature map: the ERF "
                                    f"needs a spatial output")
            for i, (key, out) in enumerate(maps):
                h, w = out.shape[-2:]
                # autograd.grad: only the input's gradient, nothing accumulated on the caller's parameters
                with model_failures(label, x, "backward pass"):
                    (grad,) = torch.autograd.grad(torch.relu(out[:, :, h // 2, w // 2]).sum(), x,
                                                  retain_graph=i < len(maps) - 1)
                grads = torch.relu(grad).sum(dim=1).detach().numpy().astype(np.float64)  # per image, over RGB
                for g in grads:
                    if np.isnan(g).any():
                        skipped[key] = skipped.get(key, 0) + 1
                        continue
                    totals[key] = g if key not in totals else totals[key] + g
                    used[key] = used.get(key, 0) + 1
        if progress:
            progress(x.shape[0])
    if not used:
        raise EmobenchError("no image gave a usable gradient (all NaN or none given)")
    several = len(totals) > 1
    return [ERFResult(f"{name} [{key}]" if several else name, totals[key] / used[key], used[key],
                      skipped.get(key, 0), source, key if several else "") for key in totals]


def effective_receptive_field(
    model: nn.Module, images, name: str = "", source: str = "random", progress=None, batch_size: int = 8
) -> ERFResult:
    """The ERF of a model with one feature map (see :func:`effective_receptive_fields`)."""
    results = effective_receptive_fields(model, images, name, source, progress, batch_size)
    if len(results) > 1:
        raise EmobenchError(f"{name or type(model).__name__} returns {len(results)} maps: use effective_receptive_fields")
    return results[0]


#: Stable columns of :func:`ratios_frame` (snake_case; the threshold in percent in the name).
RATIO_COLUMNS = tuple(f"area_ratio_t{int(t * 100)}" for t in THRESHOLDS)


@dataclass
class ERFStudy:
    """ERF maps of several models measured the same way, and the inputs they were averaged over."""

    results: list[ERFResult]
    resolution: tuple[int, int]
    source: str

    def frame(self) -> "pd.DataFrame":
        return ratios_frame(self.results)


def ratios_frame(results: list[ERFResult], thresholds=THRESHOLDS):
    """One row per model: ``model``, ``images``, ``skipped`` and ``area_ratio_tNN`` (a fraction of the input, or
    missing where no centred square gets above the threshold): stable names for JSON/CSV and the report."""
    import pandas as pd

    rows = [{"model": r.model, "output": r.output, "images": r.images, "skipped": r.skipped,
             **{f"area_ratio_t{int(t * 100)}": v for t, v in r.area_ratios(thresholds).items()}} for r in results]
    columns = ["model", "output", "images", "skipped", *(f"area_ratio_t{int(t * 100)}" for t in thresholds)]
    return pd.DataFrame(rows, columns=columns)


def erf_study(
    models: list[str],
    resolution: tuple[int, int] = (224, 224),
    images: str | Path | None = None,
    num_images: int = 50,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    progress=None,
) -> ERFStudy:
    """The ERF of each model in ``models`` (references: zoo names, ``timm:NAME``, factories, with ``@HxW``
    taking precedence over ``resolution``) at ``resolution``, averaged over ``num_images`` images from the
    folder ``images`` (or seeded random images). Weights: ``checkpoint`` (one model only) or random ones drawn
    with ``seed`` in a forked RNG, so the caller's random state is left as it was. ``progress(model, done)`` is
    called as images are processed. The CLI's ``erf`` and ``emobench report`` both use this."""
    from emobench.models.references import resolve

    if num_images < 1:
        raise EmobenchError(f"--num-images must be >= 1, got {num_images}")
    if checkpoint and len(models) > 1:
        raise EmobenchError("--checkpoint applies to one model; give one model")
    source = f"{num_images} images from {images}" if images else f"{num_images} random images (seed {seed})"
    if checkpoint is None:
        source += f", random weights (seed {seed})"
    from emobench.models.budget import check_fits

    refs = [resolve(name) for name in models]
    for ref in refs:  # every model checked before the first is studied; images go through in batches of up to 8
        check_fits(ref, ref.input_shape(resolution, min(num_images, 8)), copies=2, what="(forward and backward)")
    results = []
    for name, ref in zip(models, refs):
        shape = ref.input_shape(resolution)
        size = tuple(shape[2:])
        if images is not None and shape[1] != 3:
            raise EmobenchError(f"'{name}' takes {shape[1]} channels; --images needs an RGB model")
        model = ref.build(checkpoint, seed=seed)
        unreadable: list[str] = []
        if images is not None:
            stream = folder_images(images, num_images, size, unreadable)
        else:  # a model with other than 3 channels gets the first random channel repeated
            stream = (x if shape[1] == 3 else x[:, :1].expand(-1, shape[1], -1, -1).clone()
                      for x in random_images(num_images, size, seed))
        step = (lambda n, name=name: progress(name, n)) if progress else None
        found = effective_receptive_fields(model, stream, name, source, step)
        for result in found:  # unreadable files are skipped images of every map
            result.skipped += len(unreadable)
        results += found
    return ERFStudy(results, tuple(resolution), source)
