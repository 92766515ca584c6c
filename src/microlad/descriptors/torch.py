"""Differentiable descriptors on per-phase probabilities (torch).

Same definitions, binning and calibration as the numpy functions in
:mod:`microlad.descriptors`; on hard one-hot inputs they return the same numbers (up to
float32 rounding). Inputs are soft per-phase probabilities or masks, channel first:

* with ``phase=k``: ``probs`` has shape ``(..., P, *spatial)`` (e.g. ``(B, P, H, W)``
  for 2-D batches, ``(P, Z, Y, X)`` for one volume); channel ``k`` is used.
* with ``phase=None``: ``probs`` is already a single-phase field ``(..., *spatial)``.

Functions that work in 2-D and 3-D (``volume_fraction``, ``s2_axis``,
``specific_surface_area``) take ``spatial_dims``; when it is ``None`` it is inferred
from ``ndim``: a single-phase field is taken as unbatched (``spatial_dims = ndim``), a
channel-first input of ndim 3 as ``(P, H, W)`` and of ndim 5 as ``(B, P, Z, Y, X)``.
A 4-D channel-first input is ambiguous (``(B, P, H, W)`` or ``(P, Z, Y, X)``) and
raises :class:`~microlad.errors.ShapeError` unless ``spatial_dims`` is given.
Leading (batch) dimensions are kept in the outputs. Non-float inputs are cast to the
default float dtype; results have the input's float dtype and device.
"""
from __future__ import annotations

import numpy as np
import torch

from microlad.descriptors._s2 import (
    axis_cutoff,
    axis_fft_length,
    axis_norm,
    radial_cutoff,
    radial_table,
)
from microlad.descriptors._surface import _TV_EPS, GRADIENT_CALIBRATION
from microlad.descriptors._validate import check_axis, check_phase, check_voxel_size
from microlad.errors import InputError, ShapeError

__all__ = [
    "volume_fraction",
    "s2_radial",
    "s2_axis",
    "s2_slices",
    "s2_error",
    "specific_surface_area",
    "straight_through_onehot",
]


# ----------------------------------------------------------------------------- helpers

def _as_float(x: object, name: str = "probs") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}; use torch.as_tensor")
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def _spatial_dims(x: torch.Tensor, spatial_dims: int | None, *, channel: bool) -> int:
    if spatial_dims is not None:
        if spatial_dims not in (2, 3):
            raise InputError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if x.ndim < spatial_dims + int(channel):
            raise ShapeError(f"input of shape {tuple(x.shape)} has fewer than {spatial_dims + int(channel)} dims")
        return spatial_dims
    if not channel:
        if x.ndim not in (2, 3):
            raise ShapeError(
                f"a single-phase field of shape {tuple(x.shape)} needs spatial_dims= (2 or 3) when batched"
            )
        return x.ndim
    if x.ndim == 3:
        return 2
    if x.ndim == 5:
        return 3
    raise ShapeError(
        f"cannot tell the spatial dims of shape {tuple(x.shape)}: pass spatial_dims=2 for (B, P, H, W) "
        "or spatial_dims=3 for (P, Z, Y, X)"
    )


def _field(x: torch.Tensor, phase: int | None, spatial_dims: int) -> torch.Tensor:
    """Single-phase field (..., *spatial): channel ``phase`` of (..., P, *spatial) or ``x``."""
    if phase is None:
        if x.ndim < spatial_dims:
            raise ShapeError(f"expected a field with {spatial_dims} spatial dims, got shape {tuple(x.shape)}")
        return x
    phase = check_phase(phase)
    if x.ndim < spatial_dims + 1:
        raise ShapeError(
            f"expected channel-first probabilities (..., P, {spatial_dims} spatial dims), got shape {tuple(x.shape)}"
        )
    n_phases = x.shape[-spatial_dims - 1]
    if phase >= n_phases:
        raise InputError(f"phase {phase} out of range for {n_phases} channels (shape {tuple(x.shape)})")
    return x.select(-spatial_dims - 1, phase)


def _power(spec: torch.Tensor) -> torch.Tensor:
    return spec.real.square() + spec.imag.square()


def _radial(field: torch.Tensor, cutoff: int | None, periodic: bool, slice_dim: bool) -> torch.Tensor:
    """Radial S2 of (..., H, W); with ``slice_dim`` the power is averaged over dim -3."""
    h, w = field.shape[-2:]
    c = radial_cutoff((h, w), cutoff)
    tab = radial_table((h, w), c, bool(periodic))
    power = _power(torch.fft.rfft2(field, s=tab.fft_shape))
    if slice_dim:
        power = power.mean(dim=-3)
    corr = torch.fft.irfft2(power, s=tab.fft_shape)  # sum_x I(x) I(x + r)
    dev, dt = corr.device, corr.dtype
    values = corr.flatten(-2)[..., torch.tensor(tab.flat, device=dev)]
    values = values / torch.tensor(tab.norm, device=dev, dtype=dt)
    bins = torch.tensor(tab.bins, device=dev)
    out = torch.zeros(*values.shape[:-1], c + 1, device=dev, dtype=dt).index_add(-1, bins, values)
    return out / torch.tensor(tab.counts, device=dev, dtype=dt)


