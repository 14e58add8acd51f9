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
