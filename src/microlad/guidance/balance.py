"""Balancing: every descriptor/property gradient is rescaled against the prior's.

Rule (ours; the paper's balancer is unreleased, METHOD.md §6). For term i with loss
gradient ``g_i = ∇_z L_i`` on the latent volume, relative residual ``ρ_i`` (its distance
to the target in units of the term's tolerance, see :mod:`microlad.guidance.terms`) and
user weight ``w_i``::

    ĝ_i = w_i · ‖g_prior‖ · G(ρ_i) · g_i / ‖g_i‖,
    G(ρ) = ρ                          for ρ <= 1
         = min(1 + ln ρ, MAX_GAIN)    for ρ > 1    (MAX_GAIN reached at ρ = e³ ≈ 20)

a controller on the residual whose scale is the prior's own gradient norm: linear inside
the tolerance, logarithmic outside, saturating at :data:`MAX_GAIN` (G is continuous with
a continuous slope at ρ = 1):

* The push is sized by the prior's gradient norm, whatever the loss's units or the
  model's latent scale, so weights are O(1) and the same weights carry over between models.
* It grows with the residual: one tolerance unit from the target (ρ = 1) the term pushes
  as hard as the prior (× ``w_i``), and up to ``MAX_GAIN`` times as hard far away, so a
  far target is reached within the default steps while the prior keeps steering the
  texture (with G capped at 1 the prior held surface-area and far-VF targets short). The
  growth is logarithmic, not linear, because a gain of 2-4 a few tolerance units from the
  target made Adam's momentum overshoot and oscillate around VF targets
  (bench/results/guidance.md).
* Near the target the push tapers linearly to 0 (the unsquared residual, as in DPS): it
  vanishes only at the target itself, and the prior takes over there instead of the term
  overshooting.
* Non-finite gradients are zeroed (``nan_to_num``); a zero gradient stays zero; a NaN
  residual counts as ρ = 1. The balanced norm is therefore at most
  ``w_i · MAX_GAIN · ‖g_prior‖``: finite and bounded.

The total ``g_prior·w_prior + Σ ĝ_i`` is what the one persistent Adam optimiser steps on.
"""
from __future__ import annotations

import math

import torch

__all__ = ["MAX_GAIN", "balance", "gain"]

MAX_GAIN = 4.0
"""Largest push of a term, in units of ``weight × ‖g_prior‖`` (reached at ρ >= e³)."""


def gain(residual: float) -> float:
    """The residual's factor G(|ρ|) in the rule (module docstring); 1 for a NaN residual."""
    if residual != residual:
        return 1.0
    r = abs(float(residual))
    return r if r <= 1.0 else min(MAX_GAIN, 1.0 + math.log(r))


def balance(grad: torch.Tensor, prior_norm: float, residual: float, weight: float) -> tuple[torch.Tensor, float]:
    """Balanced gradient ĝ (same shape as ``grad``) and the raw gradient norm ‖g‖."""
    g = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    amax = float(g.abs().max()) if g.numel() else 0.0
    if amax == 0.0 or not (prior_norm > 0.0) or weight == 0.0:
        return torch.zeros_like(g), 0.0 if amax == 0.0 else amax * float((g / amax).norm())
    unit = g / amax  # scaled first so that tiny or huge gradients neither underflow nor overflow
    n = float(unit.norm())
    return unit * (weight * prior_norm * gain(residual) / n), amax * n
