"""One exception root for microlad.

Library code raises these; the CLI catches :class:`MicroladError` once and prints a
single ``error: ...`` line with a non-zero exit code.
"""
from __future__ import annotations

__all__ = [
    "MicroladError",
    "InputError",
    "ShapeError",
    "CheckpointError",
    "OutputExistsError",
]


class MicroladError(Exception):
    """Root of every error microlad raises on purpose."""


class InputError(MicroladError, ValueError):
    """A user-supplied image, volume, option or file is unusable."""


class ShapeError(InputError):
    """An array has the wrong number of dimensions or an unsupported size."""


class CheckpointError(MicroladError, ValueError):
    """A model directory or checkpoint is missing, truncated or not microlad's."""


class OutputExistsError(MicroladError, FileExistsError):
    """An output file exists and ``overwrite`` was not requested."""
