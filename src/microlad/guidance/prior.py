"""The diffusion prior as a score-distillation (SDS) pseudo-gradient on the latent volume.

For the latent slices ``z`` normal to one axis (a batch of 2D latents, in the normalised
space the U-Net was trained in), draw ``t`` and ε, form ``z_t = √ᾱ_t z + √(1−ᾱ_t) ε``,
evaluate the denoiser without gradient and take the clean estimate ``ẑ₀`` and ``ε̂`` from
the schedule (:meth:`~microlad.diffusion.DDPMSchedule.predict_x0_eps`, ε- or
v-prediction). The SDS pseudo-gradient (DreamFusion) is ``w(t)·(ε̂ − ε)``; with

    ε̂ − ε = √ᾱ_t/√(1−ᾱ_t) · (z − ẑ₀)     (substitute z_t into ε̂ = (z_t − √ᾱ_t ẑ₀)/√(1−ᾱ_t))

and the weight ``w(t) = √((1−ᾱ_t)/ᾱ_t)`` it is exactly ``z − ẑ₀``: *descending* it moves
``z`` toward the denoiser's clean estimate (METHOD.md §6; the reference code ascends it).
No U-Net Jacobian is used. Guidance rescales every descriptor term against this
gradient's norm (:mod:`microlad.guidance.balance`), so ``w(t)`` only fixes the reference
scale, and ``z − ẑ₀`` has a t-independent meaning: the distance to the prior's estimate.

Noise levels: ``t ~ U[t_min, t_max(s)]`` with ``t_max`` annealed linearly from
``t_start`` to ``t_end`` over the run (fractions of T; defaults 0.4 → 0.1, t_min 0.02).
The start is already a sample of the prior, so very noisy levels would only pull it
toward a blurry mean (3D-generation practice anneals t downward, METHOD.md §6).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from microlad.errors import InputError
from microlad.reconstruct.lmpdd import predict_slices
from microlad.reconstruct.options import SliceOptions

__all__ = ["NoiseRange", "sds_gradient"]


@dataclass(frozen=True)
class NoiseRange:
    """SDS noise levels as fractions of T: ``t ~ U[t_min, t_max]``, ``t_max`` annealed
    linearly from ``t_start`` (first step) to ``t_end`` (last step)."""

    t_min: float = 0.02
    t_start: float = 0.4
    t_end: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.t_min <= min(self.t_start, self.t_end) or max(self.t_start, self.t_end) >= 1.0:
            raise InputError(f"need 0 <= t_min <= t_start, t_end < 1 (fractions of T), got {self}")

    def draw(self, step: int, steps: int, T: int, generator: torch.Generator) -> int:
        """One integer timestep for ``step`` of ``steps`` (steps past the schedule, when a run
        is extended, keep the last step's range)."""
        frac = min(1.0, step / max(1, steps - 1))
        hi = self.t_start + (self.t_end - self.t_start) * frac
        lo_i, hi_i = int(round(self.t_min * T)), max(int(round(self.t_min * T)), int(round(hi * T)))
        return int(torch.randint(lo_i, hi_i + 1, (1,), generator=generator))


@torch.no_grad()
def sds_gradient(
    unet: torch.nn.Module,
    schedule,
    z: torch.Tensor,
    axis: int,
    t: int,
    generator: torch.Generator,
    *,
    periodic: bool = False,
    memory_budget: int | None = None,
) -> torch.Tensor:
    """SDS pseudo-gradient ``z − ẑ₀(z_t, t)`` for the latent volume ``z`` (C, d, h, w) read
    as slices normal to ``axis`` (0, 1, 2); same shape as ``z``, no graph."""
    zd = z.detach()
    noise = torch.randn(zd.shape, generator=generator, device=generator.device).to(zd.device)
    zt = schedule.add_noise(zd, noise, int(t))
    out = predict_slices(unet, zt, int(t), axis, SliceOptions(periodic=periodic, memory_budget=memory_budget))
    # predict_x0_eps works per element, so it applies in the canonical layout
    x0, _ = schedule.predict_x0_eps(zt, out, int(t))
    return zd - x0

