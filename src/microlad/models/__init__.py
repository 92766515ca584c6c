"""Neural networks: the categorical VAE, the latent U-Net denoiser and the VAE loss.

Training loops live in :mod:`microlad.training`; sampling loops in :mod:`microlad.model`
and :mod:`microlad.reconstruct`.
"""
from __future__ import annotations

from microlad.models._layers import count_parameters
from microlad.models._unet import UNet2D, UNetConfig
from microlad.models._vae import CategoricalVAE, VAEConfig, VAEOutput
from microlad.models.losses import VAELoss, kl_per_element, phase_class_weights, vae_loss

__all__ = [
    "VAEConfig",
    "VAEOutput",
    "CategoricalVAE",
    "UNetConfig",
    "UNet2D",
    "count_parameters",
    "VAELoss",
    "vae_loss",
    "phase_class_weights",
    "kl_per_element",
]
