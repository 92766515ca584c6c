"""Memory-aware batching of 2D slice work and padding helpers for size-agnostic nets."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

DEFAULT_MEMORY_BUDGET = 1 << 30
"""Bytes of activations one batched network call may use (1 GiB)."""


CPU_CALL_FLOATS = 1 << 20
"""On CPU, the finest-level activation of one network call is kept to 2**20 floats (4 MiB)."""


def chunk_size(
    pixels_per_slice: int,
    *,
    width: int,
    fine_width: int,
    device: torch.device,
    budget: int | None = None,
) -> int:
    """Slices per network call so activations stay within ``budget`` bytes (default 1 GiB).

    Estimate: ``8 · width`` live float32 activations per pixel (a ResNet level with
    skip connections), which over-estimates the small CPU nets used here. On CPU a call
    is also capped at ``CPU_CALL_FLOATS`` finest-level activations (``fine_width``:
    channels at the slices' own resolution), because CPU convolutions slow down per slice
    once a call's activations spill out of cache (BENCHMARKS.md, "Design measurements").
    """
    pixels = max(1, pixels_per_slice)
    n = max(1, (DEFAULT_MEMORY_BUDGET if budget is None else budget) // (pixels * width * 8 * 4))
    if torch.device(device).type == "cpu":
        n = min(n, max(1, CPU_CALL_FLOATS // (pixels * fine_width)))
    return n


def slices_per_call(net: torch.nn.Module, pixels_per_slice: int, device: torch.device, budget: int | None = None) -> int:
    """:func:`chunk_size` for ``net`` (a VAE or U-Net: its config's ``base_channels`` and
    ``channel_multipliers`` give the widest and the finest-level widths)."""
    cfg = net.config
    return chunk_size(pixels_per_slice, width=cfg.base_channels * max(cfg.channel_multipliers),
                      fine_width=cfg.base_channels, device=device, budget=budget)


def channels_last(*modules: torch.nn.Module) -> None:
    """Store conv weights channels-last (NHWC), in place; idempotent.

    oneDNN's CPU convolutions are faster in this layout (BENCHMARKS.md, "Design
    measurements"); values are the same up to float rounding.
    """
    for m in modules:
        m.to(memory_format=torch.channels_last)


def map_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Apply ``fn`` to 4-D ``x`` in batches of ``chunk`` along dim 0 and concatenate.

    Each batch is handed to ``fn`` channels-last (see :func:`channels_last`).
    """
    cl = torch.channels_last
    if x.shape[0] <= chunk:
        return fn(x.contiguous(memory_format=cl))
    return torch.cat([fn(x[i : i + chunk].contiguous(memory_format=cl)) for i in range(0, x.shape[0], chunk)], dim=0)


def pad_2d(x: torch.Tensor, *, multiple: int = 1, margin: int = 0, periodic: bool = False) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad the last two dims by ``margin`` and up to a multiple of ``multiple``.

    Periodic volumes wrap around (circular); others are mirrored (reflect, or replicate
    when the image is too small to mirror). Returns the padded tensor and the
    (left, right, top, bottom) pads for :func:`crop_2d`.
    """
    h, w = x.shape[-2:]
    extra_h = (-(h + 2 * margin)) % multiple
    extra_w = (-(w + 2 * margin)) % multiple
    pads = (margin, margin + extra_w, margin, margin + extra_h)
    if not any(pads):
        return x, pads
    if periodic:
        mode = "circular"
    else:
        mode = "reflect" if max(pads[0], pads[1]) < w and max(pads[2], pads[3]) < h else "replicate"
    return F.pad(x, pads, mode=mode), pads


def crop_2d(x: torch.Tensor, pads: tuple[int, int, int, int], *, scale: int = 1) -> torch.Tensor:
    """Undo :func:`pad_2d` (pads measured before a ``scale``-fold up-sampling)."""
    left, right, top, bottom = (p * scale for p in pads)
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
