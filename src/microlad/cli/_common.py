"""Checks shared by the commands, run before any work (one-line errors, exit 2)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from microlad.errors import CheckpointError, InputError

CHECKPOINT_FILES = ("train_state.json", "train_state.safetensors")


def model_path(name_or_dir: str) -> Path:
    """A model directory (or bundled model name) that holds a finished model.

    A directory with a training checkpoint but no ``config.json`` is a run that was
    stopped before it finished: the error says how to finish it.
    """
    from microlad.bundled import resolve_model

    path = resolve_model(name_or_dir)
    if path.is_dir() and not (path / "config.json").is_file() and any((path / f).is_file() for f in CHECKPOINT_FILES):
        raise CheckpointError(
            f"{path}: training did not finish (a checkpoint but no config.json); finish it with "
            f"`microlad train IMAGES... --out {path} --resume`"
        )
    return path


def check_fractions(vf: Sequence[float], n_phases: int, *, tol: float = 1e-3) -> list[float]:
    """``--vf``: one fraction per phase, each in (0, 1), summing to 1 (within ``tol``)."""
    values = [float(v) for v in vf]
    if len(values) != n_phases:
        raise InputError(f"--vf needs one value per phase ({n_phases}), got {len(values)}: {values}")
    if not all(math.isfinite(v) and 0.0 < v < 1.0 for v in values):
        raise InputError(f"--vf values must lie strictly between 0 and 1, got {values}")
    total = sum(values)
    if abs(total - 1.0) > tol:
        raise InputError(f"--vf values must sum to 1, got {values} (sum {total:g})")
    return values


def check_positive(name: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
