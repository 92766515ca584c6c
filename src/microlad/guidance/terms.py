"""Guidance terms: differentiable values on decoded probabilities, losses, residuals, and
the same quantities measured on finished hard labels with the report's code.

Every term sees categorical phases: the probabilities pass through a straight-through
one-hot (:func:`~microlad.descriptors.torch.straight_through_onehot`), so the forward
value is the descriptor of hard labels and the gradient is that of the soft
probabilities. Values, by kind (surrogate inputs from :mod:`microlad.guidance.surrogate`):

* ``vf``: mean of the phase's hard mask over the decoded cell planes.
* ``sa``: 2D calibrated total-variation boundary length per area L_A of the cell planes
  (:func:`microlad.descriptors.torch.specific_surface_area`), converted to a 3D area per
  volume by stereology, S_V = 4/π · L_A (isotropic media, METHOD.md §8). The residual
  offset from the report's marching-cubes estimator on the final labels is calibrated
  out in the loop.
* ``s2``: radial S2 of the planes (the paper's slice metric), per phase, against the
  target curve; loss = mean squared difference / S2(0)².
* ``deff`` / ``tau``: 3D D_eff/D_bulk of the soft-floored field D = ε + (1 − ε)·mask
  (ε = :data:`D_FLOOR`) of the whole volume along the axis, through the adjoint solver
  (:func:`microlad.physics.effective_diffusivity`); τ = VF / D_eff.
* ``deff2d``: mean 2D D_eff of the planes that contain the transport axis (a step that
  slices along the transport axis itself reuses the term's last gradient).

Losses: VF squared error; SA, D_eff, τ squared log-ratio; the loss only sets the
gradient's direction (:mod:`microlad.guidance.balance` sets its size). The residual in
tolerance units, ``ρ = |value − target| / (TOLERANCE · scale)``, drives the balancing
taper; ``TOLERANCE`` is half the acceptance tolerance of each kind (absolute for VF,
relative otherwise; for S2 the paper's relative error of Σ_r S2(r)).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from microlad import descriptors as nd
from microlad.descriptors import torch as td
from microlad.guidance.surrogate import in_plane_axes
from microlad.guidance.targets import Target

__all__ = ["D_FLOOR", "TOLERANCE", "TermState", "slice_value", "volume_value", "loss_of", "residual_of", "measured_residual",
           "measure", "s2_report"]

D_FLOOR = 1e-3
"""Diffusivity given to voxels outside the conducting phase (keeps the operator SPD)."""

TOLERANCE = {"vf": 0.005, "sa": 0.025, "s2": 0.005, "deff": 0.05, "tau": 0.05, "deff2d": 0.05}
"""Balancing knee per kind: absolute for vf, relative for the others."""

SOLVER_RTOL = 1e-5
"""Relative residual of the AMG-PCG solves inside the loop."""

S2_POINTWISE_RMAX = 8
"""The pointwise S2 error is reported for lags r <= this (voxels)."""


@dataclass
class TermState:
    """Mutable per-term bookkeeping in the loop.

    target : the user's target. curve : (P_t, K) S2 target curves (s2 only).
    offset : surrogate − achieved measured at the last calibration (additive for vf and
        s2, a ratio for the others); the surrogate is steered to target ∘ offset. For s2
        it is kept per slicing axis and in-cell plane offset, (3, n_offsets, P_t, K): the
        finished volume's slice S2 is off the surrogate's differently along each axis (the
        paper's metric takes the worst axis), and interpolated planes read differently
        from the latent planes.
    weight : user weight. last_* : the latest surrogate value, loss gradient and residual.
    warm_start : a volume term's :class:`microlad.physics.WarmStart` (its solver starts
        from the last solution; created on the first solve).
    """

    target: Target
    weight: float = 1.0
    curve: torch.Tensor | None = None
    phases: tuple[int, ...] = ()
    offset: float | torch.Tensor | None = None
    last_value: float = float("nan")
    last_residual: float = float("nan")
    last_grad: torch.Tensor | None = None
    last_grad_norm: float = float("nan")
    warm_start: object | None = None  # microlad.physics.WarmStart of a volume term (its last solution)

    @property
    def is_volume(self) -> bool:
        return self.target.kind in ("deff", "tau")

    def surrogate_target(self, axis: int | None = None, plane: int | None = None) -> float | torch.Tensor:
        """The target the surrogate is steered to: the user's, corrected by the calibration
        (for s2, the correction of the planes normal to ``axis`` at in-cell offset ``plane``;
        averaged over what is None)."""
        t = self.target
        if t.kind == "s2":
            if self.offset is None:
                return self.curve
            off = self.offset  # (axis, plane offset, P_t, K)
            off = off.mean(1) if plane is None or off.shape[1] == 1 else off[:, plane]
            return self.curve + (off.mean(0) if axis is None else off[axis])
        v = float(t.value)  # type: ignore[arg-type]
        if self.offset is None:
            return v
        return v + float(self.offset) if t.kind == "vf" else v * float(self.offset)


def _hard(probs: torch.Tensor, dim: int) -> torch.Tensor:
    return td.straight_through_onehot(probs, dim=dim)


def slice_value(term: TermState, probs: torch.Tensor, axis: int) -> torch.Tensor | None:
    """Differentiable value of a slice term from cell planes ``probs`` (N, P, H, W) normal to
    ``axis``; None when the term cannot be read from these planes (deff2d along ``axis``)."""
    t = term.target
    hard = _hard(probs, 1)
    if t.kind == "vf":
        return hard[:, t.phase].mean()
    if t.kind == "sa":
        return td.specific_surface_area(hard[:, t.phase], spatial_dims=2).mean() * (4.0 / math.pi)
    if t.kind == "s2":
        k = term.curve.shape[-1]
        cut = min(k - 1, min(probs.shape[-2:]) // 2)
        curves = [td.s2_radial(hard[:, p], cutoff=cut, periodic=False).mean(0) for p in term.phases]
        return torch.stack(curves)  # (P_t, cut + 1)
    if t.kind == "deff2d":
        plane = in_plane_axes(axis)
        if t.axis not in plane:
            return None
        D = D_FLOOR + (1.0 - D_FLOOR) * hard[:, t.phase]
        from microlad.physics import effective_diffusivity

        return effective_diffusivity(D, axis=plane.index(t.axis), batched=True, rtol=SOLVER_RTOL).mean()
    raise ValueError(f"{t.kind} is not a slice term")


def volume_value(term: TermState, probs: torch.Tensor) -> torch.Tensor:
    """Differentiable D_eff or τ of the phase along the axis from a (P, D, H, W) volume."""
    from microlad.physics import WarmStart, effective_diffusivity

    t = term.target
    mask = _hard(probs, 0)[t.phase]
    if term.warm_start is None:  # each solve starts from the term's last solution
        term.warm_start = WarmStart()
    deff = effective_diffusivity(D_FLOOR + (1.0 - D_FLOOR) * mask, axis=t.axis, rtol=SOLVER_RTOL, warm_start=term.warm_start)
    return deff if t.kind == "deff" else mask.mean() / deff.clamp_min(1e-12)


def _s2_target(term: TermState, value: torch.Tensor, axis: int | None, plane: int | None = None) -> torch.Tensor:
    tgt = term.surrogate_target(axis, plane)
    return tgt[:, : value.shape[-1]]  # type: ignore[index]


def loss_of(term: TermState, value: torch.Tensor, axis: int | None = None, plane: int | None = None) -> torch.Tensor:
    """Scalar loss whose gradient direction the term contributes (``axis``, ``plane``: the
    slicing axis and in-cell offset of the planes a slice term was read from; they select
    the s2 calibration)."""
    kind = term.target.kind
    if kind == "vf":
        return (value - term.surrogate_target()) ** 2
    if kind == "s2":
        tgt = _s2_target(term, value, axis, plane)
        return (((value - tgt) / tgt[:, :1].clamp_min(1e-6)) ** 2).mean()
    tgt = float(term.surrogate_target())
    return (torch.log(value.clamp_min(1e-12)) - math.log(max(tgt, 1e-12))) ** 2


def residual_of(term: TermState, value: torch.Tensor, axis: int | None = None, plane: int | None = None) -> float:
    """|value − target| in units of the kind's :data:`TOLERANCE` (relative except VF)."""
    kind = term.target.kind
    with torch.no_grad():
        if kind == "s2":
            tgt = _s2_target(term, value, axis, plane)
            err = ((value.sum(-1) - tgt.sum(-1)).abs() / tgt.sum(-1).clamp_min(1e-12)).max()
            return float(err) / TOLERANCE["s2"]
        tgt = term.surrogate_target()
        if kind == "vf":
            return abs(float(value) - float(tgt)) / TOLERANCE["vf"]
        return abs(float(value) / max(float(tgt), 1e-12) - 1.0) / TOLERANCE[kind]


