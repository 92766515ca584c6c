"""Perimeter-calibrated smoothing of the voxel probabilities before labelling (ours).

Why: the three axes' decoded probabilities agree on the large features but not at the
voxel scale; where they disagree the averaged probability sits near the decision
threshold and the argmax turns it into specks and rough boundaries. The VAE round trip of
refinement cannot remove them (the VAE reproduces its input almost losslessly). On the
bundled SOFC model and a Berea model the labelled slices then have more boundary per
area than the training images, and the 3D surface area exceeds the stereological value;
the carbonate model's volumes are smoother than its images and are left alone
(BENCHMARKS.md, "Fidelity levers" and the fine-scale findings).

What: a separable Gaussian filter (voxels, the same along z, y, x) on the per-phase
probabilities (P, Z, Y, X), renormalised and the phase fractions re-matched. The width is
found per volume on the central block (:data:`CALIBRATION_SIDE`) in two stages:

1. one common σ (bracketed regula falsi) so that the mean slice perimeter density L_A of
   the labels (slices normal to z, y and x pooled, phases averaged) equals the training
   images' L_A stored in the model; if the labels are not rougher than the images, σ = 0
   and nothing changes;
2. with three or more phases, one σ per phase (a damped fixed-point iteration from the
   common σ, :data:`PHASE_ITERATIONS` at most) so that each phase's L_A equals its own
   training value: the phases are not equally rough (on the SOFC anode the common width
   left one phase 4 % too smooth and another 3–4 % too rough). With two phases there is
   one interface and the common σ is already per phase.

L_A is a 2D statistic of the training data: for a statistically isotropic material it
fixes the 3D surface area (S_V = 4/π · L_A). Nothing is tuned per material, and nothing
comes from 3D data.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CALIBRATION_SIDE", "MAX_SIGMA", "PHASE_ITERATIONS", "TOLERANCE",
    "blur_per_phase", "blur_probabilities", "calibrate_sigma", "calibrate_sigmas", "central_block", "perimeter_ratio",
    "perimeter_ratios", "smooth_to_perimeter",
]

MAX_SIGMA = 3.0
"""Largest Gaussian width tried, in voxels (the widths the bundled models need are in
BENCHMARKS.md)."""

TOLERANCE = 0.005
"""Calibration stops when the slice perimeter is within 0.5 % of the training images'."""

MAX_EVALUATIONS = 8
"""At most this many trial widths per volume (typically 4-5 are needed)."""

PHASE_ITERATIONS = 8
"""At most this many per-phase updates after the common width (each one blur + labels +
perimeter of the central block)."""

PHASE_GAIN = 3.0
"""Per-phase update σ_p ← σ_p · r_p^PHASE_GAIN, r_p the phase's perimeter ratio: a constant
of the solver (the perimeter falls roughly like σ^(-1/3) near the solution), not of any
material."""

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


def blur_per_phase(probs: torch.Tensor, sigmas: Sequence[float], *, periodic: bool = False) -> torch.Tensor:
    """Each phase's probability blurred with its own width, then renormalised to sum 1."""
    if len(set(float(v) for v in sigmas)) == 1:
        return blur_probabilities(probs, float(sigmas[0]), periodic=periodic)
    out = torch.stack([blur_probabilities(probs[p : p + 1], float(sg), periodic=periodic)[0] for p, sg in enumerate(sigmas)])
    return out / out.sum(0, keepdim=True).clamp_min(1e-12)


def _spaced(n: int, count: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(int))


def perimeter_ratio(labels: np.ndarray, reference: Sequence[float], *, slices_per_axis: int = SLICES_PER_AXIS) -> float:
    """Mean over phases of :func:`perimeter_ratios` (1 if no phase has a reference)."""
    r = perimeter_ratios(labels, reference, slices_per_axis=slices_per_axis)
    r = r[np.isfinite(r)]
    return float(np.mean(r)) if r.size else 1.0


