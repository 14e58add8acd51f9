"""The inputs a bench or eval run scores and calibrates on: evaluation images decoded once per model and input
size, int8 calibration sets, and eager fp32 torch's logits on them (what each worker's parity is checked against)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from emobench.errors import EmobenchError
from emobench.runtimes.spec import ImagesSpec
from emobench.measure.images import (calibration_files, decode_images, preprocessing_for, random_calibration,
                                     run_batches, scan_image_folder)


@dataclass
class ScoredInputs:
    """What a sweep scores and calibrates on for one model at one input size."""

    images: ImagesSpec | None = None  # what each worker scores: input/labels/reference .npy paths, thresholds
    calibration: np.ndarray | None = None  # int8: the calibration inputs
    fields: dict = field(default_factory=dict)  # record fields: image_source, images_skipped, calibration


def prepare_image_inputs(plan, index: int, reference, shape: tuple[int, ...], workdir: Path,
                         report: Callable[[str, int, int], None]) -> ScoredInputs:
    """Decode the evaluation images and the calibration images of ``plan`` (a ``BenchPlan``) for model
    ``index`` at ``shape``'s input size with the model's preprocessing, and compute eager fp32 torch's logits
    on the images that will be scored (the evaluation images, else for int8 the calibration inputs). Done once
    per model, input size and dtype (``plan`` is at one dtype); other batch sizes reuse it."""
    import torch

    if plan.images is None and plan.dtype != "int8":
        return ScoredInputs()
    c, h, w = shape[1:]
    stem = workdir / f"model{index}-{c}x{h}x{w}-{plan.dtype}"  # one dtype of the plan (int8 adds calibration)
    saved = stem.with_suffix(".json")
    if saved.exists():  # another batch size of the same model
        info = json.loads(saved.read_text())
        calibration = np.load(info["calibration_path"], allow_pickle=False) if info["calibration_path"] else None
        return ScoredInputs(ImagesSpec(**info["images"]), calibration, info["fields"])
    prep = preprocessing_for(reference, (h, w), c, **plan.preprocess)
    fields: dict = {}
    scored = labels = folder = None
    if plan.images is not None:
        folder = scan_image_folder(plan.images, plan.class_index)
        samples = folder.samples[: plan.limit] if plan.limit else folder.samples
        evaluation = decode_images([p for p, _ in samples], prep, Path(f"{stem}-eval.npy"), [i for _, i in samples],
                                   lambda done, total: report(f"decoding images · model {index + 1}", done, total))
        scored, labels = evaluation.path, evaluation.labels_path
        fields.update(image_source=str(plan.images), images_skipped=len(evaluation.skipped))
    calibration_path = None
    if plan.dtype == "int8":
        calibration_path = Path(f"{stem}-calibration.npy")
        if plan.calibration is not None:
            files = calibration_files(plan.calibration, plan.calibration_size)
            calib = decode_images(files, prep, calibration_path,
                                  progress=lambda done, total: report(f"decoding calibration images · model {index + 1}", done, total))
            unreadable = f", {len(calib.skipped)} unreadable skipped" if calib.skipped else ""
            fields["calibration"] = f"{plan.calibration} ({calib.count} images{unreadable})"
        else:
            np.save(calibration_path, random_calibration((c, h, w)), allow_pickle=False)
            fields["calibration"] = f"random ({len(np.load(calibration_path, mmap_mode='r'))} inputs)"
        if scored is None:  # bench: int8 parity on the calibration inputs themselves
            scored = calibration_path
            fields.update(image_source=str(plan.calibration) if plan.calibration else "random inputs",
                          images_skipped=len(calib.skipped) if plan.calibration else None)
    data = np.load(scored, mmap_mode="r", allow_pickle=False)
    with torch.inference_mode():
        first = reference(torch.from_numpy(np.array(data[:1])))
        if plan.images is not None and not (isinstance(first, torch.Tensor) and first.ndim == 2):
            raise EmobenchError(f"eval scores classifiers (one N×classes output); model {index + 1} returns "
                                f"{type(first).__name__ if not isinstance(first, torch.Tensor) else tuple(first.shape)}")
        logits = run_batches(reference, data, 32, torch.from_numpy)
    if folder is not None:
        outputs = logits.shape[1]
        if plan.class_index is None and outputs != len(folder.classes):
            raise EmobenchError(f"the model's classifier has {outputs} outputs but {plan.images} has {len(folder.classes)} "
                                f"class folders: give a checkpoint and model with {len(folder.classes)} classes "
                                f"(e.g. MODEL,num_classes={len(folder.classes)}) or a --class-index file")
        if outputs < folder.num_outputs_needed:
            raise EmobenchError(f"the class index gives indices up to {folder.num_outputs_needed - 1} but the model's "
                                f"classifier has {outputs} outputs")
    reference_path = Path(f"{stem}-reference.npy")
    np.save(reference_path, logits, allow_pickle=False)
    int8 = plan.dtype == "int8"
    images = ImagesSpec(str(scored), str(labels) if labels else None, str(reference_path),
                        plan.min_agreement if int8 else None, plan.min_cosine if int8 else None)
    saved.write_text(json.dumps({"images": asdict(images), "fields": fields,
                                 "calibration_path": str(calibration_path) if calibration_path else None}))
    calibration = np.load(calibration_path, allow_pickle=False) if calibration_path else None
    return ScoredInputs(images, calibration, fields)
