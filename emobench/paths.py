"""Where emobench reads and writes: the shipped zoo, the cache folder, safe output files, and the hash of its
own sources that keys what it caches. A leaf: it imports nothing else of emobench but its errors."""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import sys
from pathlib import Path

from emobench.errors import EmobenchError

PACKAGE_DIR = Path(__file__).parent
ENV_CACHE = "EMOBENCH_CACHE"


def builtin_zoo_dir() -> Path:
    """The shipped entries: packaged as ``emobench/zoo_data`` in a wheel, ``zoo/`` in a source checkout."""
    packaged = PACKAGE_DIR / "zoo_data"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "zoo"


def cache_dir() -> Path:
    """emobench's cache folder: ``EMOBENCH_CACHE`` or the user cache folder (platformdirs)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("emobench", appauthor=False))


def read_cache(name: str) -> dict:
    """A JSON object cached as ``name`` in :func:`cache_dir` (empty when missing or damaged: recomputed)."""
    import json

    try:
        data = json.loads((cache_dir() / name).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update_cache(name: str, entries: dict) -> None:
    """Merge ``entries`` into the cached JSON object ``name``, atomically (readers never see half a file); an
    unwritable cache only costs time."""
    import json

    path = cache_dir() / name
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({**read_cache(name), **entries}, sort_keys=True))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True) if tmp.parent.is_dir() else None


def artifact_cache_dir() -> Path:
    """Where exports are cached: ``EMOBENCH_CACHE`` itself, or ``artifacts`` in emobench's user cache folder."""
    base = cache_dir()
    return base if os.environ.get(ENV_CACHE) else base / "artifacts"


@functools.cache
def source_fingerprint(*packages: str, root: Path = PACKAGE_DIR) -> str:
    """A hash of the Python sources under ``root``'s ``packages`` (emobench's own by default, e.g. ``"nn"``):
    whatever is cached from what that code computes (zoo parameter counts, exports) is keyed by it, so an
    edited file is never served a stale result. The one fingerprint of emobench's code."""
    digest = hashlib.sha256()
    for package in sorted(packages):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


_SQLITE_MAGIC = b"SQLite format 3\x00"
_SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError:
        return False


def check_output(output: Path, keep: tuple[Path, ...] = ()) -> None:
    """Refuse, before any work, an output path that writing would damage or that cannot be written: a folder, a
    read-only file, an SQLite database (a results store) or its ``-wal``/``-shm``/``-journal`` file, any path in
    ``keep`` (the store in use), or a file in a folder that does not exist. Streams (FIFOs, devices) are fine."""
    if str(output) == "-":
        return
    output = Path(output).expanduser()
    real = Path(os.path.realpath(output))
    for kept in keep:
        kept_real = Path(os.path.realpath(Path(kept).expanduser()))
        if real == kept_real or (real.parent == kept_real.parent and real.name in {kept_real.name + s for s in _SQLITE_SIDECARS}):
            raise EmobenchError(f"{output} is the results store in use: choose another output file")
    try:
        st = os.stat(output)  # follows links
    except FileNotFoundError:
        if not real.parent.is_dir():
            raise EmobenchError(f"cannot write {output}: folder not found: {real.parent}") from None
        return
    except OSError as err:
        raise EmobenchError(f"cannot write {output}: {err.strerror or err}") from None
    if stat.S_ISDIR(st.st_mode):
        raise EmobenchError(f"output path is a folder: {output}")
    if not stat.S_ISREG(st.st_mode):
        return  # a FIFO or a device is written to as a stream
    if not st.st_mode & 0o222:
        raise EmobenchError(f"{output} is read-only: left unchanged")
    for suffix in _SQLITE_SIDECARS:
        if real.name.endswith(suffix) and _is_sqlite(real.with_name(real.name[: -len(suffix)])):
            raise EmobenchError(f"{output} belongs to the SQLite database beside it (a results store?): left unchanged")
    if _is_sqlite(real):
        raise EmobenchError(f"{output} is an SQLite database (a results store?): left unchanged; choose another file")


def write_text(text: str, output: Path) -> None:
    """Write ``text`` to ``output`` without ever turning what is there into something else.

    ``-`` is standard output. A FIFO, a character device (``/dev/stdout``, ``/dev/null``, ``>(…)``) or any other
    file that is not a regular file is written to as a stream. A symbolic link is followed: its target is
    written and the link stays a link. A regular file is replaced atomically (temporary file + rename, its
    permission bits kept), so a failure never leaves it half-written; what :func:`check_output` refuses (a
    read-only file, an SQLite database, a missing folder) is refused, unchanged."""
    if str(output) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    output = output.expanduser()
    check_output(output)
    try:
        st = os.stat(output)  # follows links
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise EmobenchError(f"cannot write {output}: {err.strerror or err}") from None
    try:
        if st is not None and not stat.S_ISREG(st.st_mode):
            with open(output, "w") as stream:
                stream.write(text)
            return
        target = Path(os.path.realpath(output)) if output.is_symlink() else output
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text)
            if st is not None:
                os.chmod(tmp, stat.S_IMODE(st.st_mode))
            tmp.replace(target)
        except OSError:
            tmp.unlink(missing_ok=True) if tmp.parent.is_dir() else None
            raise
    except OSError as err:
        raise EmobenchError(f"cannot write {output}: {err.strerror or err}") from None
