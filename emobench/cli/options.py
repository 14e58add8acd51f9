"""What every command shares: the consoles, option declarations, and the parsers of option text."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from emobench.errors import EmobenchError

# Piped output keeps whole rows instead of folding to 80 columns.
# User text (paths, references) is printed as written: no emoji codes (":cat:"), and markup only where a
# message escapes what it embeds.
console = Console(width=None if sys.stdout.isatty() else 200, emoji=False)
err_console = Console(stderr=True, emoji=False)

ZooDirs = Annotated[
    Optional[list[Path]],
    typer.Option("--zoo", help="An extra folder of zoo files (repeatable; also EMOBENCH_ZOO_PATH).", show_default=False),
]
FormatOpt = Annotated[
    Optional[str],
    typer.Option("--format", "-f", help="table (default on screen), json, csv or md.", show_default=False),
]
OutputOpt = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", help="Write to this file instead of the screen (format from its suffix).", show_default=False),
]
StoreOpt = Annotated[
    Optional[Path],
    typer.Option("--store", help="Results store (SQLite file; default: the user data folder, or EMOBENCH_STORE).", show_default=False),
]
NoStoreOpt = Annotated[bool, typer.Option("--no-store", help="Do not record the results.")]
ResolutionOpt = Annotated[
    Optional[str],
    typer.Option("--resolution", "-r", help="Input H or HxW, e.g. 224 or 192x320 (default: the model's own; REF@HxW wins for that model).", show_default=False),
]
MODEL_REFS_HELP = ("Models: zoo names, timm:NAME, torchvision:NAME, package.module:factory or file.py:factory, "
                   "each with optional ,key=value arguments and @H or @HxW input size (e.g. timm:edgenext_xx_small@256).")


def output_format(value: str | None, documents: bool = False):
    """``--format`` as a :class:`~emobench.report.render.Format` (None: from ``--output``'s suffix, else table);
    ``documents``: LaTeX and HTML too (the comparison tables)."""
    from emobench.report.render import DATA_FORMATS, DOCUMENT_FORMATS, parse_format

    return parse_format(value, DOCUMENT_FORMATS if documents else DATA_FORMATS)


def resolution(value: str | None) -> tuple[int, int] | None:
    from emobench.models.build import parse_resolution

    return parse_resolution(value) if value else None


def _items(spec: str, what: str | None) -> list[str]:
    """The comma-separated items of ``spec`` (none for blank text); an empty item (``a,,b``, ``a,``) is refused."""
    if not spec.strip():
        return []
    items = [s.strip() for s in spec.split(",")]
    if not all(items):
        raise EmobenchError(f"{what + ': ' if what else ''}empty item in '{spec}'")
    return items


def _once(values: list, spec: str, what: str | None) -> list:
    """``values`` unless one is given twice (a typo, never a wish to measure twice): then that one is named."""
    for i, value in enumerate(values):
        if value in values[:i]:
            raise EmobenchError(f"{what + ': ' if what else ''}'{value}' is listed twice in '{spec}'")
    return values


def names(spec: str, what: str | None = None) -> list[str]:
    """``a,b , c`` → ``["a", "b", "c"]``; an empty or repeated item is refused (``what`` names the list)."""
    return _once(_items(spec, what), spec, what)


def ints(spec: str, what: str) -> list[int]:
    items = _items(spec, what)
    try:
        values = [int(s) for s in items]
    except ValueError:
        raise EmobenchError(f"{what} must be comma-separated integers, got '{spec}'") from None
    if not values or min(values) < 1:
        raise EmobenchError(f"{what} must be >= 1, got '{spec}'")
    return _once(values, spec, what)


def backends(spec: str) -> list[str]:
    """Backend names, ``all`` for every registered one."""
    from emobench.runtimes.backends import BACKENDS

    chosen = names(spec, "backend")
    return list(BACKENDS) if chosen == ["all"] else chosen


def filters(items: list[str] | None) -> dict[str, object]:
    """``field=value`` pairs (values compared as text: ``batch=1``, ``torch_version=2.13.0``; ``cpu_flags=a+b``:
    records having every listed ISA flag)."""
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EmobenchError(f"filters look like field=value (e.g. backend=onnxruntime), got '{item}'")
        out[key.strip()] = value.strip()
    return out


def zoo_scoped(command):
    """Run a command with its ``--zoo`` folders on the zoo search path (and only for its duration)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        from emobench.zoo.catalog import extra_zoo_dirs

        with extra_zoo_dirs(kwargs.get("zoo")):
            return command(*args, **kwargs)

    return run


def checks_output(command):
    """Refuse the command's ``--output`` before it does any work (and never the ``--store`` it reads)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        check_outputs(kwargs.get("output"), kwargs.get("store"), no_store="store" not in kwargs)
        return command(*args, **kwargs)

    return run


def on_screen(fmt, output) -> bool:
    """Whether the result goes to the screen as a table (where notes and hints are printed too)."""
    from emobench.report.render import Format

    return fmt in (None, Format.table) and output is None


def progress_bar(description: str = "working", total: int | None = None):
    """A transient progress bar on stderr (hidden when stderr is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    return Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal)


def check_outputs(output, store=None, no_store: bool = True) -> None:
    """Refuse a bad ``--output`` before any work starts; with a store in use, never that store either."""
    from emobench.paths import check_output

    if output is None:
        return
    keep = ()
    if not no_store:
        from emobench.results.store import default_store_path

        keep = (store or default_store_path(),)
    check_output(output, keep)
