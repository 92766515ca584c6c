"""Perimeter-calibrated smoothing of the voxel probabilities before labelling (ours).

Why: the three axes' decoded probabilities agree on the large features but not at the
voxel scale; where they disagree the averaged probability sits near the decision
threshold and the argmax turns it into specks and rough boundaries. The VAE round trip of
refinement cannot remove them (the VAE reproduces its input almost losslessly). On the
bundled SOFC model and a Berea model the labelled slices then have more boundary per
area than the training images, and the 3D surface area exceeds the stereological value;
the carbonate model's volumes are smoother than its images and are left alone
(BENCHMARKS.md, "Fidelity levers" and the fine-scale findings).

What: a separable Gaussian filter of width σ (voxels, the same along z, y, x) on the
per-phase probabilities (P, Z, Y, X), the phase fractions re-matched, with σ chosen per
volume (bracketed regula falsi on the central block, :data:`CALIBRATION_SIDE`) so that
the mean slice perimeter density L_A of the labels (slices normal to z, y and x pooled,
phases averaged) equals the training images' L_A stored in the model. This is a 2D
statistic of the training data: for a statistically isotropic material it fixes the 3D
surface area (S_V = 4/π · L_A). Nothing is tuned per material, and nothing comes from 3D
data. If the labels are not rougher than the training images, σ = 0 and nothing changes.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CALIBRATION_SIDE", "MAX_SIGMA", "TOLERANCE",
    "blur_probabilities", "calibrate_sigma", "central_block", "perimeter_ratio", "smooth_to_perimeter",
]

MAX_SIGMA = 3.0
"""Largest Gaussian width tried, in voxels (the widths the bundled models need are in
BENCHMARKS.md)."""

TOLERANCE = 0.005
"""Calibration stops when the slice perimeter is within 0.5 % of the training images'."""

MAX_EVALUATIONS = 8
"""At most this many trial widths per volume (typically 4-5 are needed)."""

CALIBRATION_SIDE = 64
"""σ is calibrated on the central block of at most this many voxels per side, then applied
to the whole volume: a block this size pins σ about as well as the whole volume, at a
fraction of the cost (BENCHMARKS.md, "Design measurements")."""

SLICES_PER_AXIS = 16
"""Slices per axis measured during calibration (evenly spaced)."""


def blur_probabilities(probs: torch.Tensor, sigma: float, *, periodic: bool = False) -> torch.Tensor:
    """Separable Gaussian filter (σ in voxels) of (P, Z, Y, X) probabilities along z, y and x.

    Borders are replicated (``periodic=False``) or wrapped. σ ≤ 0 returns ``probs`` itself.
    Per-voxel sums over phases are preserved (the filter is linear with unit weight).
    """
    if sigma <= 0:
        return probs
    half = max(1, int(3 * sigma + 0.999))
    k = torch.arange(-half, half + 1, dtype=probs.dtype, device=probs.device)
    kernel = torch.exp(-0.5 * (k / sigma) ** 2)
    kernel = kernel / kernel.sum()
    mode = "circular" if periodic else "replicate"
    out = torch.empty_like(probs)
    for p in range(probs.shape[0]):  # one phase at a time bounds the temporaries
        x = probs[p][None, None]  # (1, 1, Z, Y, X)
        for dim in range(3):
            n = x.shape[2 + dim]
            h = min(half, n - 1) if not periodic else min(half, n)
            if h < 1:
                continue
            kk = kernel[half - h: half + h + 1]
            kk = kk / kk.sum()
            pad = [0, 0, 0, 0, 0, 0]
            pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = h
            shape = [1, 1, 1, 1, 1]
            shape[2 + dim] = -1
            x = F.conv3d(F.pad(x, pad, mode=mode), kk.view(shape))
        out[p] = x[0, 0]
    return out


def _spaced(n: int, count: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(int))


