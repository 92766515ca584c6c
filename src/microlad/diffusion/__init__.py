"""Noise schedule and reverse-process samplers for the latent DDPM (plain objects, no nn.Module).

The schedule owns β/ᾱ and the maps between x0, ε, v and x_t; samplers own the timestep
sequence and one reverse ``step``. Sampling loops live in :mod:`microlad.model` and
:mod:`microlad.reconstruct`.
"""
from __future__ import annotations

from microlad.diffusion._samplers import (
    SAMPLER_ALIASES,
    SAMPLER_NAMES,
    TIMESTEP_SPACINGS,
    AncestralSampler,
    DDIMSampler,
    DPMSolverMultistepSampler,
    canonical_sampler,
    make_sampler,
    make_timesteps,
)
from microlad.diffusion._schedule import BETA_SCHEDULES, PREDICTION_TYPES, DDPMSchedule

__all__ = [
    "DDPMSchedule",
    "DDIMSampler",
    "DPMSolverMultistepSampler",
    "AncestralSampler",
    "canonical_sampler",
    "make_sampler",
    "make_timesteps",
    "SAMPLER_ALIASES",
    "SAMPLER_NAMES",
    "BETA_SCHEDULES",
    "PREDICTION_TYPES",
    "TIMESTEP_SPACINGS",
]
