"""A grain-pack start for L-MPDD: 3D topology from a structural assumption, texture from the prior.

Slices fix a two-phase medium's volume fraction, surface area and two-point statistics, but
not its 3D topology (the Euler characteristic: BENCHMARKS.md, fine-scale findings). L-MPDD
lays out the coarse 3D arrangement from noise, and for a granular rock it lays the pores
out as separate pockets: Berea's pore τ comes out about 3× the rock's. If the user knows the
material is a pack of grains (sandstones, sintered powders), the pore space is the
complement of overlapping grains, which is connected far below the rock's porosity.

:func:`boolean_grains` builds that start from the model's 2D training statistics only: a
Boolean model of overlapping spheres (radius R, Poisson centres) at the training fraction
φ of the pore phase, with the training images' surface density S_V = (4/π)·L_A (the
stereological relation for isotropic media) and, for the Boolean sphere model,
φ = exp(−λ·4πR³/3), S_V = 3·φ·(−ln φ)/R. :func:`project_labels` turns it into an L-MPDD
latent (z slices encoded, averaged over each block of f slices along z), and
``reconstruct(init="grains")`` noises that to ``start``·T (SDEdit) and runs L-MPDD from
there: the prior redraws the grains' shape and texture while keeping most of their
connectivity.

A smooth pack comes out of L-MPDD with smoother sections than the training images (the
prior does not fully redraw the texture it is not asked for), a very rough one with less
connected pores. :func:`calibrate_roughness` picks the surface roughness A from 2D data:
the smallest A at which a trial reconstruction's slices, before the perimeter-calibrated
smoothing, have the training images' boundary length per area (the smoothing then trims
any excess). Volumes (Z, Y, X); lengths in voxels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from microlad.errors import InputError

__all__ = ["GrainParameters", "grain_parameters", "boolean_grains", "project_labels", "calibrate_roughness",
           "calibration_cubes", "ROUGHNESS_GRID"]

ROUGHNESS_GRID = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
"""Amplitudes A (voxels) :func:`calibrate_roughness` tries, in this order, until the slices
are as rough as the training images'."""

CALIBRATION_SIDE = 128
"""Largest side (voxels) of the trial cubes of ``reconstruct(init="grains", grain_roughness="auto")``:
a trial cube has the requested volume's smallest side up to this (L-MPDD's slices are rougher
in small volumes: on Leopard the crossing A is 0–1 at 64³ and 2.1–2.2 at 128³)."""

CALIBRATION_VOXELS = 2 * 128**3
"""Trial voxels the calibration aims at: ``min(4, round(CALIBRATION_VOXELS / side³))`` cubes (at
least 1; seeds 0, 1, ..., fixed, so A is the same for every seed and call), whose mean perimeter
error :func:`calibrate_roughness` sees. On Berea the crossing A of single cubes varies by ±0.6
between seeds at 64³ and by ±0.2 at 128³, where the perimeter changes by about 11 % per voxel
of A (BENCHMARKS.md, fine-scale findings)."""


