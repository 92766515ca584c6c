"""Orientation bookkeeping between a latent/voxel volume and batches of 2D slices.

A volume tensor is channel-first, ``(C, Z, Y, X)``. Slicing normal to an axis gives a
batch of 2D images; the in-plane axes keep their order:

=====  ==================  =====================
axis   slices normal to     batch layout
=====  ==================  =====================
0 (z)  planes z = const    (Z, C, Y, X)
1 (y)  planes y = const    (Y, C, Z, X)
2 (x)  planes x = const    (X, C, Z, Y)
=====  ==================  =====================

:func:`from_slices` is the exact inverse of :func:`to_slices`, so every sampler step
returns to the canonical (C, Z, Y, X) layout; the volume is never left permuted and no
step count or shape can leave an axis out of place (unlike the reference code, which
relies on 999 swaps happening to be ≡ 0 mod 3).
"""
from __future__ import annotations

import torch

AXIS_NAMES = ("z", "y", "x")

_TO = {0: (1, 0, 2, 3), 1: (2, 0, 1, 3), 2: (3, 0, 1, 2)}
_FROM = {0: (1, 0, 2, 3), 1: (1, 2, 0, 3), 2: (1, 2, 3, 0)}


def to_slices(volume: torch.Tensor, axis: int) -> torch.Tensor:
    """(C, Z, Y, X) → batch of 2D slices normal to ``axis`` (see module table)."""
    return volume.permute(_TO[axis])


def from_slices(slices: torch.Tensor, axis: int) -> torch.Tensor:
    """Inverse of :func:`to_slices`: batch of slices normal to ``axis`` → (C, Z, Y, X)."""
    return slices.permute(_FROM[axis])


def axis_schedule(num_steps: int, *, order: tuple[int, ...] = (0, 1, 2)) -> list[int]:
    """Slicing axis used at each sampler step: z, y, x, z, ... (cycled)."""
    return [order[i % len(order)] for i in range(num_steps)]