def measured_residual(term: TermState, measured: float) -> float:
    """How far a value measured on finished labels (:func:`measure`) is from the user's
    target, in units of the kind's :data:`TOLERANCE` (s2: the measured max error)."""
    t = term.target
    if not np.isfinite(measured):
        return math.inf
    if t.kind == "s2":
        return float(measured) / TOLERANCE["s2"]
    if t.kind == "vf":
        return abs(float(measured) - float(t.value)) / TOLERANCE["vf"]
    return abs(float(measured) / max(float(t.value), 1e-12) - 1.0) / TOLERANCE[t.kind]


def display_value(term: TermState, value: torch.Tensor, axis: int | None = None, plane: int | None = None) -> float:
    """A number for logs and the progress bar (for s2: the max relative error of Σ S2)."""
    if term.target.kind == "s2":
        return residual_of(term, value, axis, plane) * TOLERANCE["s2"]
    return float(value.detach())


# ------------------------------------------------------------------ measurement on labels

def _transport(labels: np.ndarray, phase: int, axis: int) -> tuple[float, float]:
    """(D_eff, τ) with the report's solver tolerances (``microlad properties``)."""
    from microlad.evaluate.properties import TRANSPORT_FLUX_RTOL, TRANSPORT_RTOL
    from microlad.physics import solve_transport

    if not (labels == phase).any():
        return 0.0, math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = solve_transport(labels, phase=phase, axis=axis, rtol=TRANSPORT_RTOL, flux_rtol=TRANSPORT_FLUX_RTOL)
    return float(res.effective_diffusivity), float(res.tortuosity)


