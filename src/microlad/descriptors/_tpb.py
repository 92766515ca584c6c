"""Triple-phase boundary (TPB) density of three-phase images."""
from __future__ import annotations

import numpy as np

from microlad.descriptors._validate import as_labels, check_voxel_size
from microlad.errors import InputError

__all__ = ["triple_phase_boundary_density"]


def _all_three(blocks: list[np.ndarray]) -> np.ndarray:
    """Per block (given as its 4 corner label arrays): do phases 0, 1 and 2 all occur?"""
    present = [np.logical_or.reduce([b == p for b in blocks]) for p in range(3)]
    return present[0] & present[1] & present[2]


def _corners(arr: np.ndarray, axes: tuple[int, int]) -> list[np.ndarray]:
    """The four arrays of a 2x2 neighbourhood spanning ``axes``."""
    out = []
    for s0 in (slice(0, -1), slice(1, None)):
        for s1 in (slice(0, -1), slice(1, None)):
            idx = [slice(None)] * arr.ndim
            idx[axes[0]], idx[axes[1]] = s0, s1
            out.append(arr[tuple(idx)])
    return out


def triple_phase_boundary_density(labels: np.ndarray, *, voxel_size: float = 1.0) -> float:
    """Length of triple-phase lines per unit total volume (voxel-edge method).

    Parameters
    ----------
    labels : ndarray of int, shape (Z, Y, X) or (Y, X)
        Label image whose values are all in {0, 1, 2}.
    voxel_size : float, default 1.0
        Edge length of a cubic voxel (square pixel).

    Returns
    -------
    float
        3-D: every edge of the voxel grid inside the volume is shared by 4 voxels (a 2x2
        block in the plane normal to the edge); it is a TPB edge if those 4 voxels hold
        all three phases. Density = count * voxel_size / (N * voxel_size**3), units
        1/voxel_size**2. 2-D: TPB points (grid vertices whose 2x2 pixels hold all three
        phases) per unit area, count / (N * voxel_size**2), same units. Edges on the
        image border are not counted (non-periodic). 0 if a phase is absent.

    Raises
    ------
    InputError
        If a label is outside {0, 1, 2} (TPB needs exactly three phases).
    ShapeError
        If ``labels`` is not 2-D or 3-D.
    """
    arr = as_labels(labels, ndims=(2, 3))
    vs = check_voxel_size(voxel_size)
    top = int(arr.max())
    if top > 2:
        raise InputError(
            f"triple-phase boundary needs exactly 3 phases (labels 0, 1, 2), got labels up to {top}"
        )
    if arr.ndim == 2:
        count = int(np.count_nonzero(_all_three(_corners(arr, (0, 1)))))
        return count / (arr.size * vs**2)
    # Edges along axis a: 2x2 blocks in the plane of the other two axes.
    count = sum(
        int(np.count_nonzero(_all_three(_corners(arr, plane)))) for plane in ((1, 2), (0, 2), (0, 1))
    )
    return count * vs / (arr.size * vs**3)
