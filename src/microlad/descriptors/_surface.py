"""Specific surface area (interface area per unit total volume), numpy estimators.

Three estimators of the area of the interface between one phase and the rest, all
divided by the TOTAL image volume (N voxels * voxel_size**d) and all non-periodic: the
image border is never counted as interface, only interfaces inside the image.

``"mesh"`` (default, the report estimator)
    3-D: ``skimage.measure.marching_cubes`` of the binary indicator at level 0.5, area by
    ``skimage.measure.mesh_surface_area``. 2-D: total length of the
    ``skimage.measure.find_contours`` (marching squares) polylines at level 0.5.
    Known bias: on voxelised smooth shapes it overestimates (the usual staircase bias of
    binary marching cubes; figures in BENCHMARKS.md, "Design measurements").
``"gradient"`` (identical to :func:`microlad.descriptors.torch.specific_surface_area`)
    Total variation of the indicator, ``sum |grad u|`` over the dual-grid cells (the
    cubes of 2x2x2 voxel centres that marching cubes works on), with grad u the
    gradient of the (tri)linear interpolant at the cell centre (mean of the cell's
    forward differences along each axis), times a calibration factor. By the coarea
    formula this is the marching-cubes area averaged over iso-levels, so it is smooth in
    soft probabilities and close to ``"mesh"``. Calibration: the factor
    (``GRADIENT_CALIBRATION``: 1.036 in 3-D, 1.0 in 2-D) is the median ratio mesh / raw
    gradient on real 3-D and 2-D crops (BENCHMARKS.md, "Design measurements").
``"faces"``
    Cauchy-Crofton face count: the number of voxel faces between the phase and the rest
    times 2/3 (3-D) or pi/4 (2-D), unbiased for isotropic interfaces, but below
    ``"mesh"`` on rough real data (BENCHMARKS.md, "Design measurements").
"""
from __future__ import annotations

import numpy as np

from microlad.descriptors._validate import as_labels, check_phase, check_voxel_size
from microlad.errors import InputError, ShapeError

__all__ = ["specific_surface_area", "marching_squares_length", "SSA_METHODS", "GRADIENT_CALIBRATION", "FACE_FACTOR"]

SSA_METHODS = ("mesh", "gradient", "faces")

#: Factor applied to the dual-cell total variation so that ``"gradient"`` (and the torch
#: estimator) matches ``"mesh"`` on real data, by number of spatial dimensions.
GRADIENT_CALIBRATION = {2: 1.0, 3: 1.036}

#: Stereological (Cauchy-Crofton) factor for isotropic interfaces: mean of
#: |n_x| + |n_y| (+ |n_z|) over random unit normals is 4/pi (3/2).
FACE_FACTOR = {2: np.pi / 4.0, 3: 2.0 / 3.0}

# Smoothing of |g| near 0 (keeps the torch gradient finite); negligible on real data.
_TV_EPS = 1e-6


def cell_gradients(u: np.ndarray) -> list[np.ndarray]:
    """Gradient of the (tri)linear interpolant at each dual-cell centre, one array per axis."""
    nd = u.ndim
    grads = []
    for a in range(nd):
        g = np.diff(u, axis=a)
        for b in range(nd):
            if b != a:
                lo = tuple(slice(0, -1) if i == b else slice(None) for i in range(nd))
                hi = tuple(slice(1, None) if i == b else slice(None) for i in range(nd))
                g = 0.5 * (g[lo] + g[hi])
        grads.append(g)
    return grads


# 3-D marching cubes runs on slabs of about this many voxels (bounded memory for large
# volumes); consecutive slabs share one slice, so every dual cube is meshed exactly once
_MESH_SLAB_VOXELS = 1 << 23


