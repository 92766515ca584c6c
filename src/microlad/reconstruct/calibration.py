"""Per-model calibration of the slice-coupling window of L-MPDD (ours).

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
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["COUPLING_STOP_CANDIDATES", "CouplingCalibration", "calibrate_coupling_stop", "describe_window"]

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
    m = model.size_multiple
    side = int(size or model.patch_size)
    side = max(m, -(-side // m) * m)
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
