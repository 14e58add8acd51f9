"""Errors that mean "the user asked for something that cannot be done".

The CLI turns every :class:`EmobenchError` into one line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class EmobenchError(Exception):
    """Bad input: unknown names, malformed files, impossible sizes, missing optional packages."""


class ZooError(EmobenchError):
    """A zoo file is missing, malformed or names an unknown model."""


class InputSizeError(EmobenchError):
    """An input shape the model cannot take."""


class CheckpointError(EmobenchError):
    """A checkpoint that cannot be read or does not fit the model."""


def first_line(err: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters): how a failure is named in a record."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
