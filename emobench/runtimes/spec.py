"""What the parent process hands a measurement worker, typed and serialised in one place (JSON in a private
temporary folder: no pickles, so a worker never runs code it was sent)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


def save_outputs(path: str, outs) -> None:
    """Eager torch's output tensors as the ``.npz`` a worker checks parity against (``out_0``, ``out_1``, …)."""
    import numpy as np

    np.savez(path, **{f"out_{i}": o.float().numpy() for i, o in enumerate(outs)})


def load_outputs(path: str) -> list:
    """The arrays :func:`save_outputs` wrote, in output order."""
    import numpy as np

    with np.load(path, allow_pickle=False) as saved:
        return [saved[f"out_{i}"] for i in range(len(saved.files))]


@dataclass
class ModelSpec:
    """How the worker rebuilds the model when it exports in-process (eager backends)."""

    name: str  #: the model reference
    form: str  #: the formulation
    checkpoint: str | None = None
    zoo_dirs: list[str] = field(default_factory=list)  #: ``--zoo`` folders in force in the parent


@dataclass
class ArtifactSpec:
    """An export the parent wrote (file backends), cached or fresh."""

    path: str
    export_s: float | None = None
    cached: bool = True
    companions: list[str] = field(default_factory=list)  #: files beside it (OpenVINO's .bin)
    explain: dict | None = None
    input: str | None = None  #: what it is timed on (.npy), when not the spec's input: a block's cut takes the block's
    expected: str | None = None  #: eager torch's outputs on ``input`` (.npz, out_0 …): checked before timing


@dataclass
class ImagesSpec:
    """Images the worker scores after parity (eval, int8 parity): preprocessed inputs, labels and eager fp32
    torch's logits as .npy files, and the agreement thresholds (None: not checked)."""

    input: str
    labels: str | None = None
    reference: str | None = None
    min_agreement: float | None = None
    min_cosine: float | None = None


@dataclass
class WorkerSpec:
    """One measurement: a backend (``module:Class``) at one dtype and thread count, the parity inputs, and
    either an artifact or the model to build (or an in-memory module's exported program)."""

    backend: str
    dtype: str
    threads: int
    input: str  #: the parity input (.npy)
    expected: str  #: eager fp32 torch's outputs on it (.npz: out_0, out_1, …)
    model: ModelSpec
    tolerance: float | None = None  #: max |Δ| allowed (None: int8, checked on images)
    warmup: int = 10
    min_time: float = 1.0
    min_runs: int = 20
    time: bool = True  #: False: accuracy only (eval)
    artifact: ArtifactSpec | None = None
    images: ImagesSpec | None = None
    program: str | None = None  #: an in-memory module's ``torch.export`` program
    program_error: str | None = None  #: why the in-memory module could not be exported
    #: > 0: after parity, this many calls under the backend's per-operator profiler (nothing timed for the headline)
    profile_runs: int = 0
    #: prefix differencing: the artifacts of the network cut after each block, timed interleaved after parity
    prefixes: list[ArtifactSpec] = field(default_factory=list)
    prefix_rounds: int = 0  #: interleaved passes over the prefixes (each a ``time_calls`` per prefix)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "WorkerSpec":
        data = json.loads(text)
        data["model"] = ModelSpec(**data["model"])
        data["artifact"] = ArtifactSpec(**data["artifact"]) if data.get("artifact") else None
        data["images"] = ImagesSpec(**data["images"]) if data.get("images") else None
        data["prefixes"] = [ArtifactSpec(**a) for a in data.get("prefixes") or []]
        return cls(**data)
