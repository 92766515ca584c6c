"""Slice perimeter density and the stereological surface area it implies.

The perimeter of a 2-D slice is the interface length of one phase measured by
:func:`microlad.descriptors.specific_surface_area` on that slice (marching squares,
``"mesh"``, the estimator the model's training statistics store), so the training
images, the slices of generated volumes and the 3-D surface area share one definition.
"""
from __future__ import annotations

import numpy as np

from microlad.descriptors._surface import marching_squares_length, specific_surface_area
from microlad.errors import ShapeError
from microlad.descriptors._validate import as_labels, check_axis, check_phase, check_voxel_size

__all__ = ["slice_perimeter_density", "stereological_surface_area"]


def slice_perimeter_density(
    labels: np.ndarray, *, phase: int, axis: int = 0, voxel_size: float = 1.0, method: str = "mesh"
) -> float:
    """Interface length per unit area L_A of the 2-D slices normal to ``axis``.

    Parameters
    ----------
    labels : ndarray of int, shape (Z, Y, X) or (Y, X)
        Label volume (its slices normal to ``axis`` are measured) or one 2-D image
        (``axis`` is ignored).
    phase : int
        Phase label whose boundary with the other phases is measured.
    axis : int, default 0
        Axis normal to the slices (0 = z: the (Y, X) slices).
    voxel_size : float, default 1.0
        Edge length of a voxel.
    method : str, default "mesh"
        Estimator of :func:`specific_surface_area` (2-D): ``"mesh"`` (marching squares)
        or ``"faces"`` (Cauchy-Crofton pixel-edge count), ``"gradient"``.

    Returns
    -------
    float
        Total boundary length of all slices divided by their total area, in
        1/voxel_size. Slice borders are not boundary (non-periodic).
    """
    arr = as_labels(labels, ndims=(2, 3))
    check_phase(phase)
    vs = check_voxel_size(voxel_size)
    if arr.ndim == 2:
        return specific_surface_area(arr, phase=phase, voxel_size=vs, method=method)
    stack = np.moveaxis(arr, check_axis(axis, 3), 0)
    if method == "mesh":  # vectorised over the slices; the same length as per-slice marching squares
        if min(stack.shape[1:]) < 2:
            raise ShapeError(f"slices must be at least 2 pixels along each side, got {stack.shape[1:]}")
        return marching_squares_length(stack == phase) / (stack.size * vs)
    # every slice has the same area, so the mean of the per-slice densities is the ratio of totals
    return float(np.mean([specific_surface_area(s, phase=phase, voxel_size=vs, method=method) for s in stack]))


def stereological_surface_area(perimeter_density: float | np.ndarray) -> float | np.ndarray:
    """Surface area per unit volume S_V implied by the slice perimeter density L_A.

    ``S_V = 4/π · L_A``, exact in expectation for isotropic, uniformly random sections
    (Saltykov; e.g. Underwood, *Quantitative Stereology*, 1970). Units: those of L_A
    (1/length). Arrays are converted elementwise.
    """
    out = 4.0 / np.pi * np.asarray(perimeter_density, dtype=np.float64)
    return float(out) if out.ndim == 0 else out
