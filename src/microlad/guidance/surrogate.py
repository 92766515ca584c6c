"""Differentiable decoding of the latent volume for the guidance losses (a cheap surrogate).

``reconstruct`` decodes every voxel slice along each of the three axes (latents linearly
interpolated between planes) and averages the three axes' probabilities, then refines
(:mod:`microlad.reconstruct.decode`). Doing that with gradients at every step costs about
3 × 4 decodes more than needed, so guidance uses two cheaper views of the same decoder:

* :func:`cell_slices` — decode only the latent planes normal to one axis (``d = D/f``
  planes, no interpolation): per-phase probabilities of the voxel planes at the latent
  cell centres, at full in-plane resolution. It feeds VF, slice S2, surface area
  (stereology: S_V = 4/π · L_A) and the 2D D_eff of slices. Every plane of the latent
  volume gets gradient each step, since all d planes are decoded.
* :func:`axis_volume` — decode every voxel slice along one axis (interpolated latents,
  exactly ``reconstruct``'s decoding for that axis, before averaging): a full
  (P, D, H, W) probability volume for the 3D transport terms, evaluated every k steps.

The surrogate's systematic offset from what the user finally gets (three-axis average,
refinement, labels) is measured on the finished labels at calibration steps and removed
from the targets (:mod:`microlad.guidance.loop`), and the agreement of the surrogate
with ``reconstruct``'s decoding is tested (``tests/test_guidance_surrogate.py``).
"""
from __future__ import annotations

import torch

from microlad.reconstruct import from_slices, interpolate_along, to_slices
from microlad.reconstruct.decode import decode_slices
from microlad.reconstruct.options import SliceOptions

__all__ = ["cell_slices", "axis_volume", "in_plane_axes"]


def _raw(vae, z: torch.Tensor) -> torch.Tensor:
    """Normalised latent volume (C, d, h, w) → the VAE's raw latent space, differentiably."""
    return vae.denormalize(z.movedim(0, 1)).movedim(1, 0)


def cell_slices(vae, z: torch.Tensor, axis: int, *, periodic: bool = False, memory_budget: int | None = None) -> torch.Tensor:
    """Probabilities (d_axis, P, H', W') of the voxel planes at the latent cell centres
    normal to ``axis``; in-plane layout as :func:`microlad.reconstruct.to_slices`
    (axis 0: (Y, X); 1: (X, Z); 2: (Z, Y)). Differentiable in ``z``."""
    sl = to_slices(_raw(vae, z), axis)
    return decode_slices(vae, sl, SliceOptions(periodic=periodic, memory_budget=memory_budget))


CHECKPOINT_VOXELS = 96**3
"""Above this many voxels :func:`axis_volume` recomputes the decoder in the backward pass
(activation checkpointing per batch of 16 slices) instead of keeping every slice's
activations: memory O(one batch), one extra decoder forward."""


def axis_volume(vae, z: torch.Tensor, axis: int, *, periodic: bool = False, memory_budget: int | None = None) -> torch.Tensor:
    """Probabilities (P, D, H, W) from decoding every voxel slice normal to ``axis``
    (interpolated latents, as ``reconstruct`` does per axis). Differentiable in ``z``."""
    f = vae.config.downsample_factor
    up = interpolate_along(_raw(vae, z), axis, f, periodic=periodic)
    sl = to_slices(up, axis)
    if sl.shape[0] * sl.shape[-2] * sl.shape[-1] * f * f <= CHECKPOINT_VOXELS:  # slices × their voxels
        out = decode_slices(vae, sl, SliceOptions(periodic=periodic, memory_budget=memory_budget))
    else:
        from torch.utils.checkpoint import checkpoint

        def run(x: torch.Tensor) -> torch.Tensor:
            return decode_slices(vae, x, SliceOptions(periodic=periodic, memory_budget=memory_budget))

        out = torch.cat([checkpoint(run, sl[i : i + 16], use_reentrant=False) for i in range(0, sl.shape[0], 16)])
    return from_slices(out, axis)


def in_plane_axes(axis: int) -> tuple[int, int]:
    """Volume axes (of Z, Y, X) that are the (H, W) of slices normal to ``axis``."""
    return (axis + 1) % 3, (axis + 2) % 3
