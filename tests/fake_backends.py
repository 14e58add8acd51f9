"""Backends that misbehave on purpose, importable by worker processes (they see the test process's sys.path)."""

from __future__ import annotations

import os
import time

import torch

from emobench.runtimes import backends as B


class Missing(B.Backend):
    name = "missing"
    modules = ("emobench_no_such_runtime",)
    install = "missing"


class Wrong(B.TorchEager):
    """Computes something else: zeros of the right shape."""

    name = "wrong"

    def open(self, artifact, threads, dtype):
        session = super().open(artifact, threads, dtype)
        session.run = lambda x: torch.zeros(x.shape[0], 64, 14, 14)
        return session


class SilentBf16(B.TorchEager):
    """Computes the right numbers but reports bf16: a precision other than asked is never an fp32 result."""

    name = "silent-bf16"

    def open(self, artifact, threads, dtype):
        session = super().open(artifact, threads, dtype)
        session.precision = "bf16"
        return session


class Crash(B.TorchEager):
    name = "crash"

    def open(self, artifact, threads, dtype):
        os._exit(3)


class Hang(B.TorchEager):
    name = "hang"

    def open(self, artifact, threads, dtype):
        time.sleep(3600)