def s2_report(labels: np.ndarray, curves: np.ndarray, phases: tuple[int, ...]) -> dict:
    """Paper metric of the slices of ``labels`` against target ``curves`` (P_t, K):
    ``max_error`` = max over phases and axes of |ΣS2_gen − ΣS2_ref| / ΣS2_ref (lags 0..K−1,
    non-periodic), ``max_pointwise`` = max |ΔS2(r)| / S2_ref(0) for r <= 8, and
    ``axis_curves`` (3, P_t, K') the slice S2 per slicing axis and phase (K' <= K: half a side)."""
    k = min(curves.shape[-1], min(labels.shape) // 2 + 1)
    errs, point, per_axis = [], [], []
    r = min(k, S2_POINTWISE_RMAX + 1)
    for row, p in zip(curves, phases):
        ref = row[:k]
        gens = [nd.s2_slices(labels, phase=p, axis=a, cutoff=k - 1, periodic=False) for a in range(3)]
        for gen in gens:
            errs.append(abs(gen.sum() - ref.sum()) / ref.sum())
            point.append(float(np.abs(gen[:r] - ref[:r]).max() / ref[0]))
        per_axis.append(np.stack(gens))
    return {"max_error": float(max(errs)), "max_pointwise": float(max(point)), "axis_curves": np.stack(per_axis, axis=1)}


def measure(term: TermState, labels: np.ndarray) -> float:
    """The term's quantity on hard ``labels`` (Z, Y, X) with the report's functions."""
    t = term.target
    n_phases = max(int(labels.max()) + 1, (t.phase or 0) + 1)
    if t.kind == "vf":
        return float(nd.volume_fraction(labels, n_phases=n_phases)[t.phase])
    if t.kind == "sa":
        return float(nd.specific_surface_area(labels, phase=t.phase))
    if t.kind == "s2":
        return s2_report(labels, term.curve.cpu().numpy(), term.phases)["max_error"]
    if t.kind in ("deff", "tau"):
        deff, tau = _transport(labels, t.phase, t.axis)
        return deff if t.kind == "deff" else tau
    if t.kind == "deff2d":
        vals = []
        for a in range(3):
            plane = in_plane_axes(a)
            if t.axis not in plane:
                continue
            for s in range(0, labels.shape[a], 4):
                sl = np.take(labels, s, axis=a)
                sl = sl if plane[0] < plane[1] else sl.T  # numpy keeps ascending axis order
                vals.append(_transport(sl, t.phase, plane.index(t.axis))[0])
        return float(np.mean(vals))
    raise ValueError(t.kind)
