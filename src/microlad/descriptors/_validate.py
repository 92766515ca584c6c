"""Input checks shared by the numpy descriptors and the transport solver (one place for
the input contract of label arrays, axes, phases, voxel sizes and cutoffs)."""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from microlad.errors import InputError, ShapeError


def to_numpy(a: object) -> np.ndarray:
    """``a`` as an ndarray (a torch tensor is detached and copied to the CPU)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch tensor, without importing torch
        a = a.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(a)


def check_spatial(shape: Sequence[int], *, ndims: Sequence[int] = (2, 3), name: str = "labels") -> None:
    """A grid shape of an allowed rank ((Y, X) or (Z, Y, X)) with no empty axis."""
    shape = tuple(shape)
    if len(shape) not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ShapeError(f"{name} must be {want}, got shape {shape}; squeeze or slice it first")
    if min(shape) < 1:
        raise ShapeError(f"{name} is empty (shape {shape})")


def as_labels(labels: object, *, ndims: Sequence[int] = (2, 3), name: str = "labels", hint: str | None = None) -> np.ndarray:
    """Return ``labels`` as an integer ndarray after checking dtype, rank and values.

    Accepts numpy arrays, array-likes and torch tensors; bool is read as 0/1. ``hint``
    replaces the advice given for a non-integer dtype.
    """
    arr = to_numpy(labels)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(
            f"{name} must be an integer label array (phases 0..P-1), got dtype {arr.dtype}; "
            + (hint or "segment the image first or cast with .astype(np.uint8)")
        )
    check_spatial(arr.shape, ndims=ndims, name=name)
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        raise InputError(f"{name} contains negative label {int(arr.min())}; phases must be 0..P-1")
    return arr


def check_phase(phase: object) -> int:
    """A phase label: a non-negative integer."""
    if isinstance(phase, bool) or not isinstance(phase, numbers.Integral) or phase < 0:
        raise InputError(f"phase must be a non-negative integer label, got {phase!r}")
    return int(phase)


def check_axis(axis: object, ndim: int) -> int:
    """An axis index in ``range(-ndim, ndim)``, returned as a non-negative int."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        raise InputError(f"axis must be an integer in [{-ndim}, {ndim - 1}] for a {ndim}-D array, got {axis!r}")
    return int(axis) % ndim


def check_voxel_size(voxel_size: object) -> float:
    """A positive, finite voxel edge length."""
    try:
        value = float(voxel_size)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"voxel_size must be a positive number, got {voxel_size!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"voxel_size must be a positive number, got {voxel_size!r}")
    return value


def check_cutoff(cutoff: object, *, limit: int, default: int) -> int:
    """The largest S2 lag: an integer in ``[0, limit]``; ``None`` gives ``default``."""
    if cutoff is None:
        return default
    if isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Integral) or not 0 <= cutoff <= limit:
        raise InputError(f"cutoff must be an integer in [0, {limit}] for this shape, got {cutoff!r}")
    return int(cutoff)
