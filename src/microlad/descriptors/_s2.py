"""Two-point correlation S2 (FFT based), numpy implementation.

Definition used everywhere in microlad (numpy and torch):

    S2(r) = mean over positions x of I(x) * I(x + r)

for the indicator (or probability) field I of one phase and a lag vector r.

* ``periodic=True``: x + r wraps around the image (circular correlation); every lag is
  averaged over all N positions.
* ``periodic=False``: only positions with both x and x + r inside the image count; the
  image is zero-padded before the FFT and each lag is divided by its overlap count
  prod_i (n_i - |r_i|) (the unbiased estimator, as in PoreSpy).

Radial binning (2-D): bin k holds every lag vector r = (dy, dx) with round(|r|) == k,
k = 0..cutoff, and S2 of the bin is the plain mean over those lag vectors (|r| is never
exactly k + 1/2 for integer lags, so the rule has no ties). For periodic images lags are
taken in minimum-image form, dy in [-H/2, H/2), so every distinct lag counts once.
The default cutoff is floor(min(H, W) / 2).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import fft as sp_fft

from microlad.descriptors._validate import as_labels, check_axis, check_cutoff, check_phase
from microlad.errors import InputError, ShapeError

__all__ = ["s2_radial", "s2_axis", "s2_slices", "s2_error", "s2_autocorrelation"]

# Upper bound on the number of float64 values transformed at once (bounds memory for
# large stacks, e.g. 400 slices of 400 x 400); the chunks are batched FFTs.
_CHUNK_VALUES = 1 << 23


# --------------------------------------------------------------------------- geometry
# Shared with microlad.descriptors.torch so that both back ends bin identically.

@dataclass(frozen=True)
class RadialTable:
    """Lag vectors of a radial S2 and where to read them from the FFT grid."""

    fft_shape: tuple[int, int]
    flat: np.ndarray  # (M,) flat index of each lag in the (fft_shape) correlation grid
    bins: np.ndarray  # (M,) radial bin of each lag, round(|r|)
    norm: np.ndarray  # (M,) number of position pairs per lag
    counts: np.ndarray  # (cutoff + 1,) number of lag vectors per bin


@functools.lru_cache(maxsize=64)
def radial_table(shape: tuple[int, int], cutoff: int, periodic: bool) -> RadialTable:
    """Lag table for a radial S2 of (H, W) images up to ``cutoff`` (round(|r|) binning)."""
    h, w = shape
    if periodic:
        fft_shape = (h, w)
    else:  # padding n + cutoff keeps lags |r_i| <= cutoff free of wrap-around
        fft_shape = (sp_fft.next_fast_len(h + cutoff), sp_fft.next_fast_len(w + cutoff, real=True))
    r = np.arange(-cutoff, cutoff + 1)
    dy, dx = (a.ravel() for a in np.meshgrid(r, r, indexing="ij"))
    bins = np.rint(np.hypot(dy, dx)).astype(np.intp)
    keep = bins <= cutoff
    dy, dx, bins = dy[keep], dx[keep], bins[keep]
    flat = (dy % fft_shape[0]) * fft_shape[1] + (dx % fft_shape[1])
    if periodic:  # dy = -H/2 and +H/2 are the same lag on a torus: count it once
        flat, first = np.unique(flat, return_index=True)
        dy, dx, bins = dy[first], dx[first], bins[first]
        norm = np.full(flat.shape, float(h * w))
    else:
        norm = ((h - np.abs(dy)) * (w - np.abs(dx))).astype(np.float64)
    counts = np.bincount(bins, minlength=cutoff + 1).astype(np.float64)
    for a in (flat, bins, norm, counts):
        a.setflags(write=False)
    return RadialTable(fft_shape, flat, bins, norm, counts)


def axis_fft_length(n: int, cutoff: int, periodic: bool) -> int:
    """FFT length for a line S2 along an axis of length ``n``."""
    return n if periodic else sp_fft.next_fast_len(n + cutoff, real=True)


def axis_norm(n: int, cutoff: int, periodic: bool) -> np.ndarray:
    """Position pairs per lag r = 0..cutoff along one axis (per line)."""
    r = np.arange(cutoff + 1, dtype=np.float64)
    return np.full_like(r, float(n)) if periodic else n - r


def radial_cutoff(shape: tuple[int, int], cutoff: object) -> int:
    """Validated radial cutoff for (H, W) slices; default floor(min(H, W) / 2)."""
    half = min(shape) // 2
    return check_cutoff(cutoff, limit=half, default=half)


def axis_cutoff(n: int, cutoff: object, periodic: bool) -> int:
    """Validated line cutoff: default floor(n / 2); at most n/2 (periodic) or n - 1."""
    return check_cutoff(cutoff, limit=n // 2 if periodic else n - 1, default=n // 2)


# --------------------------------------------------------------------------- numpy S2

def _radial_from_stack(mask: np.ndarray, cutoff: object, periodic: bool) -> np.ndarray:
    """Radial S2 of a (N, H, W) boolean stack, averaged over the N slices."""
    n, h, w = mask.shape
    c = radial_cutoff((h, w), cutoff)
    tab = radial_table((h, w), c, bool(periodic))
    step = max(1, _CHUNK_VALUES // (tab.fft_shape[0] * tab.fft_shape[1]))
    power = np.zeros((tab.fft_shape[0], tab.fft_shape[1] // 2 + 1))
    for start in range(0, n, step):  # batched FFTs over chunks of slices
        f = sp_fft.rfft2(mask[start:start + step].astype(np.float64), s=tab.fft_shape)
        power += np.sum(f.real**2 + f.imag**2, axis=0)
    corr = sp_fft.irfft2(power / n, s=tab.fft_shape)  # sum_x I(x) I(x + r), slice mean
    values = corr.ravel()[tab.flat] / tab.norm
    return np.bincount(tab.bins, weights=values, minlength=c + 1) / tab.counts


def s2_radial(
    image: np.ndarray, *, phase: int, cutoff: int | None = None, periodic: bool = True
) -> np.ndarray:
    """Radially averaged two-point correlation of 2-D images.

    Parameters
    ----------
    image : ndarray of int, shape (Y, X) or (N, Y, X)
        One label image, or a stack of N 2-D slices (their S2 is averaged).
    phase : int
        Phase label whose indicator ``I = (image == phase)`` is correlated.
    cutoff : int, optional
        Largest distance in pixels; default ``floor(min(Y, X) / 2)`` (also the maximum).
    periodic : bool, default True
        Wrap lags around the image; ``False`` averages each lag over the overlapping
        positions only (zero padding, divided by the overlap count).

    Returns
    -------
    ndarray of float64, shape (cutoff + 1,)
        ``S2[k]`` for distance k = 0..cutoff pixels (multiply k by the pixel size for
        length units): the mean of S2 over lag vectors with ``round(|r|) == k``.
        ``S2[0]`` is the phase's area fraction. A phase absent from the image gives 0.

    Notes
    -----
    See the module docstring of :mod:`microlad.descriptors._s2` for the definition and
    binning; :func:`microlad.descriptors.torch.s2_radial` is the same on probabilities.
    """
    arr = as_labels(image, ndims=(2, 3), name="image")
    mask = (arr == check_phase(phase))
    return _radial_from_stack(mask if mask.ndim == 3 else mask[None], cutoff, periodic)


def s2_slices(
    volume: np.ndarray, *, phase: int, axis: int, cutoff: int | None = None, periodic: bool = True
) -> np.ndarray:
    """Radial S2 of the 2-D slices normal to ``axis`` of a volume, averaged over slices.

    This is the S2 used by the paper's evaluation: e.g. ``axis=0`` averages the (Y, X)
    slices of a (Z, Y, X) volume.

    Parameters
    ----------
    volume : ndarray of int, shape (Z, Y, X)
        Label volume with phases 0..P-1.
    phase : int
        Phase label to correlate.
    axis : int
        Axis normal to the slices (0 = z, 1 = y, 2 = x).
    cutoff : int, optional
        Largest distance in voxels; default half the smallest side of a slice.
    periodic : bool, default True
        Periodic (circular) or overlap-normalised non-periodic correlation in each slice.

    Returns
    -------
    ndarray of float64, shape (cutoff + 1,)
        ``S2[k]`` for in-plane distance k = 0..cutoff voxels, binned as in
        :func:`s2_radial`.
    """
    arr = as_labels(volume, ndims=(3,), name="volume")
    ax = check_axis(axis, 3)
    mask = np.moveaxis(arr == check_phase(phase), ax, 0)
    return _radial_from_stack(mask, cutoff, periodic)


def s2_axis(
    volume: np.ndarray, *, phase: int, axis: int, cutoff: int | None = None, periodic: bool = True
) -> np.ndarray:
    """Line two-point correlation along one axis, averaged over all positions.

    Parameters
    ----------
    volume : ndarray of int, shape (Y, X) or (Z, Y, X)
        Label image or volume with phases 0..P-1.
    phase : int
        Phase label to correlate.
    axis : int
        Axis of the lag (for a volume 0 = z, 1 = y, 2 = x); lags are only along it.
    cutoff : int, optional
        Largest lag in voxels; default ``floor(n / 2)`` with n the length of ``axis``;
        at most n/2 (periodic) or n - 1 (non-periodic).
    periodic : bool, default True
        Wrap along ``axis``, or average each lag over the n - r overlapping positions.

    Returns
    -------
    ndarray of float64, shape (cutoff + 1,)
        ``S2[r] = mean_x I(x) I(x + r e_axis)`` for r = 0..cutoff voxels.
    """
    arr = as_labels(volume, ndims=(2, 3), name="volume")
    ax = check_axis(axis, arr.ndim)
    n = arr.shape[ax]
    c = axis_cutoff(n, cutoff, periodic)
    length = axis_fft_length(n, c, bool(periodic))
    lines = np.moveaxis(arr == check_phase(phase), ax, -1).reshape(-1, n)
    step = max(1, _CHUNK_VALUES // length)
    power = np.zeros(length // 2 + 1)
    for start in range(0, lines.shape[0], step):  # batched FFTs over chunks of lines
        f = sp_fft.rfft(lines[start:start + step].astype(np.float64), n=length, axis=-1)
        power += np.sum(f.real**2 + f.imag**2, axis=0)
    corr = sp_fft.irfft(power / lines.shape[0], n=length)[: c + 1]
    return corr / axis_norm(n, c, bool(periodic))


def s2_error(gen_curve: np.ndarray, ref_curve: np.ndarray) -> float | np.ndarray:
    """Relative S2 error of the paper: ``|A_gen - A_ref| / A_ref``.

    Parameters
    ----------
    gen_curve, ref_curve : array_like, shape (..., K)
        S2 curves on the same lags r = 0..K-1 (e.g. from :func:`s2_slices`); leading
        dimensions broadcast.

    Returns
    -------
    float or ndarray
        With ``A = sum_r S2(r)`` over the last axis; a float for 1-D curves.
        Dimensionless.

    Raises
    ------
    ShapeError
        If the curves' last dimensions differ or the leading ones do not broadcast.
    InputError
        If ``A_ref`` is not positive (the reference phase is absent).
    """
    gen = np.asarray(gen_curve, dtype=np.float64)
    ref = np.asarray(ref_curve, dtype=np.float64)
    try:
        ok = gen.ndim > 0 and ref.ndim > 0 and gen.shape[-1] == ref.shape[-1]
        np.broadcast_shapes(gen.shape, ref.shape)
    except ValueError:
        ok = False
    if not ok:
        raise ShapeError(
            f"S2 curves must have shapes (..., K) with equal K and broadcastable leading dims, "
            f"got {gen.shape} and {ref.shape}"
        )
    a_gen, a_ref = gen.sum(axis=-1), ref.sum(axis=-1)
    if np.any(a_ref <= 0):
        raise InputError("reference S2 curve sums to 0 (phase absent); s2_error is undefined")
    err = np.abs(a_gen - a_ref) / a_ref
    return float(err) if err.ndim == 0 else err


def s2_autocorrelation(s2: np.ndarray) -> np.ndarray:
    """S2 with the phase fraction taken out: ρ(r) = (S2(r) − φ²) / (φ − φ²), φ = S2(0).

    ``s2`` is a radial curve (K,) whose entry 0 is r = 0 (e.g. :func:`s2_radial`). ρ is 1 at
    r = 0 and tends to 0 at long range; it compares feature shape between samples whose
    phase fractions differ by chance. Zeros where the phase fills all or nothing.
    """
    s2 = np.asarray(s2, dtype=float)
    phi = float(s2[0])
    if not 0.0 < phi < 1.0:
        return np.zeros_like(s2)
    return (s2 - phi * phi) / (phi - phi * phi)
