"""Synthetic microstructures with known statistics, for the demo and for tests.

No real data is bundled in the package; these generators stand in for it offline.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from microlad.errors import InputError

__all__ = ["random_field_labels"]


def random_field_labels(
    shape: Sequence[int],
    *,
    fractions: Sequence[float] = (0.5, 0.5),
    correlation_length: float = 4.0,
    periodic: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Threshold a Gaussian-smoothed white-noise field into phases with given fractions.

    Parameters
    ----------
    shape : (Y, X) or (Z, Y, X).
    fractions : target volume fraction of each phase (normalised to sum 1); phases are
        assigned by quantiles of the field, so realised fractions match to within a voxel.
    correlation_length : Gaussian smoothing sigma in voxels (feature size ~ 2-3 sigma).
    periodic : wrap the smoothing at the borders (statistically periodic field).
    seed : seed of the white noise.

    Returns a uint8 label array with phases 0..P-1.
    """
    f = np.asarray(fractions, dtype=float)
    if f.ndim != 1 or len(f) < 2 or np.any(f <= 0):
        raise InputError(f"fractions must be two or more positive numbers, got {list(fractions)}")
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise InputError(f"shape must be 2D or 3D with positive sides, got {tuple(shape)}")
    f = f / f.sum()
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(tuple(shape)), correlation_length, mode="wrap" if periodic else "reflect")
    edges = np.quantile(field, np.cumsum(f)[:-1])
    return np.digitize(field, edges).astype(np.uint8)
