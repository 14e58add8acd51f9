"""The model zoo: one TOML file per model, validated on load.

A file ``NAME.toml`` holds::

    family = "emo"                 # a registered family (emobench.nn.FAMILIES): "emo" or "m2"
    summary = "one line"
    source = "where the architecture comes from"
    extends = "emo_5m"             # optional: start from another entry and override
    input_size = [3, 224, 224]     # C, H, W of the default input
    tags = ["paper", "ablation"]

    [config]                       # the family's configuration (emobench.nn.EMOConfig, M2BlockConfig)
    depths = [2, 2, 8, 3]

Built-in entries live in the ``zoo/`` folder; more folders come from ``EMOBENCH_ZOO_PATH`` (``os.pathsep``
separated) or the CLI's ``--zoo``. TOML is data only: loading never executes anything.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emobench.errors import ZooError
from emobench.paths import builtin_zoo_dir, read_cache, source_fingerprint, update_cache

#: parameter counts of zoo entries by content key (see :func:`zoo_listing`)
PARAMS_CACHE = "zoo_params.json"


def _families() -> dict:
    """The registered families; importing them imports torch, so only code that validates or builds does."""
    from emobench.nn import FAMILIES

    return FAMILIES

ENV_ZOO_PATH = "EMOBENCH_ZOO_PATH"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class ZooFile(BaseModel):
    """The top level of a zoo file; ``config`` is validated by the family's own schema."""

    model_config = ConfigDict(extra="forbid")

    family: str | None = None
    summary: str | None = None
    source: str | None = None
    extends: str | None = None
    input_size: tuple[int, int, int] | None = Field(None, description="C, H, W")
    tags: list[str] | None = None
    config: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class ZooEntry:
    """A resolved, validated zoo entry."""

    name: str
    family: str
    summary: str
    source: str
    input_size: tuple[int, int, int]
    tags: tuple[str, ...]
    config: Any  # the family's pydantic config
    path: Path
    extends: str | None = None
    raw_config: dict[str, Any] = field(default_factory=dict, repr=False)

    def with_overrides(self, **overrides: Any) -> "ZooEntry":
        """The same entry with config fields replaced (validated like the file itself)."""
        if not overrides:
            return self
        merged = _merge(self.raw_config, overrides)
        config = _validate_config(self.family, merged, f"{self.name} (overrides {sorted(overrides)})")
        return ZooEntry(
            self.name, self.family, self.summary, self.source, self.input_size, self.tags, config, self.path,
            self.extends, merged,
        )


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_validation(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def read_validated(path: Path, schema: type[BaseModel]) -> Any:
    """A TOML data file validated by ``schema``; any problem is one :class:`ZooError` naming the file and field."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ZooError(f"{path}: not valid TOML: {err}") from None
    except OSError as err:
        raise ZooError(f"{path}: cannot read: {err.strerror}") from None
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise ZooError(f"{path}: {_format_validation(err)}") from None


def _validate_config(family: str, config: dict[str, Any], where: str) -> Any:
    record = _families()[family]
    try:
        validated = record.config.model_validate(config)
    except ValidationError as err:
        raise ZooError(f"{where}: config.{_format_validation(err)}") from None
    if record.bind is not None:  # entries it names (a backbone) are resolved here, once, not while building
        try:
            record.bind(validated, _lookup)
        except ZooError as err:
            raise ZooError(f"{where}: {err}") from None
    return validated


def _lookup(name: str, overrides: dict[str, Any]) -> tuple[str, Any]:
    entry = get_entry(name).with_overrides(**overrides)
    return entry.family, entry.config


class Zoo:
    """An index of the zoo files found on a search path (names → files), loading entries on demand."""

    def __init__(self, dirs: tuple[Path, ...]) -> None:
        self.dirs = dirs
        self.files: dict[str, Path] = {}
        for d in dirs:
            if not d.is_dir():
                raise ZooError(f"zoo folder not found: {d}")
            for path in sorted(d.glob("*.toml")):
                if not path.is_file():  # a FIFO or a device named *.toml would block the reader
                    continue
                name = path.stem
                if not _NAME.match(name):
                    raise ZooError(f"{path}: a zoo file name must be lower-case letters, digits, '_', '-' or '.'")
                if name in self.files:
                    raise ZooError(f"model '{name}' is defined twice: {self.files[name]} and {path}")
                self.files[name] = path
        self._entries: dict[str, ZooEntry] = {}

    def names(self) -> list[str]:
        return sorted(self.files, key=_natural_key)

    def resolve_name(self, name: str) -> Path:
        if name in self.files:
            return self.files[name]
        close = difflib.get_close_matches(name, list(self.files), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `emobench zoo list` shows them all"
        raise ZooError(f"unknown model '{name}'{hint}")

    def _read(self, path: Path) -> ZooFile:
        return read_validated(path, ZooFile)

    def read_entry_file(self, name: str, chain: tuple[str, ...] = ()) -> tuple[Path, ZooFile]:
        """An entry's file, read and validated, with its ``extends`` checked (it names an entry; no cycle
        through ``chain``, the entries already on the way)."""
        path = self.resolve_name(name)
        if name in chain:
            raise ZooError(f"{path}: 'extends' forms a cycle: {' -> '.join((*chain, name))}")
        f = self._read(path)
        if f.extends and f.extends not in self.files:
            try:
                self.resolve_name(f.extends)
            except ZooError as err:
                raise ZooError(f"{path}: extends: {err}") from None
        return path, f

    def get(self, name: str, _chain: tuple[str, ...] = ()) -> ZooEntry:
        if name in self._entries:
            return self._entries[name]
        path, f = self.read_entry_file(name, _chain)
        base = self.get(f.extends, (*_chain, name)) if f.extends else None
        family = f.family or (base.family if base else None)
        families = _families()
        if family is None:
            raise ZooError(f"{path}: family: field required (one of {', '.join(sorted(families))})")
        if family not in families:
            raise ZooError(f"{path}: family: unknown family '{family}' (known: {', '.join(sorted(families))})")
        if base is not None and base.family != family:
            raise ZooError(f"{path}: family '{family}' differs from the family '{base.family}' of '{f.extends}'")
        raw = _merge(base.raw_config, f.config) if base else f.config
        input_size = f.input_size or (base.input_size if base else None)
        if input_size is None:
            raise ZooError(f"{path}: input_size: field required ([C, H, W])")
        if min(input_size) < 1:
            raise ZooError(f"{path}: input_size: every dimension must be >= 1, got {list(input_size)}")
        entry = ZooEntry(
            name=name,
            family=family,
            summary=f.summary or (base.summary if base else ""),
            source=f.source or (base.source if base else ""),
            input_size=tuple(input_size),
            tags=tuple(f.tags if f.tags is not None else (base.tags if base else ())),
            config=_validate_config(family, raw, str(path)),
            path=path,
            extends=f.extends,
            raw_config=raw,
        )
        self._entries[name] = entry
        return entry


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


_extra_dirs: tuple[Path, ...] = ()


@contextmanager
def extra_zoo_dirs(dirs: list[str | os.PathLike] | None):
    """Search these folders too while the block runs (the CLI's ``--zoo``)."""
    global _extra_dirs
    saved = _extra_dirs
    _extra_dirs = saved + tuple(Path(d) for d in dirs or ())
    try:
        yield
    finally:
        _extra_dirs = saved


def current_extra_dirs() -> tuple[Path, ...]:
    """The ``--zoo`` folders in force (worker processes are given them explicitly)."""
    return _extra_dirs


def search_path() -> tuple[Path, ...]:
    env = tuple(p for p in os.environ.get(ENV_ZOO_PATH, "").split(os.pathsep) if p)
    dirs = (builtin_zoo_dir(), *env, *_extra_dirs)
    return tuple(dict.fromkeys(Path(p).expanduser().resolve() for p in dirs))


@cache
def _zoo(dirs: tuple[Path, ...]) -> Zoo:
    return Zoo(dirs)


def get_zoo() -> Zoo:
    """The zoo of the built-in folder, ``EMOBENCH_ZOO_PATH`` and ``--zoo`` folders (cached per search path)."""
    return _zoo(search_path())


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Zoo names matching a shell-style ``pattern``, naturally sorted (``emo_1m`` before ``emo_10m``)."""
    import fnmatch

    zoo = get_zoo()
    names = [n for n in zoo.names() if fnmatch.fnmatchcase(n, pattern)]
    if family is not None:
        names = [n for n in names if _describe(zoo, n)["family"] == family]  # no config validation: no torch
    return names


def get_entry(name: str) -> ZooEntry:
    return get_zoo().get(name)


def _describe(zoo: Zoo, name: str, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """An entry's top-level fields and merged raw config, read and merged like :meth:`Zoo.get` but without
    validating the config against its family (which would import torch)."""
    _, f = zoo.read_entry_file(name, _chain)
    base = _describe(zoo, f.extends, (*_chain, name)) if f.extends else {}
    return {
        "family": f.family or base.get("family"),
        "summary": f.summary or base.get("summary", ""),
        "input_size": list(f.input_size or base.get("input_size") or ()),
        "tags": list(f.tags if f.tags is not None else base.get("tags", ())),
        "config": _merge(base.get("config", {}), f.config) if base else f.config,
    }


def _params_key(desc: dict[str, Any]) -> str:
    import hashlib
    import json

    # input_size too: a miss validates the entry, so a broken file is never listed from the cache
    blob = json.dumps({k: desc[k] for k in ("family", "config", "input_size")}, sort_keys=True, default=str)
    return hashlib.sha256((blob + source_fingerprint("nn")).encode()).hexdigest()


def content_key(name: str) -> str:
    """A hash of what an entry builds: its resolved family, config and input (its file and every file it extends)
    and the model code; what is computed from an entry can be cached under it."""
    return _params_key(_describe(get_zoo(), name))


def parameter_count(name: str, fresh: bool = False) -> int:
    """Parameters of a zoo model, counted on a meta-device build (no memory, no weights); ``fresh``: from the
    files as they are now, not the entry this process has already loaded."""
    import torch

    entry = Zoo(get_zoo().dirs).get(name) if fresh else get_entry(name)
    with torch.device("meta"):
        model = _families()[entry.family].build(entry.config)
    return sum(p.numel() for p in model.parameters())


def zoo_listing(names: list[str] | None = None, use_cache: bool = True) -> "pandas.DataFrame":  # noqa: F821 - imported inside
    """name, family, params, input (``input_c``, ``input_h``, ``input_w``), tags and summary of each zoo entry
    (all by default).

    The parameter count comes from a cache (``zoo_params.json`` in :func:`cache_dir`) keyed by a hash of the
    entry's resolved family and config (its file and every file it extends) and of the model code, so a listing
    whose counts are cached reads TOML only and never imports torch; a miss validates, builds on the meta
    device, counts and stores the count."""
    import pandas as pd

    zoo = get_zoo()
    names = zoo.names() if names is None else names
    cached = {k: v for k, v in read_cache(PARAMS_CACHE).items() if isinstance(v, int)} if use_cache else {}
    added = False
    rows = []
    for name in names:
        desc = _describe(zoo, name)
        key = _params_key(desc)
        if key not in cached:
            cached[key] = parameter_count(name, fresh=True)  # the files as hashed; validates the entry too (one clear error if it is broken)
            added = True
        c, h, w = (int(v) for v in desc["input_size"])
        rows.append({"name": name, "family": desc["family"], "params": cached[key],
                     "input_c": c, "input_h": h, "input_w": w, "tags": ",".join(desc["tags"]),
                     "summary": desc["summary"]})
    if added and use_cache:
        update_cache(PARAMS_CACHE, cached)
    return pd.DataFrame(rows, columns=["name", "family", "params", "input_c", "input_h", "input_w", "tags", "summary"])
