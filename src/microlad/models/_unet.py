"""Time-conditioned 2D U-Net denoiser for the normalized VAE latents.

Compared with the reference (METHOD.md §3: base 128, attention at every level) this one
is small enough for CPU training: base 64, three levels on the 16×16 latents,
self-attention only at the lowest resolution. It knows nothing about the noise
schedule (``forward(x, t)`` only); the output is ε or v depending on how it was trained.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from microlad.errors import InputError, ShapeError
from microlad.models._config import config_from_dict, config_to_dict
from microlad.models._layers import (
    Downsample,
    ResBlock,
    SelfAttention,
    Upsample,
    group_norm,
    timestep_embedding,
)

__all__ = ["UNetConfig", "UNet2D"]


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet2D`.

    Parameters
    ----------
    in_channels
        Latent channels C (input = output channels).
    base_channels
        Width of the first level.
    channel_multipliers
        Width multiplier per level (first = full latent resolution); ``levels = len(...)``,
        inputs must have h, w divisible by ``2**(levels-1)``.
    num_res_blocks
        ResNet blocks per level on the way down (``num_res_blocks + 1`` on the way up).
    attention
        Self-attention in the middle block (lowest resolution only; size-agnostic).
    attention_heads
        Heads of that attention block.
    norm_groups
        GroupNorm groups.
    dropout
        Dropout inside the ResNet blocks.
    """

    in_channels: int = 4
    base_channels: int = 64
    channel_multipliers: tuple[int, ...] = (1, 1, 1)
    num_res_blocks: int = 1
    attention: bool = True
    attention_heads: int = 4
    norm_groups: int = 16
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("in_channels", "base_channels", "num_res_blocks", "attention_heads",
                     "norm_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        mult = tuple(int(m) for m in self.channel_multipliers)
        if not 1 <= len(mult) <= 5 or min(mult) < 1:
            raise InputError(f"channel_multipliers needs 1..5 positive entries, got {mult}")
        for m in mult:
            width = self.base_channels * m
            if width % min(self.norm_groups, width):
                raise InputError(f"level width {width} is not divisible by norm_groups={self.norm_groups}")
        if self.attention and (self.base_channels * mult[-1]) % self.attention_heads:
            raise InputError(
                f"lowest-level width {self.base_channels * mult[-1]} is not divisible by attention_heads={self.attention_heads}"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "channel_multipliers", mult)

    @property
    def levels(self) -> int:
        """Number of resolution levels."""
        return len(self.channel_multipliers)

    @property
    def size_multiple(self) -> int:
        """Latent h and w must be multiples of this (``2**(levels-1)``)."""
        return 2 ** (self.levels - 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (round-trips through :meth:`from_dict`)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`~microlad.errors.InputError`."""
        return config_from_dict(cls, data)


class UNet2D(nn.Module):
    """``forward(x (B, C, h, w), t (B,) int64 in [0, T)) -> (B, C, h, w)``.

    Timesteps enter as a sinusoidal embedding → MLP, added inside every ResNet block.
    Skip connections are concatenated (one per ResNet block / downsampler, as in DDPM).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise InputError(f"UNet2D expects a UNetConfig, got {type(config).__name__}")
        self.config = config
        cfg = config
        widths = [cfg.base_channels * m for m in cfg.channel_multipliers]
        g, base = cfg.norm_groups, cfg.base_channels
        temb_dim = 4 * base
        self.time_mlp = nn.Sequential(nn.Linear(base, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.conv_in = nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1)

        # Down path; record the width of every tensor pushed on the skip stack.
        self.down = nn.ModuleList()
        skip_widths = [widths[0]]
        ch = widths[0]
        for level, width in enumerate(widths):
            for _ in range(cfg.num_res_blocks):
                self.down.append(ResBlock(ch, width, groups=g, temb_dim=temb_dim, dropout=cfg.dropout))
                ch = width
                skip_widths.append(ch)
            if level < len(widths) - 1:
                self.down.append(Downsample(ch))
                skip_widths.append(ch)

        self.mid1 = ResBlock(ch, ch, groups=g, temb_dim=temb_dim, dropout=cfg.dropout)
        self.mid_attn = SelfAttention(ch, heads=cfg.attention_heads, groups=g) if cfg.attention else None
        self.mid2 = ResBlock(ch, ch, groups=g, temb_dim=temb_dim, dropout=cfg.dropout)

        # Up path: num_res_blocks + 1 blocks per level, each consuming one skip.
        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(
                    ResBlock(ch + skip_widths.pop(), widths[level], groups=g, temb_dim=temb_dim, dropout=cfg.dropout)
                )
                ch = widths[level]
            if level > 0:
                self.up.append(Upsample(ch))

        self.norm_out = group_norm(ch, g)
        self.conv_out = nn.Conv2d(ch, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predict the training target (ε or v) for noisy latents ``x`` at timesteps ``t``."""
        cfg = self.config
        m = cfg.size_multiple
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ShapeError(f"U-Net input must be (B, {cfg.in_channels}, h, w), got shape {tuple(x.shape)}")
        if x.shape[2] % m or x.shape[3] % m:
            raise ShapeError(f"U-Net input h, w must be divisible by {m}, got {tuple(x.shape[2:])}")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],) or t.is_floating_point():
            raise ShapeError(f"timesteps must be an integer tensor of shape ({x.shape[0]},), got {tuple(t.shape)} {t.dtype}")

        temb = self.time_mlp(timestep_embedding(t, cfg.base_channels).to(x.dtype))
        h = self.conv_in(x)
        skips = [h]
        for block in self.down:
            h = block(h, temb) if isinstance(block, ResBlock) else block(h)
            skips.append(h)
        h = self.mid1(h, temb)
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        h = self.mid2(h, temb)
        for block in self.up:
            if isinstance(block, ResBlock):
                h = block(torch.cat([h, skips.pop()], dim=1), temb)
            else:
                h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))
