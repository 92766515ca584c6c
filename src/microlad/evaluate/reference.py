"""Reference statistics for ``microlad evaluate``: mean, spread and tolerances.

Three sources, one result type (:class:`Reference`):

* 2-D images (:func:`reference_from_images`): ``n_patches`` random patches of the
  training patch size (seeded), each measured by :func:`~microlad.evaluate.metrics.image_metrics`.
* a 3-D volume (:func:`reference_from_volume`): random sub-volumes of the evaluated
  volumes' shape, each measured exactly like a generated volume (3D-to-3D mode).
* a model's stored training statistics (:func:`reference_from_model`): mean and std of
  VF, S2 and perimeter over its training patches; what it does not store (cluster
  statistics, per-patch S2 errors, anisotropy, reference pictures) is named in
  ``notes`` rather than invented.

``mean[k]`` and ``std[k]`` have the shapes of :data:`~microlad.evaluate.metrics.SPECS`
(std over single samples, ``ddof=1``: the band drawn in the report; absent key: no
spread known).

A generated volume holds far more material than one training-size patch, so rating it
against the single-patch spread would pass almost anything (on SOFC 64² patches the
VF alone varies by ± 0.07). ``spread[k]`` (used by the verdict) and ``tolerance`` are
therefore those of the mean over a *group* of ``group_size`` patches, the number of
independent patches one volume is worth: ``g = (N / ℓ) · (slice area / patch area)``
with N the volume's smallest side and ℓ = 2 Σ r² C(r) / Σ r C(r) the ratio of the 3-D
to the 2-D integral range of the reference's covariance C(r) = S2(r) - VF² (summed up to
its first zero; the largest ℓ over phases, the lenient choice), since the variance of a
mean over a region scales with integral range / size. Groups are drawn from the patches
with replacement (seeded); for a model, ``spread = std / √g``. Sub-volumes of a 3-D
reference already have the evaluated size: g = 1. ``tolerance`` holds the 95th
percentile over groups of their ``s2_error`` / ``s2_small_r`` against the reference mean.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from microlad.descriptors import s2_error, s2_radial, stereological_surface_area, volume_fraction
from microlad.errors import InputError, ShapeError
from microlad.evaluate.metrics import SMALL_R, MetricOptions, image_metrics, volume_metrics
from microlad.metadata import TrainingStats

__all__ = [
    "Reference",
    "reference_from_images",
    "reference_from_volume",
    "reference_from_model",
    "training_stats",
    "s2_errors",
    "s2_small_r_errors",
    "TOLERANCE_QUANTILE",
    "group_size",
    "check_subvolume_shape",
]

#: Quantile of the reference samples' own S2 errors used as the S2 tolerance.
TOLERANCE_QUANTILE = 0.95
#: Model-only S2 tolerances: this many standard deviations (normal 95 % two-sided).
_Z95 = 1.96


@dataclass(frozen=True)
class Reference:
    """What generated volumes are compared with.

    kind : "images", "volume" or "model". sources : file names or the model's name.
    cutoff : largest S2 lag (voxels). sample_shape : patch (H, W) or sub-volume (Z, Y, X).
    n_samples : patches / sub-volumes behind the spread (model: its training patches).
    mean, std, spread, tolerance, group_size : see the module docstring.
    notes : what is missing and why.
    previews : up to three 2-D label images of the reference (for the report).
    extra : other stored facts (e.g. the model's held-out VAE accuracy per phase).
    """

    kind: str
    sources: tuple[str, ...]
    n_phases: int
    cutoff: int
    sample_shape: tuple[int, ...]
    n_samples: int
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    tolerance: dict[str, np.ndarray]
    spread: dict[str, np.ndarray] = field(default_factory=dict)
    group_size: int = 1
    notes: tuple[str, ...] = ()
    previews: tuple[np.ndarray, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def training_stats(model: Any) -> TrainingStats:
    """The :class:`~microlad.metadata.TrainingStats` stored with ``model`` (an empty one if none)."""
    return TrainingStats.from_dict(getattr(model, "training_stats", None))


def s2_errors(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """:func:`microlad.descriptors.s2_error` over broadcast (..., K) curves; NaN where the
    reference phase is absent (its curve sums to 0)."""
    g, r = np.broadcast_arrays(np.asarray(gen, float), np.asarray(ref, float))
    out = np.full(g.shape[:-1], np.nan)
    ok = r.sum(axis=-1) > 0
    if ok.any():
        out[ok] = s2_error(g[ok], r[ok])
    return out


def s2_small_r_errors(gen: np.ndarray, ref: np.ndarray, small_r: int = SMALL_R) -> np.ndarray:
    """Largest pointwise ``|S2_gen(r) - S2_ref(r)|`` for r = 0..small_r, (..., K) → (...)."""
    k = small_r + 1
    return np.abs(np.asarray(gen, float)[..., :k] - np.asarray(ref, float)[..., :k]).max(axis=-1)


def group_size(s2_mean: np.ndarray, vf: np.ndarray, volume_shape: Sequence[int], patch_shape: Sequence[int]) -> int:
    """Independent training-size patches one volume is worth (see the module docstring).

    s2_mean : (P, K) radial S2 of the reference; vf : (P,); shapes in voxels.
    """
    r = np.arange(np.shape(s2_mean)[-1], dtype=float)
    ell = 1.0
    for curve, f in zip(np.asarray(s2_mean, float), np.asarray(vf, float)):
        cov = curve - f * f
        stop = np.flatnonzero(cov[1:] <= 0)
        k = stop[0] + 1 if stop.size else cov.size
        den = float((r[:k] * cov[:k]).sum())
        if den > 0:
            ell = max(ell, 2.0 * float((r[:k] ** 2 * cov[:k]).sum()) / den)
    dims = sorted(int(v) for v in volume_shape)
    area_ratio = dims[0] * dims[1] / float(np.prod(patch_shape))  # the smallest slice
    return max(1, int(round(dims[0] / ell * area_ratio)))


def _from_samples(
    samples: Sequence[dict[str, np.ndarray]],
    *,
    group: int = 1,
    seed: int = 0,
    center: dict[str, np.ndarray] | None = None,
    n_groups: int = 256,
    **kw: Any,
) -> Reference:
    """Mean, std, group spread and S2 tolerances over ``samples``; ``center`` replaces
    means (e.g. the whole-image S2)."""
    keys = sorted(set.intersection(*(set(s) for s in samples)))
    stacked = {k: np.stack([np.asarray(s[k], float) for s in samples]) for k in keys}
    n = len(samples)
    if group > 1:
        idx = np.random.default_rng(seed + 1).integers(n, size=(n_groups, group))
    with np.errstate(invalid="ignore"), _quiet():
        mean = {k: np.nanmean(v, axis=0) for k, v in stacked.items()}
        std = {k: (np.nanstd(v, axis=0, ddof=1) if n > 1 else np.full(v.shape[1:], np.nan)) for k, v in stacked.items()}
        mean.update(center or {})
        groups = {k: (np.nanmean(v[idx], axis=1) if group > 1 else v) for k, v in stacked.items()}
        spread = {k: (np.nanstd(v, axis=0, ddof=1) if len(v) > 1 else np.full(v.shape[1:], np.nan)) for k, v in groups.items()}
        tol = {
            "s2_error": np.nanquantile(s2_errors(groups["s2"], mean["s2"]), TOLERANCE_QUANTILE, axis=0),
            "s2_small_r": np.quantile(s2_small_r_errors(groups["s2"], mean["s2"]), TOLERANCE_QUANTILE, axis=0),
        }
    return Reference(mean=mean, std=std, spread=spread, tolerance=tol, n_samples=n, group_size=int(group), **kw)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's all-NaN RuntimeWarnings (a phase absent from every sample)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def reference_from_images(
    images: Sequence[np.ndarray],
    *,
    opts: MetricOptions,
    patch: int,
    volume_shape: Sequence[int],
    n_patches: int = 64,
    seed: int = 0,
    sources: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
) -> Reference:
    """Reference from 2-D label images, measured on ``patch`` × ``patch`` crops.

    The crops are the images' non-overlapping tiles (a regular grid from each image's
    origin), which weight every pixel equally: ``n_patches`` of them drawn uniformly
    (``numpy`` generator seeded with ``seed``) when there are that many. Images with fewer
    tiles (e.g. 16 in a 256² image with 64² patches) give their means from all their
    tiles and their spreads from ``n_patches`` random crops (an image picked uniformly,
    then a uniform position), whose offsets over-weight image centres and would bias a
    mean. ``patch`` is clipped to the smallest image side; ``opts.cutoff`` must be at most
    ``patch // 2``. The mean VF and S2 are those of the whole images (averaged over them,
    as :func:`microlad.evaluate.s2_fidelity`), free of patch sampling noise.
    """
    if not images:
        raise InputError("need at least one reference image")
    if any(np.ndim(im) != 2 for im in images):
        raise ShapeError("reference images must be 2D")
    patch = int(min(patch, *(min(im.shape) for im in images)))
    if opts.cutoff > patch // 2:
        raise ShapeError(f"S2 cutoff {opts.cutoff} exceeds half the reference patch size {patch}")
    rng = np.random.default_rng(seed)
    from microlad.data import grid_tiles  # here, not at module level: microlad.data loads torch

    tiles = [np.ascontiguousarray(t) for im in images for t in grid_tiles(im, patch)]
    tile_means: dict[str, np.ndarray] = {}
    if len(tiles) >= int(n_patches):
        crops = [tiles[i] for i in np.sort(rng.choice(len(tiles), size=int(n_patches), replace=False))]
    else:
        tile_samples = [image_metrics(t, opts) for t in tiles]
        keys = sorted(set.intersection(*(set(m) for m in tile_samples)))
        with np.errstate(invalid="ignore"), _quiet():
            tile_means = {k: np.nanmean(np.stack([np.asarray(m[k], float) for m in tile_samples]), axis=0) for k in keys}
        crops = []
        for _ in range(int(n_patches)):
            im = images[int(rng.integers(len(images)))]
            y, x = (int(rng.integers(s - patch + 1)) for s in im.shape)
            crops.append(np.ascontiguousarray(im[y:y + patch, x:x + patch]))
    samples = []
    for crop in crops:
        samples.append(image_metrics(crop, opts))
        if progress:
            progress(1)
    s2_whole = np.stack([np.mean([s2_radial(im, phase=p, cutoff=opts.cutoff, periodic=False) for im in images], axis=0)
                         for p in range(opts.n_phases)])
    center = {**tile_means, "vf": np.mean([volume_fraction(im, n_phases=opts.n_phases) for im in images], axis=0),
              "s2": np.repeat(s2_whole[:, None], 3, axis=1)}
    g = group_size(s2_whole, center["vf"], volume_shape, (patch, patch))
    return _from_samples(samples, center=center, group=g, seed=seed, kind="images", sources=tuple(sources), n_phases=opts.n_phases, cutoff=opts.cutoff,
                         sample_shape=(patch, patch), previews=tuple(crops[:3]),
                         notes=("VF and S2 reference: the whole image(s); other means: the images' tiles; spreads: the patches",
                                "2-D reference: transport, TPB, isolated-cluster and Euler-characteristic statistics need a 3-D reference",
                                "surface area reference: stereological 4/pi L_A of the patches"))


def check_subvolume_shape(reference_shape: Sequence[int], shape: Sequence[int]) -> None:
    """Raise unless a 3-D reference of ``reference_shape`` holds sub-volumes of ``shape``."""
    if len(reference_shape) != 3:
        raise ShapeError("a 3D reference must be a volume (Z, Y, X)")
    if any(r < s for r, s in zip(reference_shape, shape)):
        raise ShapeError(f"3D reference {tuple(reference_shape)} is smaller than the evaluated volumes {tuple(shape)}")


def reference_from_volume(
    volume: np.ndarray,
    *,
    shape: tuple[int, int, int],
    opts: MetricOptions,
    n_sub: int = 8,
    seed: int = 0,
    sources: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
) -> Reference:
    """Reference from a 3-D label volume: ``n_sub`` random sub-volumes of ``shape``.

    Positions are uniform (seeded); a reference exactly of ``shape`` gives one sample
    (no spread). Each sub-volume is measured like a generated volume.
    """
    check_subvolume_shape(np.shape(volume), shape)
    room = [r - s for r, s in zip(volume.shape, shape)]
    rng = np.random.default_rng(seed)
    starts = [(0, 0, 0)] if not any(room) else [tuple(int(rng.integers(m + 1)) for m in room) for _ in range(int(n_sub))]
    samples, previews = [], ()
    for z, y, x in starts:
        sub = np.ascontiguousarray(volume[z:z + shape[0], y:y + shape[1], x:x + shape[2]])
        samples.append(volume_metrics(sub, opts))
        if not previews:
            previews = (sub[shape[0] // 2], sub[:, shape[1] // 2], sub[:, :, shape[2] // 2])
        if progress:
            progress(1)
    notes = ("3D-to-3D: spread over sub-volumes of the evaluated shape",)
    if len(starts) == 1:
        notes += ("the reference has the evaluated shape: one sample, no spread",)
    return _from_samples(samples, kind="volume", sources=tuple(sources), n_phases=opts.n_phases, cutoff=opts.cutoff,
                         sample_shape=tuple(shape), previews=previews, notes=notes)


def reference_from_model(model: Any, *, opts: MetricOptions, volume_shape: Sequence[int], name: str = "") -> Reference:
    """Reference from the training statistics stored with ``model``.

    Uses ``volume_fraction(_std)``, ``s2_radial_mean/std`` (needs ``s2_cutoff >=
    opts.cutoff``) and ``specific_surface_area(_std)`` (2-D perimeter per pixel; the
    surface-area reference is its stereological ``4/pi L_A``). S2 tolerances: 1.96 ×
    ``sum_r std(r) / sum_r mean(r)`` for ``s2_error`` (``sum std`` bounds the std of the
    sum from above, so this is lenient) and 1.96 × ``max_{r<=8} std(r)`` for ``s2_small_r``.
    """
    stats = training_stats(model)
    if stats.s2_radial_mean is None or stats.volume_fraction is None:
        raise InputError(f"model {name or ''} stores no training statistics (S2, VF); pass --reference IMAGE".replace("  ", " "))
    p_, c, vs = opts.n_phases, opts.cutoff, opts.voxel_size
    s2m = np.asarray(stats.s2_radial_mean, float)
    if s2m.shape[0] != p_:
        raise InputError(f"model has {s2m.shape[0]} phases, the volumes {p_}")
    if s2m.shape[1] < c + 1:
        raise ShapeError(f"the model stores S2 up to r = {s2m.shape[1] - 1}, below the cutoff {c}")
    s2m = s2m[:, : c + 1]
    mean: dict[str, np.ndarray] = {"vf": np.asarray(stats.volume_fraction, float), "s2": np.repeat(s2m[:, None], 3, axis=1)}
    std: dict[str, np.ndarray] = {}
    notes = ["reference: the model's stored training statistics (no images): no cluster, anisotropy or per-patch S2-error "
             "statistics and no reference pictures are stored, so those rows have no reference"]
    if stats.volume_fraction_std is not None:
        std["vf"] = np.asarray(stats.volume_fraction_std, float)
    tol: dict[str, np.ndarray] = {}
    patch = int(stats.patch or getattr(model, "patch_size", 0) or 0)
    g = group_size(s2m, mean["vf"], volume_shape, (patch, patch)) if patch else 1
    root = np.sqrt(g)
    if stats.s2_radial_std is not None:
        s2s = np.asarray(stats.s2_radial_std, float)[:, : c + 1]
        std["s2"] = np.repeat(s2s[:, None], 3, axis=1)
        tol["s2_error"] = np.repeat((_Z95 * s2s.sum(-1) / s2m.sum(-1) / root)[:, None], 3, axis=1)
        tol["s2_small_r"] = np.repeat((_Z95 * s2s[:, : SMALL_R + 1].max(-1) / root)[:, None], 3, axis=1)
        notes.append(f"S2 tolerance from the stored per-r std: 1.96 * sum std / sum mean / sqrt({g}) "
                     "(sum std bounds the std of the sum from above)")
    else:
        notes.append("the model stores no S2 band: S2 errors have no tolerance")
    if stats.specific_surface_area is not None:
        per = np.asarray(stats.specific_surface_area, float) / vs
        mean["perimeter_density"] = np.repeat(per[:, None], 3, axis=1)
        mean["surface_area"] = stereological_surface_area(per)
        if stats.specific_surface_area_std is not None:
            ps = np.asarray(stats.specific_surface_area_std, float) / vs
            std["perimeter_density"] = np.repeat(ps[:, None], 3, axis=1)
            std["surface_area"] = stereological_surface_area(ps)
    if stats.s2_periodic:
        notes.append("the model's S2 statistics are periodic; evaluate uses non-periodic S2")
    extra = {}
    heldout = stats.report.vae_reconstruction if stats.report is not None else None
    if heldout is not None and heldout.accuracy is not None:
        extra["vae_heldout_accuracy"] = [None if a is None else float(a) for a in heldout.accuracy]
    spread = {k: v / root for k, v in std.items()}
    return Reference(kind="model", sources=(name,), n_phases=p_, cutoff=c, sample_shape=(patch, patch),
                     n_samples=int(stats.n_patches or 0), mean=mean, std=std, spread=spread, tolerance=tol,
                     group_size=g, notes=tuple(notes), extra=extra)