def perimeter_ratio(labels: np.ndarray, reference: Sequence[float], *, slices_per_axis: int = SLICES_PER_AXIS) -> float:
    """Mean over phases of (slice perimeter density of ``labels`` / ``reference``).

    ``labels``: uint8 (Z, Y, X); ``reference``: per-phase L_A of the training images
    (1/voxel, the ``"mesh"`` estimator). Slices normal to z, y and x are pooled (at most
    ``slices_per_axis`` evenly spaced ones per axis). Phases with a non-positive reference
    are skipped.
    """
    from microlad.descriptors import slice_perimeter_density

    ratios = []
    for p, ref in enumerate(reference):
        if not ref or ref <= 0:
            continue
        per_axis = []
        for axis in range(3):
            idx = _spaced(labels.shape[axis], slices_per_axis)
            per_axis.append(slice_perimeter_density(np.take(labels, idx, axis=axis), phase=p, axis=axis))
        ratios.append(float(np.mean(per_axis)) / float(ref))
    return float(np.mean(ratios)) if ratios else 1.0


def calibrate_sigma(
    probs: torch.Tensor,
    reference: Sequence[float],
    label: Callable[[torch.Tensor], torch.Tensor],
    *,
    periodic: bool = False,
    max_sigma: float = MAX_SIGMA,
    tolerance: float = TOLERANCE,
    max_evaluations: int = MAX_EVALUATIONS,
) -> float:
    """The σ (voxels) at which the labels of the blurred ``probs`` have the training L_A.

    ``label`` maps (P, Z, Y, X) probabilities to the (P, Z, Y, X) probabilities whose
    argmax is the volume (e.g. fraction matching). Returns 0 if the unblurred labels are
    not rougher than the reference, ``max_sigma`` if even that is too rough. The slice
    perimeter falls monotonically with σ in practice; the root is bracketed and found by
    the Illinois (regula falsi) method to ``|ratio − 1| ≤ tolerance``.
    """
    tried: dict[float, float] = {}

    def excess(sigma: float) -> float:
        lab = label(blur_probabilities(probs, sigma, periodic=periodic)).argmax(0).to(torch.uint8).cpu().numpy()
        tried[sigma] = perimeter_ratio(lab, reference) - 1.0
        return tried[sigma]

    f_lo = excess(0.0)
    if f_lo <= 0.0:
        return 0.0
    lo, hi = 0.0, 1.0
    f_hi = excess(hi)
    while f_hi > 0.0:  # widen the bracket: 1, 2, max_sigma
        if hi >= max_sigma:
            return max_sigma
        lo, f_lo = hi, f_hi
        hi = min(2.0 * hi, max_sigma)
        f_hi = excess(hi)
    side = 0
    while len(tried) < max_evaluations and min(f_lo, -f_hi) > tolerance:
        mid = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        f_mid = excess(mid)
        if f_mid > 0.0:
            lo, f_lo = mid, f_mid
            if side == -1:
                f_hi *= 0.5  # Illinois: halve the stale end's weight
            side = -1
        else:
            hi, f_hi = mid, f_mid
            if side == 1:
                f_lo *= 0.5
            side = 1
    return min(tried, key=lambda k: abs(tried[k]))


def central_block(probs: torch.Tensor, side: int = CALIBRATION_SIDE) -> torch.Tensor:
    """The central block of (P, Z, Y, X) ``probs`` with at most ``side`` voxels per axis (a view)."""
    out = probs
    for dim in (1, 2, 3):
        n = out.shape[dim]
        if n > side:
            out = out.narrow(dim, (n - side) // 2, side)
    return out


def smooth_to_perimeter(
    probs: torch.Tensor,
    reference: Sequence[float] | None,
    label: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    sigma: float | None = None,
    periodic: bool = False,
) -> tuple[torch.Tensor, float]:
    """Blur ``probs`` (P, Z, Y, X) so its labels have the training slice perimeter.

    ``reference``: per-phase L_A of the training images (None: nothing to match, returns
    ``probs`` unchanged with σ = 0). ``label``: see :func:`calibrate_sigma` (default:
    identity). ``sigma``: use this width instead of calibrating (guidance keeps the σ of
    its start volume so the rendering of latents to labels stays fixed during a run).
    σ is calibrated on the central block (:data:`CALIBRATION_SIDE`) of large volumes.
    Returns ``(label(blurred probs), σ)``.
    """
    label = label or (lambda q: q)
    if sigma is None:
        if reference is None:
            return label(probs), 0.0
        block = central_block(probs)
        sigma = calibrate_sigma(block, reference, label, periodic=periodic and block.shape == probs.shape)
    return label(blur_probabilities(probs, sigma, periodic=periodic)), float(sigma)