def calibration_cubes(shape: Sequence[int], factor: int) -> tuple[int, int]:
    """(side, count) of the trial cubes for a requested volume ``shape`` (Z, Y, X) and VAE
    ``factor``: side = min(smallest side, CALIBRATION_SIDE), a multiple of ``factor``."""
    side = max(factor, min(CALIBRATION_SIDE, min(int(s) for s in shape)) // factor * factor)
    return side, min(4, max(1, round(CALIBRATION_VOXELS / side**3)))


@dataclass(frozen=True)
class GrainParameters:
    """A Boolean sphere model: pore fraction ``porosity``, sphere ``radius`` (voxels) and
    ``intensity`` (sphere centres per voxel)."""

    porosity: float
    radius: float
    intensity: float


def grain_parameters(porosity: float, surface_density_2d: float) -> GrainParameters:
    """Boolean-sphere parameters for pore fraction ``porosity`` (0 < φ < 1) and slice
    perimeter per area ``surface_density_2d`` (L_A, 1/voxel, as
    :func:`microlad.descriptors.slice_perimeter_density`)."""
    phi, la = float(porosity), float(surface_density_2d)
    if not 0.0 < phi < 1.0:
        raise InputError(f"grains need a pore fraction in (0, 1), got {phi}")
    if not la > 0.0:
        raise InputError(f"grains need a positive slice perimeter density, got {la}")
    sv = 4.0 / math.pi * la
    radius = 3.0 * phi * (-math.log(phi)) / sv
    return GrainParameters(phi, radius, -math.log(phi) / (4.0 / 3.0 * math.pi * radius**3))


def boolean_grains(shape: tuple[int, int, int], params: GrainParameters, rng: np.random.Generator,
                   roughness: float = 0.0, correlation: float = 1.5) -> np.ndarray:
    """(Z, Y, X) bool, True = grain: overlapping spheres of ``params.radius`` with Poisson
    centres (``params.intensity`` per voxel), generated with a margin so the faces are not
    depleted of grains. ``roughness`` A > 0 (voxels) perturbs the grain surfaces: grain where
    R + A·n − (distance to the nearest centre) exceeds the threshold that keeps the pore
    fraction at ``params.porosity``, n a Gaussian random field of unit standard deviation and
    correlation length ``correlation`` voxels."""
    margin = int(math.ceil(params.radius + 3 * roughness)) + 1
    big = tuple(int(s) + 2 * margin for s in shape)
    count = rng.poisson(params.intensity * float(np.prod(big)))
    centres = np.floor(rng.uniform(0, 1, (count, 3)) * np.asarray(big)).astype(np.int64)
    empty = np.ones(big, dtype=bool)
    empty[centres[:, 0], centres[:, 1], centres[:, 2]] = False
    inner = tuple(slice(margin, margin + int(s)) for s in shape)
    distance = ndi.distance_transform_edt(empty)
    if roughness <= 0:
        return (distance <= params.radius)[inner]
    field = ndi.gaussian_filter(rng.standard_normal(big), correlation)
    score = (params.radius + roughness * field / field.std() - distance)[inner]
    return score > np.quantile(score, params.porosity)


@torch.inference_mode()
def project_labels(vae, labels: np.ndarray, options) -> torch.Tensor:
    """The normalized L-MPDD latent (C, Z/f, Y/f, X/f) of ``labels`` (Z, Y, X): its z slices
    encoded (posterior means), averaged over each block of f slices along z."""
    from microlad.reconstruct._orient import to_slices
    from microlad.reconstruct.decode import encode_slices

    f, p = vae.config.downsample_factor, vae.config.n_phases
    device = next(vae.parameters()).device
    onehot = F.one_hot(torch.from_numpy(labels.astype(np.int64)), p).permute(3, 0, 1, 2).float().to(device)
    z = encode_slices(vae, to_slices(onehot, 0), options)  # (Z, C, h, w), raw latents
    d, c, h, w = z.shape
    pooled = z.reshape(d // f, f, c, h, w).mean(1)  # (Z/f, C, h, w)
    return vae.normalize(pooled).movedim(0, 1).contiguous()


def calibrate_roughness(perimeter_error: Callable[[float], float],
                        grid: Sequence[float] = ROUGHNESS_GRID) -> tuple[float, tuple[tuple[float, float], ...]]:
    """The smallest roughness A at which ``perimeter_error(A)`` (relative slice-perimeter
    error of a trial reconstruction against the training images, before smoothing) is >= 0:
    the amplitudes of ``grid`` are tried in increasing order until one reaches 0, and A is
    interpolated linearly between it and the one before. The first amplitude when it already
    reaches 0; the last when none does. Returns ``(A, ((amplitude, error), ...))`` with the
    trials made."""
    amplitudes = sorted(float(a) for a in grid)
    if not amplitudes or amplitudes[0] < 0:
        raise InputError(f"roughness amplitudes must be >= 0, got {list(grid)}")
    trials: list[tuple[float, float]] = []
    for a in amplitudes:
        err = float(perimeter_error(a))
        trials.append((a, err))
        if err >= 0:
            if len(trials) == 1:
                return a, tuple(trials)
            (a0, e0), (a1, e1) = trials[-2], trials[-1]
            return a0 + (a1 - a0) * (-e0) / (e1 - e0), tuple(trials)
    return amplitudes[-1], tuple(trials)
