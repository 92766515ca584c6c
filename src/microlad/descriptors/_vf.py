"""Volume (area) fraction of each phase."""
from __future__ import annotations

import numbers

import numpy as np

from microlad.descriptors._validate import as_labels
from microlad.errors import InputError

__all__ = ["volume_fraction"]


def volume_fraction(labels: np.ndarray, *, n_phases: int | None = None) -> np.ndarray:
    """Fraction of voxels (pixels) holding each phase.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X) or (Z, Y, X)
        Label image with phases ``0..P-1`` (bool is read as 0/1).
    n_phases : int, optional
        Number of phases ``P``; default ``labels.max() + 1``. Phases absent from the
        image get 0.

    Returns
    -------
    ndarray of float64, shape (P,)
        ``vf[p] = count(labels == p) / labels.size``; sums to 1. Dimensionless.

    Raises
    ------
    InputError
        If ``labels`` is not an integer array or holds a label ``>= n_phases``.
    ShapeError
        If ``labels`` is not 2-D or 3-D.
    """
    arr = as_labels(labels)
    top = int(arr.max())
    if n_phases is None:
        n_phases = top + 1
    elif isinstance(n_phases, bool) or not isinstance(n_phases, numbers.Integral) or n_phases < 1:
        raise InputError(f"n_phases must be a positive integer, got {n_phases!r}")
    if top >= n_phases:
        raise InputError(f"labels hold phase {top} but n_phases={n_phases}; pass n_phases={top + 1} or relabel")
    counts = np.bincount(arr.ravel().astype(np.intp, copy=False), minlength=int(n_phases))
    return counts / arr.size