# -------------------------------------------------------------------------- descriptors

def volume_fraction(probs: torch.Tensor, *, spatial_dims: int | None = None) -> torch.Tensor:
    """Mean probability of each phase over the spatial dims.

    Parameters
    ----------
    probs : Tensor, shape (..., P, *spatial)
        Per-phase probabilities or one-hot masks, channel first.
    spatial_dims : int, optional
        Number of trailing spatial dims (2 or 3); inferred as in the module notes.

    Returns
    -------
    Tensor, shape (..., P)
        Same as :func:`microlad.descriptors.volume_fraction` on one-hot input.
    """
    x = _as_float(probs)
    sd = _spatial_dims(x, spatial_dims, channel=True)
    return x.mean(dim=tuple(range(-sd, 0)))


def s2_radial(
    probs: torch.Tensor, *, phase: int | None = None, cutoff: int | None = None, periodic: bool = True
) -> torch.Tensor:
    """Radially averaged S2 of 2-D fields, one curve per image.

    Parameters
    ----------
    probs : Tensor, shape (..., P, H, W) with ``phase``, or (..., H, W) without
        Probabilities (or masks) of a batch of 2-D images.
    phase : int, optional
        Channel to correlate; ``None`` if ``probs`` is already one phase's field.
    cutoff : int, optional
        Largest distance in pixels; default ``floor(min(H, W) / 2)``.
    periodic : bool, default True
        Circular correlation, or overlap-normalised zero-padded correlation.

    Returns
    -------
    Tensor, shape (..., cutoff + 1)
        ``S2[k]``, bin k = lag vectors with ``round(|r|) == k``, as
        :func:`microlad.descriptors.s2_radial` (which averages a stack instead of
        returning one curve per image).
    """
    return _radial(_field(_as_float(probs), phase, 2), cutoff, periodic, slice_dim=False)


def s2_slices(
    probs: torch.Tensor,
    *,
    axis: int,
    phase: int | None = None,
    cutoff: int | None = None,
    periodic: bool = True,
) -> torch.Tensor:
    """Radial S2 of the slices normal to ``axis`` of volumes, averaged over slices.

    Parameters
    ----------
    probs : Tensor, shape (..., P, Z, Y, X) with ``phase``, or (..., Z, Y, X) without
        Probabilities (or masks) of one or more volumes.
    axis : int
        Axis normal to the slices, within (Z, Y, X): 0 = z, 1 = y, 2 = x.
    phase : int, optional
        Channel to correlate; ``None`` if ``probs`` is already one phase's field.
    cutoff : int, optional
        Largest in-plane distance; default half the smallest side of a slice.
    periodic : bool, default True
        Circular or overlap-normalised correlation within each slice.

    Returns
    -------
    Tensor, shape (..., cutoff + 1)
        As :func:`microlad.descriptors.s2_slices`.
    """
    field = _field(_as_float(probs), phase, 3)
    ax = check_axis(axis, 3)
    field = field.movedim(ax - 3, -3)
    return _radial(field, cutoff, periodic, slice_dim=True)


def s2_axis(
    probs: torch.Tensor,
    *,
    axis: int,
    phase: int | None = None,
    spatial_dims: int | None = None,
    cutoff: int | None = None,
    periodic: bool = True,
) -> torch.Tensor:
    """Line S2 along one spatial axis, averaged over all positions.

    Parameters
    ----------
    probs : Tensor, shape (..., P, *spatial) with ``phase``, or (..., *spatial) without
        Probabilities (or masks); spatial is (Y, X) or (Z, Y, X).
    axis : int
        Spatial axis of the lag (0 = first spatial dim).
    phase : int, optional
        Channel to correlate; ``None`` if ``probs`` is already one phase's field.
    spatial_dims : int, optional
        2 or 3; inferred as in the module notes.
    cutoff : int, optional
        Largest lag; default ``floor(n / 2)`` for an axis of length n.
    periodic : bool, default True
        Circular, or each lag averaged over the n - r overlapping positions.

    Returns
    -------
    Tensor, shape (..., cutoff + 1)
        As :func:`microlad.descriptors.s2_axis`.
    """
    x = _as_float(probs)
    sd = _spatial_dims(x, spatial_dims, channel=phase is not None)
    field = _field(x, phase, sd)
    ax = check_axis(axis, sd)
    field = field.movedim(ax - sd, -1)
    n = field.shape[-1]
    c = axis_cutoff(n, cutoff, periodic)
    length = axis_fft_length(n, c, bool(periodic))
    power = _power(torch.fft.rfft(field, n=length)).mean(dim=tuple(range(-sd, -1)))
    corr = torch.fft.irfft(power, n=length)[..., : c + 1]
    return corr / torch.as_tensor(axis_norm(n, c, bool(periodic)), device=corr.device, dtype=corr.dtype)


