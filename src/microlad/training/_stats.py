"""Statistics of training patches and of VAE reconstructions (numpy descriptors)."""
from __future__ import annotations

from typing import Any

import numpy as np

from microlad.descriptors import s2_error, s2_radial, specific_surface_area

__all__ = ["patch_statistics", "reconstruction_report", "S2_PERIODIC"]

#: Patches are crops, not periodic cells: S2 is the overlap-normalised (non-periodic) one.
S2_PERIODIC = False


def _per_patch_s2(labels: np.ndarray, phase: int, cutoff: int) -> np.ndarray:
    return np.stack([s2_radial(lab, phase=phase, cutoff=cutoff, periodic=S2_PERIODIC) for lab in labels])


def patch_statistics(labels: np.ndarray, n_phases: int, *, cutoff: int | None = None) -> dict[str, Any]:
    """Per-phase descriptors of a stack of label patches, mean and std over patches.

    Parameters
    ----------
    labels
        uint8 (N, H, W) patches with phases 0..n_phases-1.
    n_phases
        Number of phases P.
    cutoff
        Largest S2 distance in pixels; default H // 2.

    Returns
    -------
    dict
        JSON-able: ``volume_fraction`` / ``volume_fraction_std`` (P,);
        ``s2_radial_mean`` / ``s2_radial_std`` (P, cutoff+1), non-periodic radial S2
        (:func:`microlad.descriptors.s2_radial`, ``periodic=False``);
        ``specific_surface_area`` / ``_std`` (P,), interface length per unit area in
        1/pixel ("mesh" estimator) and ``specific_surface_area_gradient`` (the
        calibrated total-variation estimator the differentiable descriptor uses);
        plus ``n_patches``, ``patch``, ``s2_cutoff``, ``s2_periodic``.
    """
    n, h, w = labels.shape
    cutoff = min(h, w) // 2 if cutoff is None else int(cutoff)
    vf = np.stack([(labels == p).mean(axis=(1, 2)) for p in range(n_phases)], axis=1)  # (N, P)
    s2 = np.stack([_per_patch_s2(labels, p, cutoff) for p in range(n_phases)], axis=1)  # (N, P, K)
    ssa = np.array([[specific_surface_area(lab, phase=p) for p in range(n_phases)] for lab in labels])
    ssa_g = np.array([[specific_surface_area(lab, phase=p, method="gradient") for p in range(n_phases)] for lab in labels])
    return {
        "n_patches": int(n),
        "patch": int(h),
        "volume_fraction": vf.mean(0).tolist(),
        "volume_fraction_std": vf.std(0).tolist(),
        "s2_cutoff": cutoff,
        "s2_periodic": S2_PERIODIC,
        "s2_radial_mean": s2.mean(0).tolist(),
        "s2_radial_std": s2.std(0).tolist(),
        "specific_surface_area": ssa.mean(0).tolist(),
        "specific_surface_area_std": ssa.std(0).tolist(),
        "specific_surface_area_gradient": ssa_g.mean(0).tolist(),
    }


def reconstruction_report(true: np.ndarray, recon: np.ndarray, n_phases: int, *, cutoff: int | None = None) -> dict[str, Any]:
    """How well reconstructions ``recon`` (N, H, W) reproduce label patches ``true``.

    Returns a JSON-able dict: ``accuracy`` per phase (fraction of the phase's pixels that
    are reconstructed as that phase), ``pixel_accuracy`` (all pixels), ``vf_error`` per
    phase (mean over patches of |VF_rec - VF_true|), ``s2_error`` per phase (paper §7:
    |A_rec - A_true| / A_true with A = sum_r S2(r) of the patch-averaged non-periodic
    radial S2 up to ``cutoff``; ``None`` for a phase absent from ``true``).
    """
    n, h, w = true.shape
    cutoff = min(h, w) // 2 if cutoff is None else int(cutoff)
    acc, vf_err, s2_err = [], [], []
    for p in range(n_phases):
        t, r = true == p, recon == p
        count = int(t.sum())
        acc.append(float((t & r).sum() / count) if count else None)
        vf_err.append(float(np.abs(t.mean(axis=(1, 2)) - r.mean(axis=(1, 2))).mean()))
        ref = s2_radial(true, phase=p, cutoff=cutoff, periodic=S2_PERIODIC)
        gen = s2_radial(recon, phase=p, cutoff=cutoff, periodic=S2_PERIODIC)
        s2_err.append(float(s2_error(gen, ref)) if ref.sum() > 0 else None)
    return {
        "n_patches": int(n),
        "accuracy": acc,
        "pixel_accuracy": float((true == recon).mean()),
        "vf_error": vf_err,
        "s2_error": s2_err,
    }
