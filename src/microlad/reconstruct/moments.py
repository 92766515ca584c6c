"""Prior-moment matching for L-MPDD (ours; not in the paper).

At every L-MPDD step the 2D denoiser predicts a clean estimate x̂0 for slices of a latent
volume that no single 2D sample produced, and its predictions for such compromise slices
drift: the per-channel mean of an L-MPDD volume's x̂0 moves away from that of the 2D
prior's own clean estimates, the same way in every seed, and its standard deviation ends
20–30 % lower. Decoded, the volume has lost much of its minority phase (a Berea volume
holds about 0.11 pore before fraction matching, the 2D prior 0.19). Threshold matching
restores the fraction afterwards, but only by widening the pores that survived, not by
restoring the throats between them.

The fix: run the 2D prior once with the same sampler and steps (a batch of 2D samples at
the training patch size, fixed seed), record the per-channel mean and standard deviation
of its clean estimate at every step (:func:`prior_moments`), and at each L-MPDD step shift
(and optionally scale) the volume's x̂0 per latent channel to them (:func:`match_moments`).
Only the 2D model's own statistics are used; nothing is tuned per material. The edited x̂0
is handed to the sampler through ``schedule.output_for_x0``, so every sampler applies
unchanged.

``reconstruct`` matches the mean only (``match_latent_mean``, the default): it keeps the
Berea pores connected nearly as well as matching both moments does, and leaves the
fine-scale statistics of the other materials as they were, whereas restoring the standard
deviation as well coarsens the carbonate's small pores (slice perimeter −17 %). The
measurements are in BENCHMARKS.md (fine-scale findings, "L-MPDD's latent drift").
"""
from __future__ import annotations

import weakref

import torch

from microlad.diffusion import make_sampler

__all__ = ["PRIOR_MOMENT_SAMPLES", "prior_moments", "match_moments", "moments_to_dict", "moments_from_dict"]

PRIOR_MOMENT_SAMPLES = 64
"""2D prior samples whose clean estimates give the per-step moments."""

_SEED = 20261207  # fixed: the moments are a property of the model, not of the user's seed
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@torch.inference_mode()
def prior_moments(unet: torch.nn.Module, schedule, latent_channels: int, latent_size: int, *, sampler: str = "ddim",
                  steps: int, n: int = PRIOR_MOMENT_SAMPLES, device: torch.device | str | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step, per-channel mean and std of the 2D prior's clean estimates.

    Runs ``n`` 2D samples of ``latent_size``² normalised latents (the training patch size
    over the VAE factor) through ``sampler`` with ``steps`` steps from a fixed seed and
    records x̂0 at every step. Returns ``(mean, std)``, each (steps, C) float32 on
    ``device``. Cached per U-Net and arguments (the result depends on nothing else).
    """
    dev = torch.device(device) if device is not None else next(unet.parameters()).device
    key = (latent_channels, latent_size, sampler, int(steps), int(n), str(dev))
    per_unet = _cache.setdefault(unet, {})
    if key in per_unet:
        return per_unet[key]
    s = make_sampler(schedule, sampler, steps)
    gen = torch.Generator().manual_seed(_SEED)
    x = torch.randn((n, latent_channels, latent_size, latent_size), generator=gen).to(dev)
    means, stds = [], []
    for i, t in enumerate(s.timesteps.tolist()):
        out = unet(x, s.timestep_tensor(i, n, device=dev))
        x0 = schedule.predict_x0_eps(x, out, t)[0]
        means.append(x0.mean(dim=(0, 2, 3)).float())
        stds.append(x0.std(dim=(0, 2, 3)).float())
        x = s.step(out, i, x, generator=gen)
    result = (torch.stack(means), torch.stack(stds))
    per_unet[key] = result
    return result


def match_moments(x0: torch.Tensor, mean: torch.Tensor | None, std: torch.Tensor | None) -> torch.Tensor:
    """x̂0 (C, d, h, w) shifted and scaled per channel to ``mean`` and ``std`` (each (C,));
    ``None`` keeps that moment of each channel as it is."""
    mu = x0.mean(dim=(1, 2, 3), keepdim=True)
    shape = (-1, 1, 1, 1)
    out = x0 - mu
    if std is not None:
        out = out * (std.to(x0.dtype).view(shape) / x0.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12))
    return out + (mu if mean is None else mean.to(x0.dtype).view(shape))


def moments_to_dict(mean: torch.Tensor, std: torch.Tensor, *, sampler: str, steps: int, latent_size: int,
                    n: int = PRIOR_MOMENT_SAMPLES) -> dict:
    """JSON-ready record of :func:`prior_moments`'s result (``config.json``'s
    ``config.latent_moments``): the float32 values exactly (as Python floats)."""
    return {"sampler": sampler, "steps": int(steps), "latent_size": int(latent_size), "n": int(n),
            "mean": mean.detach().cpu().float().tolist(), "std": std.detach().cpu().float().tolist()}


def moments_from_dict(stored, *, sampler: str, steps: int, latent_channels: int, latent_size: int,
                      n: int = PRIOR_MOMENT_SAMPLES) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The stored moments as (steps, C) float32 tensors if they were computed for this sampler,
    step count, latent size and sample count; None otherwise (or if malformed)."""
    if not isinstance(stored, dict):
        return None
    if (stored.get("sampler"), stored.get("steps"), stored.get("latent_size"), stored.get("n")) != (sampler, steps, latent_size, n):
        return None
    try:
        mean = torch.tensor(stored["mean"], dtype=torch.float32)
        std = torch.tensor(stored["std"], dtype=torch.float32)
    except (KeyError, TypeError, ValueError):
        return None
    if mean.shape != (steps, latent_channels) or std.shape != (steps, latent_channels):
        return None
    return mean, std
