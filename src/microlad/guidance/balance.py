"""Balancing: every descriptor/property gradient is rescaled against the prior's.

Rule (ours; the paper's balancer is unreleased, METHOD.md §6). For term i with loss
gradient ``g_i = ∇_z L_i`` on the latent volume, relative residual ``ρ_i`` (its distance
to the target in units of the term's tolerance, see :mod:`microlad.guidance.terms`) and
user weight ``w_i``::

    ĝ_i = w_i · ‖g_prior‖ · min(1, ρ_i) · g_i / ‖g_i‖

* Far from the target (ρ ≥ 1, outside the tolerance) a term pushes with the prior's own
  gradient norm times ``w_i``, whatever the loss's units or the model's latent scale, so
  weights are O(1) and the same weights carry over between models.
* Inside the tolerance the push tapers linearly to 0 at the target (the unsquared
  residual, as in DPS), so the prior takes over there instead of the term overshooting.
* Non-finite gradients are zeroed (``nan_to_num``); a zero gradient stays zero. The
  balanced norm is therefore at most ``w_i · ‖g_prior‖``: finite and bounded.

The total ``g_prior·w_prior + Σ ĝ_i`` is what the one persistent Adam optimiser steps on.
"""
from __future__ import annotations

import torch

__all__ = ["balance"]


def balance(grad: torch.Tensor, prior_norm: float, residual: float, weight: float) -> tuple[torch.Tensor, float]:
    """Balanced gradient ĝ (same shape as ``grad``) and the raw gradient norm ‖g‖."""
    g = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    amax = float(g.abs().max()) if g.numel() else 0.0
    if amax == 0.0 or not (prior_norm > 0.0) or weight == 0.0:
        return torch.zeros_like(g), 0.0 if amax == 0.0 else amax * float((g / amax).norm())
    unit = g / amax  # scaled first so that tiny or huge gradients neither underflow nor overflow
    n = float(unit.norm())
    rho = min(1.0, abs(float(residual))) if residual == residual else 1.0
    return unit * (weight * prior_norm * rho / n), amax * n
