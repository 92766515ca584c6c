"""Clusters (connected components) of one phase: in 2-D slices and isolated in 3-D, and
the Euler characteristic (components − tunnels + cavities) that sums up its topology.

Connectivity is face connectivity everywhere (4-neighbourhood in 2-D, 6 in 3-D), as in
:func:`microlad.descriptors.percolation`; nothing is periodic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microlad.descriptors._validate import as_labels, check_axis, check_phase, check_voxel_size

__all__ = ["SliceClusters", "slice_clusters", "isolated_cluster_density", "euler_characteristic_density"]


@dataclass(frozen=True)
class SliceClusters:
    """Result of :func:`slice_clusters`.

    Attributes
    ----------
    n_clusters : int
        Number of clusters, summed over all slices.
    density : float
        Clusters per unit slice area (1/voxel_size²): ``n_clusters / total slice area``.
    mean_area : float
        Mean cluster area in voxel_size² (0 if the phase is absent).
    weighted_area : float
        Area-weighted mean cluster area Σa² / Σa in voxel_size²: the mean area of the cluster
        a random pixel of the phase lies in (0 if the phase is absent). Unlike
        ``mean_area`` (= fraction / density) it sees how the phase is split: one large
        section and many specks give a small mean but a large weighted area. It depends on
        the slice size (clusters are cut at the borders): compare slices of equal size.
    """

    n_clusters: int
    density: float
    mean_area: float
    weighted_area: float = 0.0


def slice_clusters(labels: np.ndarray, *, phase: int, axis: int = 0, voxel_size: float = 1.0) -> SliceClusters:
    """Number and mean size of a phase's clusters in the 2-D slices normal to ``axis``.

    Parameters
    ----------
    labels : ndarray of int, shape (Z, Y, X) or (Y, X)
        Label volume (its slices normal to ``axis``) or one 2-D image (``axis`` ignored).
    phase : int
        Phase label.
    axis : int, default 0
        Axis normal to the slices (0 = z).
    voxel_size : float, default 1.0
        Edge length of a voxel.

    Returns
    -------
    SliceClusters
        Clusters are 4-connected within each slice; a cluster cut by the slice border
        counts once per slice (non-periodic).
    """
    arr = as_labels(labels, ndims=(2, 3))
    vs = check_voxel_size(voxel_size)
    mask = arr == check_phase(phase)
    stack = mask[None] if mask.ndim == 2 else np.moveaxis(mask, check_axis(axis, 3), 0)
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)  # no links between slices
    lab, n = ndimage.label(stack, structure=structure)
    area = stack[0].size * stack.shape[0] * vs**2
    filled = int(np.count_nonzero(stack))
    sizes = np.bincount(lab.ravel())[1:].astype(np.float64)
    weighted = float((sizes * sizes).sum() / filled) * vs**2 if filled else 0.0
    return SliceClusters(n_clusters=int(n), density=n / area, mean_area=(filled * vs**2 / n) if n else 0.0,
                         weighted_area=weighted)


def isolated_cluster_density(labels: np.ndarray, *, phase: int, voxel_size: float = 1.0) -> float:
    """Number of isolated clusters of a phase per unit volume.

    A cluster (6-connected in 3-D, 4-connected in 2-D) is isolated when it touches none
    of the faces (edges) of the box: it is fully enclosed by the other phases inside the
    sample, so it cannot connect to anything outside. Returns the count divided by the
    total volume (area), in 1/voxel_size³ (1/voxel_size² in 2-D).
    """
    arr = as_labels(labels, ndims=(2, 3))
    vs = check_voxel_size(voxel_size)
    mask = arr == check_phase(phase)
    from scipy import ndimage

    clusters, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(arr.ndim, 1))
    on_border = set()
    for ax in range(arr.ndim):
        for end in (0, -1):
            on_border.update(np.unique(np.take(clusters, end, axis=ax)).tolist())
    on_border.discard(0)
    return (n - len(on_border)) / (arr.size * vs**arr.ndim)


def euler_characteristic_density(labels: np.ndarray, *, phase: int, voxel_size: float = 1.0) -> float:
    """Euler characteristic of a phase per unit volume (area).

    In 3-D, χ = components − tunnels (independent loops, handles) + enclosed cavities of
    the phase, 6-connected (the phase's complement 26-connected), counted by
    :func:`skimage.measure.euler_number` inside the box (the region outside the box counts
    as not-phase, so clusters cut by a face count as they are cut). A ball: 1; a ring: 0; a
    hollow shell: 2. Negative: a network with more loops than pieces, as the pore space of
    a permeable rock; positive: mostly separate pieces. In 2-D (4-connected): clusters −
    holes. Returns χ divided by the total volume, in 1/voxel_size³ (1/voxel_size² in 2-D).

    Unlike volume fraction, S2 and surface area, the 3-D value is not a section statistic:
    no stereological relation gives it from 2-D slices (it takes pairs of adjacent
    sections). Compare it only between boxes of the same shape (the face cuts scale with
    the box's surface).
    """
    arr = as_labels(labels, ndims=(2, 3))
    vs = check_voxel_size(voxel_size)
    mask = arr == check_phase(phase)
    from skimage.measure import euler_number

    chi = euler_number(mask, connectivity=1) if mask.any() else 0
    return float(chi) / (arr.size * vs**arr.ndim)
