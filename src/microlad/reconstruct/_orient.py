"""Orientation bookkeeping between a latent/voxel volume and batches of 2D slices.

A volume tensor is channel-first, ``(C, Z, Y, X)``. Slicing normal to an axis gives a
batch of 2D images ``(N, C, H, W)``; the in-plane axes are laid out cyclically, so each
axis is the image height (H) of one slicing and the width (W) of the other:

=====  ==================  =====================  =======
axis   slices normal to     batch layout           H, W
=====  ==================  =====================  =======
0 (z)  planes z = const    (Z, C, Y, X)           Y, X
1 (y)  planes y = const    (Y, C, X, Z)           X, Z
2 (x)  planes x = const    (X, C, Z, Y)           Z, Y
=====  ==================  =====================  =======

Relabelling the axes cyclically (z → y → x → z) maps each slicing onto the next with the
same layout, so the pipeline treats the three axes alike. The layout matters in
practice: the 2D networks are only approximately invariant to transposing their input
(trained with D4 augmentation, not built equivariant). With a fixed layout (z always H,
x always W, y mixed) one axis's slices came out measurably off; with the cyclic layout no
axis stands out (BENCHMARKS.md, "Design measurements").

:func:`from_slices` is the exact inverse of :func:`to_slices`, so every sampler step
returns to the canonical (C, Z, Y, X) layout; the volume is never left permuted and no
step count or shape can leave an axis out of place (unlike the reference code, which
relies on 999 swaps happening to be ≡ 0 mod 3).
"""
from __future__ import annotations

import torch

AXIS_NAMES = ("z", "y", "x")

_TO = {0: (1, 0, 2, 3), 1: (2, 0, 3, 1), 2: (3, 0, 1, 2)}
_FROM = {a: tuple(p.index(k) for k in range(4)) for a, p in _TO.items()}


def to_slices(volume: torch.Tensor, axis: int) -> torch.Tensor:
    """(C, Z, Y, X) → batch of 2D slices normal to ``axis`` (a view; see module table)."""
    return volume.permute(_TO[axis])


def from_slices(slices: torch.Tensor, axis: int) -> torch.Tensor:
    """Inverse of :func:`to_slices`: batch of slices normal to ``axis`` → (C, Z, Y, X)."""
    return slices.permute(_FROM[axis])


def axis_schedule(num_steps: int, *, order: tuple[int, ...] = (0, 1, 2)) -> list[int]:
    """Slicing axis used at each sampler step: z, y, x, z, ... (cycled)."""
    return [order[i % len(order)] for i in range(num_steps)]
