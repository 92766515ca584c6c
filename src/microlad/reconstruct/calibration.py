"""Per-model calibration of sampling settings (ours): the slice-coupling window of L-MPDD
and the sampler of the 2D prior.

Coupling window
---------------

The slice coupling (:mod:`microlad.reconstruct.coupling`) makes the volume's correlation
isotropic. Its strength is fixed by the σ grid's overshoot, and how much overshoot a
material needs differs: on some materials coupling every step gives the training images'
S2; on materials with features a few voxels wide it makes every feature too large and
coupling only the high-noise steps is right (measurements: BENCHMARKS.md, "Fine scale").

The coarse 3D layout forms at high noise, the fine texture at low noise, so the window is
one number: the coupling runs at the steps with timestep t >= ``coupling_stop`` · T. This
module picks it per model from the model's own training statistics (2D data only):

1. reconstruct ``n`` volumes of side ``size`` for every candidate stop, with the same seeds
   (the trajectories are identical above the highest stop, so the comparison is paired)
   and every other default;
2. score each by the paper's S2 error against the training images' stored S2 (the sum of
   S2(r) up to the stored cutoff; slices along z, y and x pooled, volumes averaged), the
   largest over phases;
3. keep the candidate with the smallest score (ties: the earliest in ``candidates``).

``microlad train`` runs it at the end of training and stores the result in the model's
``config.json`` (``config.reconstruct``); :func:`microlad.reconstruct.reconstruct` and
guidance use the stored value unless told otherwise. Models without one couple every step
(the behaviour before this calibration existed).

2D prior sampler
----------------
How closely decoded 2D samples of the prior reproduce the training images at the finest
scale depends on the sampler and its step count, and not the same way on every model: on
the bundled SOFC model DPM-Solver++(2M) with 50 steps gives the images' slice perimeter
(DDIM 50: 3–4 % too much boundary); on the carbonate model DDIM 25's truncation error
cancels a pore-S2 bias that DPM-Solver 50 lays bare (BENCHMARKS.md, fine-scale findings).
:func:`calibrate_prior_sampler` draws ``n`` samples (same seed, so the same initial noise)
with every candidate in :data:`PRIOR_SAMPLER_CANDIDATES`, scores each by the worst phase of

    max(|L_A / L_A,train − 1| / 3 %,  max_{1 <= r <= 8} |Δρ(r)| · (1 − φ_train) / 2 %)

(slice perimeter density and the small-r two-point correlation against the stored training
statistics, each in units of issue #11's tolerance, so 1 means "at the tolerance") and
keeps the smallest (ties: the earlier candidate). ρ(r) = (S2(r) − φ²) / (φ − φ²) is S2 with
the phase fraction φ of the sample set itself taken out; Δρ · (1 − φ_train) is its change in
units of S2(0). S2 itself would not do: a set of 128 SOFC samples has phase fractions off
the images' by ~0.01 by chance, which alone moves S2(r <= 8) by ~3 % of S2(0), the same for
every candidate (same noise) and larger than the differences between samplers. ``microlad train`` stores the choice in
``config.json`` (``config.prior_sampler``); :meth:`~microlad.model.MicroladModel.sample_2d`
uses it when no sampler is given. L-MPDD keeps DDIM: DPM-Solver is no better there.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["COUPLING_STOP_CANDIDATES", "CouplingCalibration", "calibrate_coupling_stop", "describe_window",
           "PRIOR_SAMPLER_CANDIDATES", "PriorSamplerCalibration", "calibrate_prior_sampler", "prior_sampler_score"]

COUPLING_STOP_CANDIDATES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Stops tried, as fractions of the training timesteps (0: couple every step; 1: no step,
the paper's plain L-MPDD)."""


@dataclass(frozen=True)
class CouplingCalibration:
    """Result of :func:`calibrate_coupling_stop`.

    ``coupling_stop``: the chosen stop; ``scores``: candidate → largest per-phase S2 error
    (fraction, not %); ``n``, ``size``, ``seed``: the volumes scored; ``seconds``: wall time.
    """

    coupling_stop: float
    scores: dict[float, float] = field(default_factory=dict)
    n: int = 0
    size: int = 0
    seed: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """The JSON layout stored under ``config.reconstruct``."""
        return {"coupling_stop": self.coupling_stop,
                "coupling_calibration": {"scores": {f"{k:g}": round(v, 6) for k, v in self.scores.items()},
                                         "n": self.n, "size": self.size, "seed": self.seed,
                                         "seconds": round(self.seconds, 1),
                                         "score": "largest per-phase paper S2 error vs the training statistics"}}


