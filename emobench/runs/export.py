"""``emobench export``: the exact artifact ``emobench bench`` measures for one (model, backend, form, dtype, input),
copied out of the export cache, with a sidecar JSON (``PATH.json``) saying what it is and how it was checked.

The export goes through bench's own code path (:class:`emobench.runs.bench._Slot`, ``_export`` and its cache key,
``_resolve``): the same worker process checks parity against eager fp32 torch on bench's seeded input (int8:
top-1 agreement and logit cosine on the calibration inputs), and with ``form="auto"`` the first formulation of the
backend's ``form_preference`` that the model has and that passes parity is the one written. Nothing is timed.

The output path: when its suffix is the backend's (``.onnx``, ``.xml``, ``.pte``, ``.tflite``) it is used as
given; another artifact suffix is refused; any other name gets the backend's suffix added (``m`` → ``m.onnx``).
Companion files (OpenVINO's ``.bin``) go beside it with the same stem. Every file is written through a temporary
sibling and renamed into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from emobench.errors import EmobenchError
from emobench.paths import check_output
from emobench.runtimes.backends import BACKENDS, weights_fingerprint
from emobench.runtimes.spec import save_outputs
from emobench.runs.bench import BenchPlan, _input_shape, _resolve, _Slot, _tolerance, _workdir, model_identity
from emobench.runs.inputs import prepare_image_inputs
from emobench.version import __version__

EXPORT_DTYPES = ("fp32", "int8")

#: runtime settings the parity check ran with that differ from the runtime's defaults: OpenVINO's CPU plugin may
#: compute in bf16 by default (where the CPU has it), so the recorded fp32 parity holds with the f32 hint only
RUN_SETTINGS = {"openvino": {"INFERENCE_PRECISION_HINT": "f32"}}


def file_backends() -> list[str]:
    """The backends that write an artifact (the others run the model eagerly: nothing to export)."""
    return [name for name, b in BACKENDS.items() if b.suffix is not None]


@dataclass
class ExportResult:
    """What :func:`export_artifact` wrote and how it was checked (the sidecar JSON is :meth:`to_dict`)."""

    model: str
    backend: str
    runtime_version: str
    form: str
    form_requested: str
    dtype: str
    input_shape: list[int]
    input: str  # what the artifact takes, in words
    preprocessing: dict | None  # int8: how the calibration images were preprocessed; fp32: None (a plain tensor)
    parity: dict
    emobench_version: str
    torch_version: str
    artifact: str
    sha256: str
    bytes: int
    companions: list[dict] = field(default_factory=list)  # {path, sha256, bytes} per file beside the artifact
    checkpoint: str | None = None
    cache_key: str | None = None
    run_settings: dict = field(default_factory=dict)  # load the artifact with these for the parity recorded here
    notes: list[str] = field(default_factory=list)  # auto: why earlier formulations were passed over

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def output_path(path: str | os.PathLike, backend_name: str) -> Path:
    """``path`` with the backend's suffix: kept when it has it, added when it has another (non-artifact) one or
    none; a path ending in another backend's artifact suffix (or a companion's) is refused."""
    path = Path(path).expanduser()
    backend = BACKENDS[backend_name]
    if path.suffix.lower() == backend.suffix:
        return path
    foreign = {b.suffix for b in BACKENDS.values() if b.suffix} | {s for b in BACKENDS.values() for s in b.companions}
    if path.suffix.lower() in foreign:
        raise EmobenchError(f"{path}: a {backend_name} artifact is a {backend.suffix} file, not {path.suffix}")
    return path.with_name(path.name + backend.suffix)


def _check_backend(backend_name: str, dtype: str) -> None:
    if backend_name not in BACKENDS:
        raise EmobenchError(f"unknown backend {backend_name} (backends that export files: {', '.join(file_backends())})")
    backend = BACKENDS[backend_name]
    if backend.suffix is None:
        raise EmobenchError(f"{backend_name} runs the model eagerly and writes no artifact "
                            f"(backends that export files: {', '.join(file_backends())})")
    if dtype not in EXPORT_DTYPES:
        raise EmobenchError(f"export writes {' or '.join(EXPORT_DTYPES)} artifacts, not {dtype}")
    if dtype not in backend.dtypes:
        raise EmobenchError(f"{backend_name} runs {', '.join(backend.dtypes)} only")
    reason = backend.unavailable()
    if reason:
        raise EmobenchError(f"{backend_name} is not available: {reason}")


def _copy(source: Path, target: Path) -> None:
    """Copy through a temporary sibling and rename into place (an interrupted copy leaves the target as it was)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text(text: str, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def export_artifact(model, backend: str, path: str | os.PathLike, form: str = "auto", dtype: str = "fp32",
                    resolution: tuple[int, int] | None = None, batch: int = 1,
                    checkpoint: str | None = None) -> ExportResult:
    """Export ``model`` for ``backend`` exactly as ``emobench bench`` would (same code, same cache key, same parity
    check), copy the artifact (and its companions) to ``path`` and write ``path + '.json'`` beside it. Refuses,
    before any work, eager backends, a bad output path, and an export that fails parity on every candidate form."""
    from emobench.models.forward import forward, output_tensors

    _check_backend(backend, dtype)
    target = output_path(path, backend)
    be = BACKENDS[backend]
    companions = [target.with_suffix(s) for s in be.companions]
    sidecar = target.with_name(target.name + ".json")
    for out in (target, *companions, sidecar):
        check_output(out)
    plan = BenchPlan(models=[model], backends=[backend], batches=[batch], threads=[1], resolution=resolution,
                     dtype=dtype, forms=[form], rounds=1, warmup=0, min_runs=1, min_time=0.0, timed=False,
                     checkpoint=checkpoint)
    plan.validate()
    plan.check_fits()
    item = plan.models[0]
    from emobench.models.references import build_reference  # after validate: the model is resolved

    reference = build_reference(item, checkpoint)
    name = item.text
    shape = _input_shape(item, reference, resolution, batch)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))  # bench's parity input
    with torch.inference_mode():
        outs = output_tensors(forward(reference, x, name), name)
    with _workdir() as workdir:
        stem = workdir / f"model0-b{batch}"
        inputs = {"input": f"{stem}-x.npy", "expected": f"{stem}-y.npz"}
        np.save(inputs["input"], x.numpy(), allow_pickle=False)
        save_outputs(inputs["expected"], outs)
        scored = prepare_image_inputs(plan, 0, reference, shape, workdir, lambda *a: None)
        if scored.images is not None:
            inputs["images"] = scored.images
        from emobench.nn.forms import candidates

        slot = _Slot(name, be, batch, form, candidates(form, be.form_preference, reference), reference,
                     model_identity(item), shape, inputs, weights_fingerprint(reference), plan, 0,
                     calibration=scored.calibration, accuracy=scored.fields)
        result = _resolve(slot, plan.threads[0], workdir)
    if result is None:
        failure = slot.failure or {}
        why = "; ".join(slot.notes) if slot.notes else f"{failure.get('status', 'error')}: {failure.get('error')}"
        raise EmobenchError(f"{name} on {backend}: no formulation exports and passes parity ({why})")
    artifact = slot.artifact
    _copy(artifact.path, target)
    for suffix, out in zip(be.companions, companions):
        _copy(artifact.path.with_suffix(suffix), out)
    int8 = dtype == "int8"
    parity = {"max_abs": result.get("parity_max_abs"), "tolerance": None if int8 else _tolerance(plan),
              "reference": "eager fp32 torch, form reference, on a seeded torch.randn input (seed 1)",
              "precision": result.get("precision")}
    if int8:
        parity.update(top1_agreement=result.get("top1_agreement"), logit_cosine=result.get("logit_cosine"),
                      min_top1_agreement=plan.min_agreement, min_logit_cosine=plan.min_cosine,
                      images=scored.fields.get("image_source"), calibration=scored.fields.get("calibration"))
    if int8:
        from emobench.measure.images import preprocessing_for

        prep = dataclasses.asdict(preprocessing_for(reference, shape[2:], shape[1]))
        preprocessing = {**prep, "used_for": "int8 calibration images (the artifact itself takes a float tensor)"}
        described = "float32 NCHW tensor, preprocessed as the calibration images were (see preprocessing)"
    else:
        preprocessing = None
        described = "a plain float32 NCHW tensor: no preprocessing is built into the artifact or assumed by the export"
    res = ExportResult(
        model=name, backend=backend, runtime_version=be.version(), form=slot.chosen, form_requested=form,
        dtype=dtype, input_shape=list(shape), input=described, preprocessing=preprocessing, parity=parity,
        emobench_version=__version__, torch_version=torch.__version__, artifact=str(target),
        sha256=_sha256(target), bytes=target.stat().st_size,
        companions=[{"path": str(c), "sha256": _sha256(c), "bytes": c.stat().st_size} for c in companions],
        checkpoint=checkpoint, cache_key=artifact.path.stem,
        run_settings=RUN_SETTINGS.get(backend, {}), notes=list(slot.notes),
    )
    _write_text(json.dumps(res.to_dict(), indent=2, default=str) + "\n", sidecar)
    return res
