"""Fidelity of generated volumes against 2D training images (MicroLad §7, Table 1).

Metric of the paper: for each phase p and axis a, S2 of the generated volume's slices
normal to a (radially averaged), compared with the training image's S2 by
``|A_gen − A_ref| / A_ref`` with ``A = Σ_{r=0}^{cutoff} S2(r)``; the headline number is
the maximum over phases and axes. We use non-periodic (overlap-normalised) S2 on both
sides so neither the small generated slices nor the large training image is biased by
wrap-around, and average the generated S2 curves over all volumes before comparing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from microlad.descriptors import s2_error, s2_radial, s2_slices, volume_fraction
from microlad.errors import ShapeError
AXIS_NAMES = ("z", "y", "x")


@dataclass(frozen=True)
class Fidelity:
    """S2 and VF agreement of generated volumes with a reference 2D image.

    errors : (P, 3) relative S2 error per phase and axis (z, y, x).
    max_error : the paper's headline number, ``errors.max()``.
    signed_errors : (P, 3) the same without the absolute value (negative: S2 sums too low,
        i.e. features smaller than the reference's at the same VF).
    standard_errors : (P, 3) standard error of ``signed_errors`` from the spread between
        volumes (sample std / √n; NaN for a single volume). With few small volumes it can be
        as large as the goal: carbonate, 10 × 64³, phase 1: about 1.5 %.
    vf_generated : (P, 3) mean VF of the slices normal to each axis, over all volumes.
    vf_reference : (P,) VF of the reference image(s).
    s2_generated : (P, 3, cutoff+1) mean slice S2 curves; s2_reference : (P, cutoff+1).
    """

    errors: np.ndarray
    max_error: float
    vf_generated: np.ndarray
    vf_reference: np.ndarray
    s2_generated: np.ndarray
    s2_reference: np.ndarray
    cutoff: int
    signed_errors: np.ndarray
    standard_errors: np.ndarray

    def to_dict(self) -> dict:
        return {
            "max_s2_error": float(self.max_error),
            "s2_error": {str(p): dict(zip(AXIS_NAMES, map(float, row))) for p, row in enumerate(self.errors)},
            "s2_signed_error": {str(p): dict(zip(AXIS_NAMES, map(float, row))) for p, row in enumerate(self.signed_errors)},
            "s2_standard_error": {str(p): dict(zip(AXIS_NAMES, map(float, row))) for p, row in enumerate(self.standard_errors)},
            "vf_generated": {str(p): dict(zip(AXIS_NAMES, map(float, row))) for p, row in enumerate(self.vf_generated)},
            "vf_reference": {str(p): float(v) for p, v in enumerate(self.vf_reference)},
            "cutoff": self.cutoff,
        }


def s2_fidelity(
    volumes: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    *,
    n_phases: int,
    cutoff: int | None = None,
) -> Fidelity:
    """Compare slice statistics of generated ``volumes`` with 2D ``references``.

    Parameters
    ----------
    volumes : label volumes (Z, Y, X), all the same shape.
    references : 2D label images (Y, X) the model was trained on (S2 averaged over them).
    n_phases : number of phases P.
    cutoff : largest distance in voxels (default: half the smallest volume side).
    """
    if not volumes or not references:
        raise ShapeError("need at least one generated volume and one reference image")
    shape = volumes[0].shape
    if any(v.ndim != 3 or v.shape != shape for v in volumes):
        raise ShapeError("all generated volumes must be 3D and of the same shape")
    if any(r.ndim != 2 for r in references):
        raise ShapeError("reference images must be 2D")
    c = int(cutoff if cutoff is not None else min(shape) // 2)
    per_volume = np.zeros((len(volumes), n_phases, 3, c + 1))
    vf_gen = np.zeros((n_phases, 3))
    for i, vol in enumerate(volumes):
        for p in range(n_phases):
            for a in range(3):
                per_volume[i, p, a] = s2_slices(vol, phase=p, axis=a, cutoff=c, periodic=False)
        vf_gen += volume_fraction(vol, n_phases=n_phases)[:, None]
    gen = per_volume.mean(axis=0)
    vf_gen /= len(volumes)
    ref = np.stack([np.mean([s2_radial(r, phase=p, cutoff=c, periodic=False) for r in references], axis=0) for p in range(n_phases)])
    vf_ref = np.mean([volume_fraction(r, n_phases=n_phases) for r in references], axis=0)
    errors = np.asarray(s2_error(gen, np.broadcast_to(ref[:, None, :], gen.shape)))
    ref_sum = ref.sum(axis=-1)[:, None]  # (P, 1)
    signed = (gen.sum(axis=-1) - ref_sum) / ref_sum
    if len(volumes) > 1:
        spread = (per_volume.sum(axis=-1) - ref_sum) / ref_sum  # (n, P, 3)
        stderr = spread.std(axis=0, ddof=1) / np.sqrt(len(volumes))
    else:
        stderr = np.full_like(signed, np.nan)
    return Fidelity(errors=errors, max_error=float(errors.max()), vf_generated=vf_gen, vf_reference=vf_ref, s2_generated=gen,
                    s2_reference=ref, cutoff=c, signed_errors=signed, standard_errors=stderr)
