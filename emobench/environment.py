"""What a measurement ran on: the machine and the software, recorded with every result."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterator


def cpu_name() -> str:
    """The CPU model as the OS names it (``/proc/cpuinfo`` on Linux), else the platform's word for it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: instruction-set features that change which kernels (and which precision) runtimes pick; ``asimd`` is NEON
#: on 64-bit ARM, ``neon`` on 32-bit ARM
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile",
              "amx_bf16", "amx_int8", "neon", "asimd", "asimdhp", "bf16", "i8mm", "sve", "sve2")
#: whole families kept by prefix (new AVX-512 and AMX extensions appear under these names)
_ISA_PREFIXES = ("avx512", "amx")


@functools.cache
def cpu_flags() -> tuple[str, ...]:
    """The CPU's instruction-set features among :data:`_ISA_FLAGS` (from ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return isa_flags(line.split(":", 1)[1].split())
    except OSError:
        pass
    return ()


def isa_flags(present) -> tuple[str, ...]:
    """The flags among ``present`` that :data:`_ISA_FLAGS` names or :data:`_ISA_PREFIXES` covers, in a stable
    order (the listed ones first, then the others sorted)."""
    present = set(present)
    listed = [flag for flag in _ISA_FLAGS if flag in present]
    return tuple(listed + sorted(f for f in present if f.startswith(_ISA_PREFIXES) and f not in listed))


@functools.cache
def git_revision() -> str | None:
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(threads: int | None = None, cuda: bool = False) -> dict[str, Any]:
    """The record's ``env``; the store also keeps emobench, git, torch, backend_version, cpu, cores and cpu_flags
    as columns (:data:`emobench.results.store.ENV_COLUMNS`)."""
    import torch  # only when a measurement is recorded: importing this module stays cheap

    from emobench.version import __version__

    return {
        "cpu": cpu_name(),
        "cpu_flags": list(cpu_flags()),
        "cores": os.cpu_count(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "emobench": __version__,
        "git": git_revision(),
        "cuda": torch.cuda.get_device_name(0) if cuda and torch.cuda.is_available() else None,
    }


def default_threads() -> int:
    """Threads a measurement uses when none are asked for: torch's, at most the core count."""
    import torch

    return min(torch.get_num_threads(), os.cpu_count() or 1)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """torch's intra-op threads set to ``threads`` (None: as they are) inside the block, the caller's setting
    restored after; yields the count in effect."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        yield threads or previous
    finally:
        torch.set_num_threads(previous)


def check_thread_counts(threads) -> None:
    """Refuse thread counts below 1 or above the core count (those would time the scheduler, not the model)."""
    from emobench.errors import EmobenchError

    counts = [t for t in ([threads] if isinstance(threads, int) else list(threads or []))]
    if any(t < 1 for t in counts):
        raise EmobenchError(f"thread counts must be >= 1, got {counts}")
    cores = os.cpu_count() or 1
    if counts and max(counts) > cores:
        raise EmobenchError(f"{max(counts)} threads on a machine with {cores} cores would time the scheduler, not the "
                            f"model (use -t 1..{cores})")