def perimeter_ratios(labels: np.ndarray, reference: Sequence[float], *, slices_per_axis: int = SLICES_PER_AXIS) -> np.ndarray:
    """Per phase: slice perimeter density of ``labels`` / ``reference`` (NaN without a reference).

    ``labels``: uint8 (Z, Y, X); ``reference``: per-phase L_A of the training images
    (1/voxel, the ``"mesh"`` estimator). Slices normal to z, y and x are pooled (at most
    ``slices_per_axis`` evenly spaced ones per axis). Phases with a non-positive reference
    are skipped.
    """
    from microlad.descriptors import slice_perimeter_density

    ratios = np.full(len(reference), np.nan)
    for p, ref in enumerate(reference):
        if not ref or ref <= 0:
            continue
        per_axis = []
        for axis in range(3):
            idx = _spaced(labels.shape[axis], slices_per_axis)
            per_axis.append(slice_perimeter_density(np.take(labels, idx, axis=axis), phase=p, axis=axis))
        ratios[p] = float(np.mean(per_axis)) / float(ref)
    return ratios


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


def calibrate_sigmas(
    probs: torch.Tensor,
    reference: Sequence[float],
    label: Callable[[torch.Tensor], torch.Tensor],
    *,
    periodic: bool = False,
    max_sigma: float = MAX_SIGMA,
    tolerance: float = TOLERANCE,
    iterations: int = PHASE_ITERATIONS,
) -> tuple[float, ...]:
    """Per-phase widths (voxels) at which each phase's labels have its training L_A.

    Starts from the common width of :func:`calibrate_sigma` (returned for every phase when
    it is 0, with fewer than three phases, or when no update improves on it); then
    ``σ_p ← σ_p · r_p^PHASE_GAIN`` (r_p: the phase's perimeter ratio, widths kept in
    [0, ``max_sigma``]) until every |r_p − 1| ≤ ``tolerance`` or ``iterations`` updates.
    Returns the widths whose largest |r_p − 1| was smallest.
    """
    p = probs.shape[0]
    common = calibrate_sigma(probs, reference, label, periodic=periodic, max_sigma=max_sigma, tolerance=tolerance)
    if common <= 0.0 or p < 3:
        return (common,) * p
    sig = np.full(p, max(common, 1e-3))
    best: tuple[float, np.ndarray] | None = None
    for _ in range(iterations + 1):
        lab = label(blur_per_phase(probs, sig, periodic=periodic)).argmax(0).to(torch.uint8).cpu().numpy()
        r = perimeter_ratios(lab, reference)
        err = float(np.nanmax(np.abs(r - 1.0)))
        if best is None or err < best[0]:
            best = (err, sig.copy())
        if err <= tolerance:
            break
        sig = np.clip(sig * np.where(np.isfinite(r), r, 1.0) ** PHASE_GAIN, 0.0, max_sigma)
    return tuple(float(v) for v in best[1])


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
    sigma: float | Sequence[float] | None = None,
    periodic: bool = False,
) -> tuple[torch.Tensor, tuple[float, ...]]:
    """Blur ``probs`` (P, Z, Y, X) so its labels have the training slice perimeter per phase.

    ``reference``: per-phase L_A of the training images (None: nothing to match, returns
    ``probs`` unchanged with σ = 0). ``label``: see :func:`calibrate_sigma` (default:
    identity). ``sigma``: use these widths (one, or one per phase) instead of calibrating
    (guidance keeps the widths of its start volume so the rendering of latents to labels
    stays fixed during a run). The widths are calibrated on the central block
    (:data:`CALIBRATION_SIDE`) of large volumes (:func:`calibrate_sigmas`).
    Returns ``(label(blurred probs), per-phase widths)``.
    """
    label = label or (lambda q: q)
    p = probs.shape[0]
    if sigma is None:
        if reference is None:
            return label(probs), (0.0,) * p
        block = central_block(probs)
        sigmas = calibrate_sigmas(block, reference, label, periodic=periodic and block.shape == probs.shape)
    else:
        sigmas = tuple(float(v) for v in np.broadcast_to(np.asarray(sigma, dtype=float), (p,)))
    if all(v <= 0.0 for v in sigmas):
        return label(probs), sigmas
    return label(blur_per_phase(probs, sigmas, periodic=periodic)), sigmas
