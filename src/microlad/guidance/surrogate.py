"""Differentiable decoding of the latent volume for the guidance losses (a cheap surrogate).

``reconstruct`` decodes every voxel slice along each of the three axes (latents linearly
interpolated between planes) and averages the three axes' probabilities, then refines
(:mod:`microlad.reconstruct.decode`). Doing that with gradients at every step costs about
3 × 4 decodes more than needed, so guidance uses two cheaper views of the same decoder:

* :func:`cell_slices` — decode one voxel plane per latent cell normal to one axis
  (``d = D/f`` planes): the latent planes themselves, or the planes at in-cell offset k of
  ``reconstruct``'s decoding (latents interpolated between planes), at full in-plane
  resolution. It feeds VF, slice S2, surface area (stereology: S_V = 4/π · L_A) and the
  2D D_eff of slices. Every plane of the latent volume gets gradient each step. Guidance
  draws k at random each step: steering only the latent planes let a surface-area target
  be met there while the interpolated planes between them, three quarters of what the
  user gets, lagged (BENCHMARKS.md, guidance status).
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


def cell_slices(vae, z: torch.Tensor, axis: int, *, offset: int | None = None, periodic: bool = False,
                memory_budget: int | None = None) -> torch.Tensor:
    """Probabilities (d_axis, P, H', W') of one voxel plane per latent cell normal to ``axis``;
    in-plane layout as :func:`microlad.reconstruct.to_slices` (axis 0: (Y, X); 1: (X, Z);
    2: (Z, Y)). Differentiable in ``z``.

    ``offset`` None: the latent planes themselves (the cell centres). ``offset`` k in
    [0, f): voxel planes k, k + f, k + 2f, … of ``reconstruct``'s decoding along ``axis``
    (latents interpolated between planes, :func:`~microlad.reconstruct.interpolate_along`),
    so that over the f offsets every voxel plane of that decoding is reached.
    """
    raw = _raw(vae, z)
    if offset is not None:
        f = vae.config.downsample_factor
        if not 0 <= int(offset) < f:
            raise ValueError(f"offset must be in [0, {f}), got {offset}")
        raw = interpolate_along(raw, axis, f, periodic=periodic)
        index = torch.arange(int(offset), raw.shape[axis + 1], f, device=raw.device)
        raw = raw.index_select(axis + 1, index)
    sl = to_slices(raw, axis)
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
