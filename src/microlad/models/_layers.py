"""Building blocks shared by the VAE and the U-Net.

Every block is fully convolutional: nothing depends on the spatial size, so a model trained
on 64×64 patches runs on any size divisible by its total downsampling factor.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from microlad.errors import InputError

__all__ = [
    "count_parameters",
    "group_norm",
    "timestep_embedding",
    "ResBlock",
    "Downsample",
    "Upsample",
    "SelfAttention",
]


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (buffers such as latent statistics excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with ``min(groups, channels)`` groups (channels must be divisible by it)."""
    g = min(groups, channels)
    return nn.GroupNorm(g, channels, eps=1e-6)


def timestep_embedding(t: torch.Tensor, dim: int, *, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, (B,) -> (B, dim) (Vaswani et al. 2017).

    Frequencies are computed in float64 and the result cast to float32 once.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64, device=t.device) / half)
    args = t.to(torch.float64)[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb.to(torch.float32)


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv3×3 (+ time embedding) → GroupNorm → SiLU → conv3×3, residual.

    The last convolution is zero-initialised so each block starts as the identity
    (stable early training for both the VAE and the denoiser).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        groups: int,
        temb_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_dim, out_channels) if temb_dim else None
        self.norm2 = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.temb_proj is not None and temb is not None:
            h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Stride-2 3×3 convolution (halves H and W; they must be even)."""

    def __init__(self, channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour ×2 upsampling followed by a 3×3 convolution.

    ``out_channels`` lets the decoder narrow to the next level's width in the same
    convolution (the convolution at the higher resolution is the expensive one).
    """

    def __init__(self, channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the h·w positions of a feature map, residual.

    Size-agnostic (the tokens are the pixels, no positional table); the output projection is
    zero-initialised so the block starts as the identity.
    """

    def __init__(self, channels: int, *, heads: int, groups: int) -> None:
        super().__init__()
        if channels % heads:
            raise InputError(f"attention channels {channels} are not divisible by heads={heads}; choose heads dividing the channel count")
        self.heads = heads
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # (b, heads, hw, c/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)
