"""VAE loss: phase-balanced cross-entropy + β·KL (METHOD.md §2, "ours").

Pure functions of tensors, no state. The reference VAE uses MSE + 0.1·(1−SSIM) + β·KL on
grey images; ours reconstructs per-phase logits, so the reconstruction term is a
cross-entropy whose phase weights undo the imbalance of volume fractions.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F

from microlad.errors import InputError, ShapeError

__all__ = ["VAELoss", "phase_class_weights", "kl_per_element", "vae_loss"]


class VAELoss(NamedTuple):
    """Parts of :func:`vae_loss` (0-d tensors); ``total = recon + beta * kl``."""

    total: torch.Tensor
    recon: torch.Tensor  # phase-weighted cross-entropy, mean per pixel (nats)
    kl: torch.Tensor  # KL(q(z|x) || N(0, I)), mean per latent element (nats)


def phase_class_weights(phase_fractions: torch.Tensor, *, min_fraction: float = 1e-3) -> torch.Tensor:
    """Inverse-frequency phase weights, normalised so that ``Σ_p f_p w_p = 1``.

    ``w_p = 1 / (P · f_p)`` with ``f_p`` clipped below at ``min_fraction`` (a phase absent
    from the data would otherwise get an infinite weight). With this normalisation the
    expected per-pixel weight is one, so the weighted cross-entropy keeps the scale of the
    plain one and β means the same for balanced and unbalanced data.

    Parameters
    ----------
    phase_fractions
        (P,) volume fractions (any non-negative counts; they are normalised to sum to 1).
    """
    f = torch.as_tensor(phase_fractions, dtype=torch.float64).reshape(-1)
    if f.numel() < 2 or not torch.isfinite(f).all() or (f < 0).any() or f.sum() <= 0:
        raise InputError(f"phase_fractions must be >= 2 non-negative finite numbers with a positive sum, got {f.tolist()}")
    f = (f / f.sum()).clamp_min(min_fraction)
    f = f / f.sum()
    w = 1.0 / (f.numel() * f)
    w = w / (f * w).sum()
    return w.to(torch.float32)


def kl_per_element(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) averaged over every latent element (B·C·h·w).

    The per-element mean makes β independent of the latent resolution.
    """
    return 0.5 * torch.mean(mean.square() + logvar.exp() - 1.0 - logvar)


def vae_loss(
    logits: torch.Tensor,
    target_onehot: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    *,
    beta: float,
    class_weights: torch.Tensor | None = None,
) -> VAELoss:
    """Phase-balanced cross-entropy + β·KL.

    Parameters
    ----------
    logits
        (B, P, H, W) decoder output.
    target_onehot
        (B, P, H, W) one-hot (or soft) target phase map.
    mean, logvar
        Posterior parameters from :meth:`CategoricalVAE.encode`.
    beta
        KL weight (per latent element vs per pixel cross-entropy).
    class_weights
        (P,) phase weights, e.g. :func:`phase_class_weights` of the training-set volume
        fractions; ``None`` means unweighted.

    Returns
    -------
    VAELoss
        ``recon = mean over pixels of w[phase] · CE`` (not renormalised by the batch's
        weights, so its scale does not jump with the batch composition), ``kl`` per latent
        element, ``total = recon + beta · kl``.
    """
    if logits.shape != target_onehot.shape or logits.ndim != 4:
        raise ShapeError(
            f"logits and target must both be (B, P, H, W), got {tuple(logits.shape)} and {tuple(target_onehot.shape)}"
        )
    target = target_onehot.to(logits.dtype)
    ce = -(target * F.log_softmax(logits, dim=1)).sum(dim=1)  # (B, H, W)
    if class_weights is not None:
        w = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device).reshape(-1)
        if w.numel() != logits.shape[1]:
            raise ShapeError(f"class_weights needs {logits.shape[1]} entries, got {w.numel()}")
        ce = ce * torch.einsum("bphw,p->bhw", target, w)
    recon = ce.mean()
    kl = kl_per_element(mean, logvar)
    return VAELoss(recon + float(beta) * kl, recon, kl)