def _mesh_area(mask: np.ndarray) -> float:
    from skimage import measure

    if mask.all() or not mask.any():
        return 0.0
    if mask.ndim == 3:
        step = max(1, _MESH_SLAB_VOXELS // (mask.shape[1] * mask.shape[2]))
        area = 0.0
        for z0 in range(0, mask.shape[0] - 1, step):
            slab = mask[z0 : z0 + step + 1]
            if slab.all() or not slab.any():
                continue
            verts, faces, _, _ = measure.marching_cubes(slab.astype(np.float32), level=0.5)
            area += float(measure.mesh_surface_area(verts, faces))
        return area
    return marching_squares_length(mask)


# Marching squares on a binary field at level 0.5 puts every contour vertex on an edge
# midpoint, so each 2x2 cell contributes a fixed length by its corner pattern (bit 1: top
# left, 2: top right, 4: bottom right, 8: bottom left): a corner cut is sqrt(1/2), a
# straight cut 1, a saddle two corner cuts. Summing this table over the cells gives exactly
# the length of skimage.measure.find_contours(mask, 0.5) (tested), vectorised over slices.
_H = float(np.sqrt(0.5))
_SQUARE_LENGTH = np.array([0, _H, _H, 1, _H, 2 * _H, 1, _H, _H, 1, 2 * _H, _H, 1, _H, _H, 0], dtype=np.float64)


def marching_squares_length(mask: np.ndarray) -> float:
    """Total marching-squares contour length (pixels) of binary ``mask`` (..., H, W).

    Leading axes are a stack of 2-D images whose lengths are summed; image borders are
    not contour (as :func:`skimage.measure.find_contours`).
    """
    m = np.asarray(mask, dtype=np.uint8)
    code = m[..., :-1, :-1] + 2 * m[..., :-1, 1:] + 4 * m[..., 1:, 1:] + 8 * m[..., 1:, :-1]
    return float(np.bincount(code.ravel(), minlength=16) @ _SQUARE_LENGTH)


def _gradient_area(mask: np.ndarray) -> float:
    u = mask.astype(np.float64)
    norm2 = sum(g * g for g in cell_gradients(u))
    tv = float(np.sum(np.sqrt(norm2 + _TV_EPS**2) - _TV_EPS))
    return GRADIENT_CALIBRATION[mask.ndim] * tv


def _face_area(mask: np.ndarray) -> float:
    count = sum(int(np.count_nonzero(np.diff(mask, axis=a))) for a in range(mask.ndim))
    return FACE_FACTOR[mask.ndim] * count


_ESTIMATORS = {"mesh": _mesh_area, "gradient": _gradient_area, "faces": _face_area}


def specific_surface_area(
    labels: np.ndarray, *, phase: int, voxel_size: float = 1.0, method: str = "mesh"
) -> float:
    """Interface area of one phase per unit total volume.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X) or (Z, Y, X)
        Label image or volume with phases 0..P-1 (each side at least 2 voxels).
    phase : int
        Phase label; its interface with all other phases is measured.
    voxel_size : float, default 1.0
        Edge length of a (cubic) voxel or (square) pixel.
    method : {"mesh", "gradient", "faces"}, default "mesh"
        Estimator, see the module notes of :mod:`microlad.descriptors._surface`:
        marching cubes / marching squares (report estimator), the calibrated
        total-variation estimator used by the torch descriptor, or the Cauchy-Crofton
        face count.

    Returns
    -------
    float
        3-D: interface area / total volume, in 1/voxel_size. 2-D: interface length
        (perimeter) / total area, in 1/voxel_size. The image border is not interface
        (non-periodic); 0 if the phase is absent or fills the image.
    """
    arr = as_labels(labels, ndims=(2, 3))
    if min(arr.shape) < 2:
        raise ShapeError(f"labels must be at least 2 voxels along every axis, got shape {arr.shape}")
    if method not in _ESTIMATORS:
        raise InputError(f"method must be one of {SSA_METHODS}, got {method!r}")
    vs = check_voxel_size(voxel_size)
    mask = arr == check_phase(phase)
    return _ESTIMATORS[method](mask) / (arr.size * vs)
