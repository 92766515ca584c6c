"""Statistics of training patches, of the VAE's latents and of its reconstructions."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from microlad.data import PatchSampler, onehot
from microlad.descriptors import s2_error, s2_radial, slice_perimeter_density, specific_surface_area

__all__ = ["another_vae_round", "encoder_moments", "heldout_reconstruction", "patch_statistics", "reconstruction_report",
           "worst_perimeter_error", "S2_PERIODIC"]

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
    radial S2 up to ``cutoff``; ``None`` for a phase absent from ``true``) and
    ``perimeter_error`` per phase (signed: L_A_rec / L_A_true − 1, the slice perimeter
    density of :func:`microlad.descriptors.slice_perimeter_density` over all patches;
    ``None`` for a phase with no boundary in ``true``): what the round trip loses at the
    finest scale, which pixel accuracy hides.
    """
    n, h, w = true.shape
    cutoff = min(h, w) // 2 if cutoff is None else int(cutoff)
    acc, vf_err, s2_err, per_err = [], [], [], []
    for p in range(n_phases):
        t, r = true == p, recon == p
        count = int(t.sum())
        acc.append(float((t & r).sum() / count) if count else None)
        vf_err.append(float(np.abs(t.mean(axis=(1, 2)) - r.mean(axis=(1, 2))).mean()))
        ref = s2_radial(true, phase=p, cutoff=cutoff, periodic=S2_PERIODIC)
        gen = s2_radial(recon, phase=p, cutoff=cutoff, periodic=S2_PERIODIC)
        s2_err.append(float(s2_error(gen, ref)) if ref.sum() > 0 else None)
        la_true = slice_perimeter_density(true, phase=p, axis=0)
        per_err.append(float(slice_perimeter_density(recon, phase=p, axis=0) / la_true - 1.0) if la_true > 0 else None)
    return {
        "n_patches": int(n),
        "accuracy": acc,
        "pixel_accuracy": float((true == recon).mean()),
        "vf_error": vf_err,
        "s2_error": s2_err,
        "perimeter_error": per_err,
    }


@torch.no_grad()
def encoder_moments(vae, label_batches: Iterable[torch.Tensor], n_phases: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Per-channel mean and std of the encoder means over ``label_batches`` (each (B, H, W)).

    These normalise the latents to zero mean and unit std for the diffusion model
    (sums in float64). Returns ``(shift, scale, labels)``: two float32 (C,) tensors and
    the concatenated label patches (N, H, W) for :func:`patch_statistics`.
    """
    s1 = s2 = 0.0
    count = 0
    chunks = []
    for lab in label_batches:
        chunks.append(lab.numpy())
        m = vae.encode(onehot(lab, n_phases, dim=1).to(device))[0].double()
        s1 = s1 + m.sum((0, 2, 3))
        s2 = s2 + m.square().sum((0, 2, 3))
        count += m.shape[0] * m.shape[2] * m.shape[3]
    shift = s1 / count
    scale = (s2 / count - shift.square()).clamp_min(0).sqrt().clamp_min(1e-6)
    return shift.float(), scale.float(), np.concatenate(chunks)


@torch.no_grad()
def heldout_reconstruction(vae, sampler: PatchSampler, n: int, seed: int, device: torch.device) -> dict[str, Any]:
    """:func:`reconstruction_report` of encode → decode (posterior mean, argmax) on ``n``
    patches drawn from ``sampler`` with ``seed``; the report also records ``heldout_seed``."""
    gen = torch.Generator().manual_seed(seed)
    true, recon = [], []
    for start in range(0, n, 64):
        lab = sampler.sample_labels(min(64, n - start), gen)
        mean, _ = vae.encode(onehot(lab, sampler.n_phases, dim=1).to(device))
        recon.append(vae.decode(mean).argmax(1).to(torch.uint8).cpu().numpy())
        true.append(lab.numpy())
    rep = reconstruction_report(np.concatenate(true), np.concatenate(recon), sampler.n_phases)
    rep["heldout_seed"] = seed
    return rep


def worst_perimeter_error(report: Mapping[str, Any]) -> float | None:
    """The largest |perimeter error| over the phases of a :func:`reconstruction_report`."""
    errs = [abs(e) for e in report.get("perimeter_error") or () if e is not None]
    return max(errs) if errs else None


def another_vae_round(rounds: Sequence[Mapping[str, Any]], max_rounds: int, tol: float) -> bool:
    """Whether the VAE should train another round, from the held-out checks so far.

    ``rounds``: one record per finished round, oldest first, each with ``worst`` (the
    largest |relative slice-perimeter error| of the round trip over the phases, or None).
    Another round when fewer than ``max_rounds`` were trained, the last round's worst error
    exceeds ``tol``, and it is smaller than the round before's (no gain: stop).
    """
    if not rounds or len(rounds) >= max_rounds:
        return False
    worst = rounds[-1].get("worst")
    if worst is None or worst <= tol:
        return False
    if len(rounds) >= 2 and rounds[-2].get("worst") is not None and worst >= rounds[-2]["worst"]:
        return False
    return True
