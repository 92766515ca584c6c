"""Percolation (face-connected spanning clusters) of one phase."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microlad.descriptors._validate import as_labels, check_axis, check_phase

__all__ = ["Percolation", "percolation", "percolating_axes", "spanning_pairs"]


@dataclass(frozen=True)
class Percolation:
    """Result of :func:`percolation`.

    Attributes
    ----------
    percolates : bool
        True if at least one cluster of the phase touches both faces normal to the axis.
    spanning_fraction : float
        Fraction of the phase's voxels that lie in such spanning clusters (0 if the
        phase is absent).
    """

    percolates: bool
    spanning_fraction: float


def percolation(labels: np.ndarray, *, phase: int, axis: int) -> Percolation:
    """Does a phase connect the two opposite faces normal to ``axis``?

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X) or (Z, Y, X)
        Label image or volume with phases 0..P-1.
    phase : int
        Phase label whose clusters are analysed.
    axis : int
        Transport axis (for a volume 0 = z, 1 = y, 2 = x); the faces are the first and
        last slices normal to it.

    Returns
    -------
    Percolation
        Clusters are face connected (6-neighbourhood in 3-D, 4-neighbourhood in 2-D,
        ``scipy.ndimage.label``); not periodic.
    """
    arr = as_labels(labels, ndims=(2, 3))
    ax = check_axis(axis, arr.ndim)
    mask = arr == check_phase(phase)
    total = int(np.count_nonzero(mask))
    if total == 0:
        return Percolation(percolates=False, spanning_fraction=0.0)
    from scipy import ndimage  # deferred: importing scipy.ndimage is slow

    structure = ndimage.generate_binary_structure(arr.ndim, 1)
    clusters, _ = ndimage.label(mask, structure=structure)
    spanning = _spanning_clusters(clusters, ax)
    if spanning.size == 0:
        return Percolation(percolates=False, spanning_fraction=0.0)
    n_spanning = int(np.bincount(clusters.ravel())[spanning].sum())
    return Percolation(percolates=True, spanning_fraction=n_spanning / total)


def percolating_axes(labels: np.ndarray, *, phase: int) -> tuple[bool, ...]:
    """For each axis, whether ``phase`` connects the two faces normal to it.

    The same definition as :func:`percolation` (face-connected clusters, not periodic),
    with one cluster labelling for all axes. ``labels``: (Y, X) or (Z, Y, X); returns one
    bool per axis, in axis order (z, y, x for a volume)."""
    arr = as_labels(labels, ndims=(2, 3))
    mask = arr == check_phase(phase)
    if not mask.any():
        return (False,) * arr.ndim
    from scipy import ndimage  # deferred: importing scipy.ndimage is slow

    clusters, _ = ndimage.label(mask, structure=ndimage.generate_binary_structure(arr.ndim, 1))
    return tuple(bool(_spanning_clusters(clusters, ax).size) for ax in range(arr.ndim))


def spanning_pairs(labels: np.ndarray, phases) -> frozenset[tuple[int, int]]:
    """The (phase, axis) pairs, for ``phases``, in which the phase connects the two faces
    normal to the axis (:func:`percolating_axes` per phase)."""
    return frozenset((int(p), a) for p in phases for a, ok in enumerate(percolating_axes(labels, phase=int(p))) if ok)


def _spanning_clusters(clusters: np.ndarray, axis: int) -> np.ndarray:
    """Labels (> 0) of the clusters that touch both faces normal to ``axis``."""
    first = np.unique(np.take(clusters, 0, axis=axis))
    last = np.unique(np.take(clusters, -1, axis=axis))
    return np.intersect1d(first[first > 0], last[last > 0])
