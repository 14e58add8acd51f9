"""Reported figures as data: ``zoo/papers/*.toml``, one comparison table per file, every row with its source.

A file holds::

    name = "imagenet"
    title = "ImageNet-1K classification"
    source = "where the rows come from"          # default for rows without their own
    columns = { params_m = "Params (M)", top1 = "Top-1 (%)" }

    [[rows]]
    model = "EMO-1M"
    zoo = "emo_1m"                               # optional: the zoo entry that gives measured values
    source = "zhangzjn/EMO README"               # optional when the table has one
    params_m = 1.3
    top1 = 71.5

A reported number is never typed into code: the table code reads it from here, and a row without a source
(its own or the table's) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emobench.errors import ZooError
from emobench.paths import builtin_zoo_dir
from emobench.zoo.catalog import read_validated

class PaperRow(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    zoo: str | None = None
    timm: str | None = None
    group: str | None = None
    task: str | None = None
    source: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _numbers(self) -> "PaperRow":
        for key, value in (self.model_extra or {}).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"'{key}' must be a number, got {value!r}")
        return self

    @property
    def values(self) -> dict[str, float]:
        return dict(self.model_extra or {})


class SpeedPair(BaseModel):
    """An EMO model and the peers a paper compares its speed with, as model references (``REF@HxW`` for each
    model's own input): the measured speed section of ``emobench table speed`` and the report."""

    model_config = ConfigDict(extra="forbid")

    emo: str
    peers: list[str] = Field(min_length=1)
    source: str


class PaperFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    title: str
    source: str | None = None
    note: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    #: the sources counted FLOPs with module hooks (mmcv's get_flops), which cannot see the tensor operations
    #: inside a module: the table then also shows each count without the attention matmuls
    flops_without_attention_matmuls: bool = False
    rows: list[PaperRow] = Field(min_length=1)
    pairs: list[SpeedPair] = Field(default_factory=list)


@dataclass(frozen=True)
class ReportedTable:
    name: str
    title: str
    columns: dict[str, str]
    rows: list[PaperRow]
    path: Path
    sources: list[str] = field(default_factory=list)  # per row: the row's source or the table's
    flops_without_attention_matmuls: bool = False
    pairs: list[SpeedPair] = field(default_factory=list)

    def source_of(self, index: int) -> str:
        return self.sources[index]


def papers_dir() -> Path:
    return builtin_zoo_dir() / "papers"


def load_table(path: Path) -> ReportedTable:
    table = read_validated(path, PaperFile)
    sources = []
    for i, row in enumerate(table.rows):
        source = row.source or table.source
        if not source:
            raise ZooError(f"{path}: rows[{i}] ({row.model}): no source (give the row or the table a 'source')")
        unknown = set(row.values) - set(table.columns)
        if unknown:
            raise ZooError(f"{path}: rows[{i}] ({row.model}): values {sorted(unknown)} are not among the table's columns")
        sources.append(source)
    return ReportedTable(table.name, table.title, table.columns, table.rows, path, sources,
                         table.flops_without_attention_matmuls, table.pairs)


def list_tables(folder: Path | None = None) -> dict[str, Path]:
    folder = folder or papers_dir()
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def get_table(name: str, folder: Path | None = None) -> ReportedTable:
    tables = list_tables(folder)
    if name not in tables:
        raise ZooError(f"no reported table '{name}' (known: {', '.join(tables) or 'none'})")
    table = load_table(tables[name])
    if table.name != name:
        raise ZooError(f"{table.path}: name '{table.name}' differs from the file name '{name}'")
    return table
