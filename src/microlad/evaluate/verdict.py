"""Pass / warn / fail of each metric against the reference's own spread.

Rules (``Δ = mean over volumes - reference mean``, ``σ`` the reference's ``spread``: the std
over its sub-volumes, or over groups of patches worth one volume (see
:mod:`microlad.evaluate.reference`), floored at ``REL_FLOOR · |reference|`` so that a reference with
almost no spread does not fail a 1 % difference, and for the counts ``isolated_cluster_density``
and ``euler_density`` at one per evaluated volume, the resolution of a count):

* spread metrics (VF, perimeter, surface area, clusters, spanning fraction, Euler characteristic, TPB,
  tortuosity, D_eff): pass if ``|Δ| <= Z_PASS σ``, warn if ``<= Z_WARN σ``, else fail;
* ``anisotropy`` (one-sided: only more anisotropic than the reference is bad): the
  same on ``Δ`` instead of ``|Δ|``;
* ``s2_error`` and ``s2_small_r`` (errors of the volumes' mean S2 against the
  reference mean): pass if ``<= τ``, warn if ``<= 2τ``, else fail, with ``τ`` the
  reference's tolerance (:class:`~microlad.evaluate.reference.Reference`);
* ``n/a`` where the reference has no value or no spread (named in the report), ``info``
  for facts without a rule (VAE round-trip accuracy beside the model's held-out one).

The verdict is the worst status of all rated checks (``fail`` > ``warn`` > ``pass``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from microlad.evaluate.metrics import AXES, SPECS

__all__ = ["Check", "compare", "verdict", "Z_PASS", "Z_WARN", "REL_FLOOR", "STATUSES"]

Z_PASS = 2.0
Z_WARN = 4.0
REL_FLOOR = 0.01
STATUSES = ("pass", "warn", "fail", "n/a", "info")
_NOT_RATED = ("s2", "s2_line", "vae_accuracy")
_TOLERANCE = ("s2_error", "s2_small_r")


@dataclass(frozen=True)
class Check:
    """One metric element (phase, axis) against its reference; floats may be NaN."""

    metric: str
    phase: int | None
    axis: str | None
    value: float
    value_std: float
    reference: float
    reference_std: float
    tolerance: float
    status: str

    def to_dict(self) -> dict[str, Any]:
        """JSON object; adds ``signed_error`` (value - reference) and ``relative_error``
        (signed / |reference|) where a reference value exists; NaN becomes None."""
        doc = asdict(self)
        doc["signed_error"] = self.value - self.reference
        doc["relative_error"] = doc["signed_error"] / abs(self.reference) if self.reference else math.nan
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in doc.items()}


def _element(arr: np.ndarray | None, idx: tuple[int, ...]) -> float:
    if arr is None:
        return math.nan
    return float(np.asarray(arr)[idx]) if np.ndim(arr) else float(arr)


def _spread_status(delta: float, ref: float, sigma: float, floor: float = 0.0) -> str:
    if not (math.isfinite(delta) and math.isfinite(ref)):
        return "n/a"
    if abs(delta) <= 1e-12:
        return "pass"
    if not math.isfinite(sigma):
        return "n/a"
    s = max(sigma, REL_FLOOR * abs(ref), floor)
    if s <= 0:
        return "fail"
    return "pass" if delta <= Z_PASS * s else "warn" if delta <= Z_WARN * s else "fail"


def _tolerance_status(value: float, tol: float) -> str:
    if not (math.isfinite(value) and math.isfinite(tol)):
        return "n/a"
    return "pass" if value <= tol else "warn" if value <= 2 * tol else "fail"


def compare(mean: dict[str, np.ndarray], std: dict[str, np.ndarray], reference: Any, *, sample_volume: float = math.inf) -> list[Check]:
    """Checks for every element of every rated metric in ``mean`` (see the module rules).

    ``sample_volume``: volume of one evaluated volume (voxel_size³ units), for the count floor.
    """
    checks: list[Check] = []
    for name, value in mean.items():
        if name in _NOT_RATED and name != "vae_accuracy":
            continue
        dims = SPECS[name].dims
        for idx in np.ndindex(np.shape(value)):
            phase = idx[dims.index("phase")] if "phase" in dims else None
            axis = AXES[idx[dims.index("axis")]] if "axis" in dims else None
            v, vs = _element(value, idx), _element(std.get(name), idx)
            ref, rs, tol = math.nan, math.nan, math.nan
            if name in _TOLERANCE:
                tol = _element(reference.tolerance.get(name), idx)
                status = _tolerance_status(v, tol)
            elif name == "vae_accuracy":
                held = reference.extra.get("vae_heldout_accuracy")
                ref = float(held[phase]) if held and held[phase] is not None else math.nan
                status = "info"
            else:
                ref, rs = _element(reference.mean.get(name), idx), _element(reference.spread.get(name), idx)
                delta = v - ref
                floor = 1.0 / sample_volume if name in ("isolated_cluster_density", "euler_density") else 0.0
                status = _spread_status(delta if name == "anisotropy" else abs(delta), ref, rs, floor)
            checks.append(Check(name, phase, axis, v, vs, ref, rs, tol, status))
    return checks


def verdict(checks: list[Check]) -> str:
    """``fail`` if any check fails, else ``warn`` if any warns, else ``pass``."""
    statuses = {c.status for c in checks}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"
