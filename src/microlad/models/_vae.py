"""Categorical VAE: P-channel one-hot phase maps <-> C-channel latents at 1/f resolution.

Differences from the MicroLad reference (METHOD.md §2): the input is a one-hot map and the
output per-phase logits (never a grey scalar), there is no attention block (fully
convolutional, size-agnostic), and the latent shift/scale measured on the training set are
stored as buffers so the diffusion model sees unit-variance latents.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from microlad.errors import InputError, ShapeError
from microlad.models._config import config_from_dict, config_to_dict
from microlad.models._layers import Downsample, ResBlock, SelfAttention, Upsample, group_norm

__all__ = ["VAEConfig", "VAEOutput", "CategoricalVAE"]

# logvar is clamped before exp() so an untrained encoder cannot overflow the KL term.
_LOGVAR_MIN, _LOGVAR_MAX = -30.0, 20.0
# Initial posterior log-variance (bias of the encoder's logvar outputs): std 0.05 instead of 1,
# so the decoder sees informative latents from the first step (faster early training of
# small VAEs); the KL term then sets the variance it needs.
_INIT_LOGVAR = -6.0


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Architecture of :class:`CategoricalVAE`.

    Parameters
    ----------
    n_phases
        Number of phases P (input one-hot channels = output logit channels), 2..255.
    latent_channels
        Latent channels C.
    downsample_factor
        Spatial factor f (power of two); latents are (C, H/f, W/f).
    base_channels
        Width of the full-resolution level.
    channel_multipliers
        Width multiplier per level, ``log2(f) + 1`` entries (full resolution first).
        ``None`` picks ``(1, 2, 4, ..., 6)`` — for f = 4 that is ``(1, 2, 6)``: the
        full-resolution level dominates CPU time (element-wise ops on B·16·H·W values),
        the latent level dominates the parameter count.
    num_res_blocks
        ResNet blocks per level (encoder and decoder).
    norm_groups
        GroupNorm groups (every level width must be divisible by ``min(norm_groups, width)``).
    mid_attention
        Add one self-attention block at latent resolution (size-agnostic; off by default).
    """

    n_phases: int
    latent_channels: int = 4
    downsample_factor: int = 4
    base_channels: int = 16
    channel_multipliers: tuple[int, ...] | None = None
    num_res_blocks: int = 1
    norm_groups: int = 8
    mid_attention: bool = False

    def __post_init__(self) -> None:
        f = self.downsample_factor
        if not isinstance(f, int) or f < 1 or f & (f - 1):
            raise InputError(f"downsample_factor must be a power of two >= 1, got {f!r}")
        if not isinstance(self.n_phases, int) or not 2 <= self.n_phases <= 255:
            raise InputError(f"n_phases must be an integer in 2..255, got {self.n_phases!r}")
        for name in ("latent_channels", "base_channels", "num_res_blocks", "norm_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        levels = int(math.log2(f)) + 1
        mult = self.channel_multipliers
        if mult is None:  # narrow at full resolution (CPU cost), wide at latent resolution
            mult = tuple(min(2**i, 4) for i in range(levels - 1)) + (6,) if levels > 1 else (1,)
        mult = tuple(int(m) for m in mult)
        if len(mult) != levels or min(mult) < 1:
            raise InputError(
                f"channel_multipliers needs log2(downsample_factor)+1 = {levels} positive entries, got {mult}"
            )
        for m in mult:
            width = self.base_channels * m
            if width % min(self.norm_groups, width):
                raise InputError(f"level width {width} is not divisible by norm_groups={self.norm_groups}")
        object.__setattr__(self, "channel_multipliers", mult)

    @property
    def levels(self) -> int:
        """Number of resolution levels (``log2(f) + 1``)."""
        return len(self.channel_multipliers or ())

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (round-trips through :meth:`from_dict`)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VAEConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`~microlad.errors.InputError`."""
        return config_from_dict(cls, data)


class VAEOutput(NamedTuple):
    """Result of :meth:`CategoricalVAE.forward`."""

    logits: torch.Tensor  # (B, P, H, W) per-phase logits
    mean: torch.Tensor  # (B, C, H/f, W/f) posterior mean (raw, not normalized)
    logvar: torch.Tensor  # (B, C, H/f, W/f) posterior log-variance (clamped)
    z: torch.Tensor  # (B, C, H/f, W/f) the latent that was decoded


class _Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_multipliers or ()]
        g = cfg.norm_groups
        self.conv_in = nn.Conv2d(cfg.n_phases, widths[0], 3, padding=1)
        layers: list[nn.Module] = []
        ch = widths[0]
        for level, width in enumerate(widths):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResBlock(ch, width, groups=g))
                ch = width
            if level < len(widths) - 1:  # widen in the (cheap, low-resolution) strided conv
                layers.append(Downsample(ch, widths[level + 1]))
                ch = widths[level + 1]
        layers.append(ResBlock(ch, ch, groups=g))
        if cfg.mid_attention:
            layers.append(SelfAttention(ch, heads=1, groups=g))
        self.body = nn.Sequential(*layers)
        self.norm_out = group_norm(ch, g)
        self.conv_out = nn.Conv2d(ch, 2 * cfg.latent_channels, 3, padding=1)
        with torch.no_grad():
            self.conv_out.bias[cfg.latent_channels:] = _INIT_LOGVAR

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.conv_in(x))
        return self.conv_out(F.silu(self.norm_out(h)))


class _Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_multipliers or ()]
        g = cfg.norm_groups
        ch = widths[-1]
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch, 3, padding=1)
        layers: list[nn.Module] = [ResBlock(ch, ch, groups=g)]
        if cfg.mid_attention:
            layers.append(SelfAttention(ch, heads=1, groups=g))
        for level in reversed(range(len(widths))):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResBlock(ch, widths[level], groups=g))
                ch = widths[level]
            if level > 0:  # narrow to the next level's width in the upsampling conv
                layers.append(Upsample(ch, widths[level - 1]))
                ch = widths[level - 1]
        self.body = nn.Sequential(*layers)
        self.norm_out = group_norm(ch, g)
        self.conv_out = nn.Conv2d(ch, cfg.n_phases, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.body(self.conv_in(z))
        return self.conv_out(F.silu(self.norm_out(h)))


class CategoricalVAE(nn.Module):
    """Convolutional VAE on one-hot phase maps.

    ``encode(x (B, P, H, W)) -> (mean, logvar)`` each (B, C, H/f, W/f);
    ``decode(z (B, C, h, w)) -> logits (B, P, h·f, w·f)``. Any H, W divisible by f.

    Buffers ``latent_shift`` and ``latent_scale`` (C,) default to 0 and 1; the training code
    sets them to the per-channel mean/std of the encoder means on the training set
    (:meth:`set_latent_stats`). The diffusion model works on ``normalize(z)``.
    """

    latent_shift: torch.Tensor
    latent_scale: torch.Tensor

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        if not isinstance(config, VAEConfig):
            raise InputError(f"CategoricalVAE expects a VAEConfig, got {type(config).__name__}")
        self.config = config
        self.encoder = _Encoder(config)
        self.decoder = _Decoder(config)
        c = config.latent_channels
        self.register_buffer("latent_shift", torch.zeros(c))
        self.register_buffer("latent_scale", torch.ones(c))

    # -- shape checks ---------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        p, f = self.config.n_phases, self.config.downsample_factor
        if x.ndim != 4 or x.shape[1] != p:
            raise ShapeError(f"VAE input must be (B, {p}, H, W) one-hot, got shape {tuple(x.shape)}")
        if x.shape[2] % f or x.shape[3] % f:
            raise ShapeError(
                f"VAE input H, W must be divisible by downsample_factor={f}, got {tuple(x.shape[2:])}; crop or pad"
            )

    def _check_latent(self, z: torch.Tensor) -> None:
        c = self.config.latent_channels
        if z.ndim != 4 or z.shape[1] != c:
            raise ShapeError(f"latent must be (B, {c}, h, w), got shape {tuple(z.shape)}")

    # -- encode / decode --------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot (B, P, H, W) -> posterior ``(mean, logvar)``, each (B, C, H/f, W/f)."""
        self._check_input(x)
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(_LOGVAR_MIN, _LOGVAR_MAX)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Raw (denormalized) latent (B, C, h, w) -> per-phase logits (B, P, h·f, w·f)."""
        self._check_latent(z)
        return self.decoder(z)

    @staticmethod
    def reparameterize(
        mean: torch.Tensor, logvar: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """z = mean + exp(logvar/2)·ε, ε ~ N(0, I)."""
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                          device=generator.device if generator is not None else mean.device)
        return mean + torch.exp(0.5 * logvar) * eps.to(mean.device)

    def forward(
        self, x: torch.Tensor, *, sample_posterior: bool = True, generator: torch.Generator | None = None
    ) -> VAEOutput:
        """Encode, draw z from the posterior (or take the mean) and decode."""
        mean, logvar = self.encode(x)
        z = self.reparameterize(mean, logvar, generator=generator) if sample_posterior else mean
        return VAEOutput(self.decoder(z), mean, logvar, z)

    # -- latent normalisation ---------------------------------------------------------------
    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """``(z - latent_shift) / latent_scale`` per channel (dim 1)."""
        return (z - self.latent_shift[:, None, None]) / self.latent_scale[:, None, None]

    def denormalize(self, u: torch.Tensor) -> torch.Tensor:
        """``u * latent_scale + latent_shift`` per channel (dim 1); inverse of :meth:`normalize`."""
        return u * self.latent_scale[:, None, None] + self.latent_shift[:, None, None]

    @torch.no_grad()
    def set_latent_stats(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        """Store per-channel latent shift and scale (each (C,), scale > 0)."""
        c = self.config.latent_channels
        shift = torch.as_tensor(shift, dtype=torch.float32).reshape(-1)
        scale = torch.as_tensor(scale, dtype=torch.float32).reshape(-1)
        if shift.numel() != c or scale.numel() != c:
            raise ShapeError(f"latent shift/scale must have {c} entries, got {shift.numel()} and {scale.numel()}")
        if not torch.isfinite(shift).all() or not (torch.isfinite(scale).all() and (scale > 0).all()):
            raise InputError(f"latent shift must be finite and scale finite and > 0, got {shift.tolist()}, {scale.tolist()}")
        self.latent_shift.copy_(shift)
        self.latent_scale.copy_(scale)