def s2_error(gen_curve: torch.Tensor, ref_curve: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Relative S2 error ``|A_gen - A_ref| / A_ref`` with ``A = sum_r S2(r)`` (last dim).

    Differentiable in ``gen_curve`` (..., K); ``ref_curve`` (..., K) may be a numpy array
    and broadcasts against it (e.g. one reference curve for a batch). As
    :func:`microlad.descriptors.s2_error`.
    """
    gen = _as_float(gen_curve, "gen_curve")
    ref = torch.as_tensor(ref_curve, dtype=gen.dtype, device=gen.device)
    try:
        ok = gen.ndim > 0 and ref.ndim > 0 and gen.shape[-1] == ref.shape[-1]
        torch.broadcast_shapes(gen.shape, ref.shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ShapeError(
            f"S2 curves must have shapes (..., K) with equal K and broadcastable leading dims, "
            f"got {tuple(gen.shape)} and {tuple(ref.shape)}"
        )
    a_ref = ref.sum(dim=-1)
    if bool((a_ref <= 0).any()):
        raise InputError("reference S2 curve sums to 0 (phase absent); s2_error is undefined")
    return (gen.sum(dim=-1) - a_ref).abs() / a_ref


def specific_surface_area(
    probs: torch.Tensor,
    *,
    phase: int | None = None,
    voxel_size: float = 1.0,
    spatial_dims: int | None = None,
) -> torch.Tensor:
    """Smooth interface area per unit total volume (calibrated total variation).

    ``GRADIENT_CALIBRATION[d] * sum_cells |grad u| / (N * voxel_size)``, with grad u the
    gradient of the (tri)linear interpolant at each dual-cell centre (cells of 2x2(x2)
    voxel centres), ``|g|`` smoothed as ``sqrt(|g|^2 + 1e-12) - 1e-6``. Identical to
    ``microlad.descriptors.specific_surface_area(..., method="gradient")`` on one-hot
    input, and calibrated to the marching-cubes report estimator on real data (see
    :mod:`microlad.descriptors._surface`). Non-periodic: the border
    is not interface.

    Parameters
    ----------
    probs : Tensor, shape (..., P, *spatial) with ``phase``, or (..., *spatial) without
        Probabilities (or masks); spatial is (Y, X) or (Z, Y, X), each side >= 2.
    phase : int, optional
        Channel to measure; ``None`` if ``probs`` is already one phase's field.
    voxel_size : float, default 1.0
        Voxel (pixel) edge length.
    spatial_dims : int, optional
        2 or 3; inferred as in the module notes.

    Returns
    -------
    Tensor, shape (...)
        1/voxel_size: area per volume in 3-D, perimeter per area in 2-D.
    """
    x = _as_float(probs)
    sd = _spatial_dims(x, spatial_dims, channel=phase is not None)
    u = _field(x, phase, sd)
    vs = check_voxel_size(voxel_size)
    if min(u.shape[-sd:]) < 2:
        raise ShapeError(f"every spatial side must be >= 2, got shape {tuple(u.shape)}")
    norm2 = 0
    for a in range(-sd, 0):
        g = u.diff(dim=a)
        for b in range(-sd, 0):
            if b != a:
                n_b = g.shape[b]
                g = 0.5 * (g.narrow(b, 0, n_b - 1) + g.narrow(b, 1, n_b - 1))
        norm2 = norm2 + g.square()
    tv = (torch.sqrt(norm2 + _TV_EPS**2) - _TV_EPS).sum(dim=tuple(range(-sd, 0)))
    n_vox = float(np.prod(u.shape[-sd:]))
    return tv * (GRADIENT_CALIBRATION[sd] / (n_vox * vs))


def straight_through_onehot(probs: torch.Tensor, *, dim: int = 1) -> torch.Tensor:
    """Hard one-hot of the argmax in the forward pass, identity gradient backward.

    Parameters
    ----------
    probs : Tensor
        Per-phase probabilities with the phase axis at ``dim``.
    dim : int, default 1
        Phase axis: 1 for (B, P, ...), 0 for (P, ...).

    Returns
    -------
    Tensor, same shape and dtype as ``probs``
        ``onehot + (probs - probs.detach())``: values are exactly the one-hot argmax,
        gradients flow to ``probs`` unchanged (straight-through estimator).
    """
    x = _as_float(probs)
    if not -x.ndim <= dim < x.ndim:
        raise InputError(f"dim {dim} out of range for shape {tuple(x.shape)}")
    index = x.argmax(dim=dim, keepdim=True)
    hard = torch.zeros_like(x).scatter_(dim, index, 1.0)
    return hard + (x - x.detach())  # exactly `hard` in the forward pass