def _scoring_side(model, size: int | None) -> int:
    """Side of the calibration samples: ``size`` or the training patch size, rounded up to the
    model's size multiple."""
    m = model.size_multiple
    return max(m, -(-int(size or model.patch_size) // m) * m)


def describe_window(stop: float) -> str:
    """Words for a coupling stop: "every step", "no step (plain L-MPDD)" or "t >= F·T"."""
    if stop <= 0.0:
        return "every step"
    if stop >= 1.0:
        return "no step (plain L-MPDD)"
    return f"steps at t >= {stop:g}·T"


def _score(volumes: Sequence[np.ndarray], reference: np.ndarray, cutoff: int, periodic: bool) -> float:
    from microlad.descriptors import s2_error, s2_slices

    worst = 0.0
    for p, ref in enumerate(reference):
        if ref.sum() <= 0:  # the phase is absent from the training images: nothing to compare
            continue
        curves = [s2_slices(v, phase=p, axis=a, cutoff=cutoff, periodic=periodic) for v in volumes for a in range(3)]
        worst = max(worst, float(s2_error(np.mean(curves, axis=0), ref)))
    return worst


def calibrate_coupling_stop(
    model,
    *,
    candidates: Sequence[float] = COUPLING_STOP_CANDIDATES,
    n: int = 4,
    size: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> CouplingCalibration | None:
    """Pick ``model``'s coupling stop (see the module notes).

    ``size``: cube side of the scoring volumes (default: the training patch size, rounded
    up to the model's size multiple). Returns None for a model without stored S2
    statistics (nothing to score against). Seeds ``seed … seed + n − 1``; deterministic.
    """
    from microlad.reconstruct.api import reconstruct

    stats = model.training_stats
    if stats.s2_radial_mean is None or stats.s2_cutoff is None:
        return None
    reference = np.asarray(stats.s2_radial_mean, dtype=float)
    side = _scoring_side(model, size)
    cutoff = min(int(stats.s2_cutoff), side // 2, reference.shape[-1] - 1)
    reference = reference[:, : cutoff + 1]
    periodic = bool(stats.s2_periodic)
    t0 = time.perf_counter()
    scores: dict[float, float] = {}
    for stop in candidates:
        recs = reconstruct(model, (side, side, side), n=n, seed=seed, coupling_stop=float(stop), progress=progress)
        scores[float(stop)] = _score([np.asarray(r.labels) for r in recs], reference, cutoff, periodic)
    best = min(scores, key=scores.__getitem__)  # the first of equal scores, in candidate order
    return CouplingCalibration(coupling_stop=best, scores=scores, n=n, size=side, seed=seed,
                               seconds=time.perf_counter() - t0)


# -- the 2D prior's sampler ------------------------------------------------------------------
PRIOR_SAMPLER_CANDIDATES: tuple[tuple[str, int], ...] = (("ddim", 50), ("ddim", 25), ("dpm2m", 50), ("dpm2m", 25))
"""(sampler, steps) tried for the 2D prior; the first is the default of uncalibrated models."""

PRIOR_PERIMETER_TOL = 0.03
"""Slice perimeter tolerance of the score (relative), issue #11's goal for the 2D prior."""
PRIOR_S2_TOL = 0.02
"""Small-r S2 tolerance of the score (fraction of S2(0)), issue #11's goal for the 2D prior."""
PRIOR_S2_RADIUS = 8
"""Largest distance (pixels) of the pointwise S2 comparison."""


@dataclass(frozen=True)
class PriorSamplerCalibration:
    """Result of :func:`calibrate_prior_sampler`.

    ``sampler``, ``steps``: the choice; ``scores``: "sampler:steps" → score (see the module
    notes; 1 = at the tolerance); ``perimeter_error`` / ``s2_error``: per candidate, per
    phase, the signed relative slice-perimeter error and the signed small-r deviation of the
    fraction-free S2 of largest magnitude (fraction of S2(0)); ``fraction_error``: per
    candidate, per phase, the samples' phase fraction minus the training statistics' (not
    scored: at these sample counts it is chance, common to all candidates); ``n``, ``size``, ``seed``: the samples scored;
    ``seconds``: wall time.
    """

    sampler: str
    steps: int
    scores: dict[str, float] = field(default_factory=dict)
    perimeter_error: dict[str, list] = field(default_factory=dict)
    s2_error: dict[str, list] = field(default_factory=dict)
    fraction_error: dict[str, list] = field(default_factory=dict)
    n: int = 0
    size: int = 0
    seed: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """The JSON layout stored under ``config.prior_sampler``."""
        def rounded(d: dict) -> dict:
            return {k: [None if v is None else round(float(v), 5) for v in vals] for k, vals in d.items()}

        return {"sampler": self.sampler, "steps": self.steps,
                "calibration": {"scores": {k: round(v, 4) for k, v in self.scores.items()},
                                "perimeter_error": rounded(self.perimeter_error), "s2_error": rounded(self.s2_error),
                                "fraction_error": rounded(self.fraction_error),
                                "n": self.n, "size": self.size, "seed": self.seed, "seconds": round(self.seconds, 1),
                                "score": f"worst phase of max(|perimeter error| / {PRIOR_PERIMETER_TOL:g}, "
                                         f"max_r<={PRIOR_S2_RADIUS} |d rho(r)| (1 - phi) / {PRIOR_S2_TOL:g}), "
                                         "rho = (S2 - phi^2) / (phi - phi^2), vs the training statistics"}}


def prior_sampler_score(
    labels: np.ndarray, perimeter_ref: Sequence[float], s2_ref: np.ndarray
) -> tuple[float, list, list]:
    """Score 2D samples against training statistics (see the module notes).

    Parameters
    ----------
    labels
        (N, H, W) integer phase labels of the samples.
    perimeter_ref
        Per phase, the training images' slice perimeter density L_A (1/pixel, marching
        squares: the ``specific_surface_area`` the training statistics store).
    s2_ref
        (P, K) the training images' non-periodic radial S2, K > :data:`PRIOR_S2_RADIUS`.

    Returns
    -------
    (score, perimeter_error, s2_error)
        The score (largest over phases, 1 = at the tolerance) and, per phase, the signed
        relative perimeter error and the signed small-r deviation of largest magnitude of
        the fraction-free S2, Δρ(r) · (1 − φ_train) (see the module notes; ``None`` for a
        phase absent from the training statistics).
    """
    from microlad.descriptors import s2_autocorrelation, s2_slices, slice_perimeter_density

    s2_ref = np.asarray(s2_ref, dtype=float)
    r = min(PRIOR_S2_RADIUS, s2_ref.shape[-1] - 1)
    worst, per_err, s2_err = 0.0, [], []
    for p, ref_l in enumerate(perimeter_ref):
        ref_s2 = s2_ref[p, : r + 1]
        if ref_l is None or ref_l <= 0 or ref_s2[0] <= 0:  # absent, or no boundary: nothing to compare
            per_err.append(None)
            s2_err.append(None)
            continue
        e_l = slice_perimeter_density(labels, phase=p, axis=0) / float(ref_l) - 1.0
        s2 = s2_slices(labels, phase=p, axis=0, cutoff=r, periodic=False)  # mean over the samples
        dev = (s2_autocorrelation(s2) - s2_autocorrelation(ref_s2))[1:] * (1.0 - ref_s2[0])
        e_s2 = float(dev[np.abs(dev).argmax()])
        per_err.append(float(e_l))
        s2_err.append(e_s2)
        worst = max(worst, abs(e_l) / PRIOR_PERIMETER_TOL, abs(e_s2) / PRIOR_S2_TOL)
    return worst, per_err, s2_err


def calibrate_prior_sampler(
    model,
    *,
    candidates: Sequence[tuple[str, int]] = PRIOR_SAMPLER_CANDIDATES,
    n: int = 256,
    size: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> PriorSamplerCalibration | None:
    """Pick ``model``'s 2D prior sampler (see the module notes).

    ``n`` samples of side ``size`` (default: the training patch size, rounded up to the
    model's size multiple) per candidate, all from ``seed`` (the same initial noise).
    Returns None for a model without stored perimeter and S2 statistics. Deterministic.
    """
    stats = model.training_stats
    if stats.s2_radial_mean is None or stats.specific_surface_area is None:
        return None
    side = _scoring_side(model, size)
    t0 = time.perf_counter()
    scores: dict[str, float] = {}
    per: dict[str, list] = {}
    s2: dict[str, list] = {}
    frac: dict[str, list] = {}
    from microlad.descriptors import volume_fraction

    ref_vf = np.asarray(stats.s2_radial_mean, dtype=float)[:, 0]  # S2(0) = the patches' phase fractions
    for sampler, steps in candidates:
        key = f"{sampler}:{int(steps)}"
        labels = model.sample_2d(n, size=side, steps=int(steps), sampler=sampler, seed=seed, progress=progress)
        scores[key], per[key], s2[key] = prior_sampler_score(labels, stats.specific_surface_area, stats.s2_radial_mean)
        frac[key] = (volume_fraction(labels, n_phases=len(ref_vf)) - ref_vf).tolist()
    best = min(scores, key=scores.__getitem__)  # the first of equal scores, in candidate order
    sampler, steps = best.split(":")
    return PriorSamplerCalibration(sampler=sampler, steps=int(steps), scores=scores, perimeter_error=per, s2_error=s2,
                                   fraction_error=frac, n=n, size=side, seed=seed, seconds=time.perf_counter() - t0)
