"""``reconstruct``: 3D volumes from a model trained on 2D images only."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from microlad.defaults import GRAINS_START, RECONSTRUCT_MATCH_LATENT_MEAN, RECONSTRUCT_REFINE, RECONSTRUCT_SMOOTH, RECONSTRUCT_STEPS
from microlad.diffusion import canonical_sampler
from microlad.errors import InputError, ShapeError
from microlad.reconstruct._chunks import channels_last
from microlad.reconstruct.decode import decode_volume, match_fractions, refine_volume
from microlad.reconstruct.lmpdd import sample_latent_volume
from microlad.reconstruct.moments import moments_from_dict, moments_to_dict, prior_moments
from microlad.reconstruct.options import SliceOptions
from microlad.reconstruct.smoothing import smooth_to_perimeter


@dataclass(frozen=True)
class Reconstruction:
    """One generated volume.

    labels : uint8 (Z, Y, X), argmax of ``probabilities``.
    probabilities : float32 (P, Z, Y, X) per-phase probabilities, or None unless requested.
    seed : the seed that made it (same seed and machine ⇒ identical volume).
    timings : seconds spent in "lmpdd", "decode", "refine", "smooth", "polish" and "total"
        (and, for the first volume of a call with ``grain_roughness="auto"``, the calibration's
        "grain_calibration", not part of "total").
    smoothing_sigma : per-phase widths (voxels) of the perimeter-calibrated blur applied
        before labelling (0: none; :mod:`microlad.reconstruct.smoothing`).
    polish : what the opt-in label polish did (:class:`~microlad.reconstruct.polish.PolishStats`
        as a dict); empty when it did not run.
    grain_roughness : with ``init="grains"``, the grain-surface roughness A (voxels) used
        (calibrated with ``grain_roughness="auto"``); None otherwise.
    latent : the normalised L-MPDD latent (C, Z/f, Y/f, X/f) the volume was decoded from, or
        None unless requested (``return_latent``; guidance starts from it).
    """

    labels: np.ndarray
    seed: int
    probabilities: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    smoothing_sigma: tuple[float, ...] = ()
    polish: dict = field(default_factory=dict)
    grain_roughness: float | None = None
    latent: torch.Tensor | None = None


def _calibrated_roughness(model, pore: int, dims: tuple[int, int, int], latent_start, unsmoothed) -> float:
    """``grain_roughness="auto"``: :func:`~microlad.reconstruct.grains.calibrate_roughness` on
    the trial cubes of :func:`~microlad.reconstruct.grains.calibration_cubes` (seeds 0, 1, ...,
    so A depends on the model, the settings and the volume's size, not on the volumes' seeds):
    the pore phase's mean slice perimeter before smoothing against the training images'."""
    from microlad.descriptors import slice_perimeter_density
    from microlad.reconstruct.grains import calibrate_roughness, calibration_cubes

    side, count = calibration_cubes(dims, model.vae.config.downsample_factor)
    cube = (side,) * 3
    target = float(model.training_stats.specific_surface_area[pore])

    def error(a: float) -> float:
        measured = []
        for trial_seed in range(count):
            probs, _, _ = unsmoothed(cube, trial_seed, latent_start(cube, trial_seed, a))
            labels = probs.argmax(0).to(torch.uint8).cpu().numpy()
            measured += [slice_perimeter_density(labels, phase=pore, axis=ax) for ax in range(3)]
        return float(np.mean(measured)) / target - 1.0

    return calibrate_roughness(error)[0]


def _polish_targets(model) -> tuple[np.ndarray, dict[int, float] | None]:
    """(training slice S2 (P, K), {phase: training slice perimeter}) for ``polish``."""
    from microlad.metadata import TrainingStats

    stats = TrainingStats.from_dict(getattr(model, "training_stats", None))
    if stats.s2_radial_mean is None or stats.specific_surface_area is None:
        raise InputError("polish needs a model with stored training S2 and surface statistics (retrain with this version)")
    s2 = np.asarray(stats.s2_radial_mean, dtype=np.float64)
    return s2, {p: float(v) for p, v in enumerate(stats.specific_surface_area)}


def _grain_start(model, init: str | None, start: float, grain_phase: int | None):
    """(GrainParameters, grain phase, pore phase) for ``init="grains"``, or None."""
    if init is None:
        return None
    if init != "grains":
        raise InputError(f"init must be None or 'grains', got {init!r}")
    if not 0.0 < float(start) <= 1.0:
        raise InputError(f"init_start must be in (0, 1], got {start}")
    from microlad.metadata import TrainingStats
    from microlad.reconstruct.grains import grain_parameters

    if model.vae.config.n_phases != 2:
        raise InputError(f"init='grains' needs a two-phase model (grains and pores), this one has {model.vae.config.n_phases} phases")
    stats = TrainingStats.from_dict(getattr(model, "training_stats", None))
    if stats.volume_fraction is None or stats.specific_surface_area is None:
        raise InputError("init='grains' needs a model with stored training fractions and surface statistics (retrain with this version)")
    vf = [float(v) for v in stats.volume_fraction]
    grain = int(np.argmax(vf)) if grain_phase is None else int(grain_phase)
    if grain not in (0, 1):
        raise InputError(f"grain_phase must be 0 or 1, got {grain_phase}")
    pore = 1 - grain
    return grain_parameters(vf[pore], float(stats.specific_surface_area[pore])), grain, pore


def _check_roughness(value: float | str) -> float | str:
    """``grain_roughness``: "auto" or a finite number >= 0 (InputError otherwise)."""
    if isinstance(value, str):
        if value != "auto":
            raise InputError(f"grain_roughness must be a number >= 0 or 'auto', got {value!r}")
        return value
    if not 0 <= float(value) < float("inf"):
        raise InputError(f"grain_roughness must be >= 0 or 'auto', got {value}")
    return float(value)


def _polish(labels: np.ndarray, targets, iterations: int, progress: bool) -> tuple[np.ndarray, dict]:
    from microlad.descriptors import spanning_pairs, volume_fraction
    from microlad.reconstruct.polish import polish_s2

    s2, perimeter = targets
    phases = tuple(range(s2.shape[0]))
    start = spanning_pairs(labels, phases)
    held = dict(enumerate(volume_fraction(labels, n_phases=len(phases)).tolist()))  # the (matched) fractions stay
    out, st = polish_s2(labels, s2, phases, n_phases=len(phases), vf_targets=held, perimeter=perimeter, max_iter=iterations,
                        keep=lambda lab: start <= spanning_pairs(lab, phases), connected=True, progress=progress)
    return out, st.as_dict()


def check_shape(shape: Sequence[int], factor: int) -> tuple[int, int, int]:
    """Validate a requested (D, H, W): three positive multiples of the VAE factor."""
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"shape must be three integers D H W, got {shape!r}") from None
    if len(dims) != 3:
        raise ShapeError(f"shape must have three sides D H W, got {len(dims)}: {dims}")
    if min(dims) < factor or any(s % factor for s in dims):
        raise ShapeError(f"every side must be a positive multiple of the VAE factor {factor}, got {dims}")
    return dims  # type: ignore[return-value]


def reconstruct(
    model,
    shape: Sequence[int],
    *,
    n: int = 1,
    seed: int = 0,
    steps: int = RECONSTRUCT_STEPS,
    sampler: str = "ddim",
    refine: int = RECONSTRUCT_REFINE,
    average_axes: bool = False,
    slice_coupling: bool = True,
    coupling_stop: float | None = None,
    periodic: bool = False,
    match_vf: bool | Sequence[float] | None = None,
    smooth: bool = RECONSTRUCT_SMOOTH,
    match_latent_mean: bool = RECONSTRUCT_MATCH_LATENT_MEAN,
    polish: int = 0,
    init: str | None = None,
    init_start: float = GRAINS_START,
    grain_phase: int | None = None,
    grain_roughness: float | str = "auto",
    return_probabilities: bool = False,
    return_latent: bool = False,
    memory_budget: int | None = None,
    progress: bool = True,
) -> list[Reconstruction]:
    """Generate ``n`` volumes of ``shape`` (D, H, W) with L-MPDD + three-axis refinement.

    Volume i uses seed ``seed + i``. ``steps``: sampler steps (default
    :data:`~microlad.defaults.RECONSTRUCT_STEPS`). ``sampler``: ``"ddim"``, ``"dpm2m"``
    (DPM-Solver++(2M)) or ``"ancestral"`` (``"ddpm"`` is accepted for the latter;
    :func:`microlad.diffusion.canonical_sampler`).
    ``refine``: the number K of three-axis refinement passes (default
    :data:`~microlad.defaults.RECONSTRUCT_REFINE`). Sides must be multiples of the VAE
    factor; any size and aspect ratio works (the networks are fully convolutional, slices
    are padded to the U-Net's size multiple). ``memory_budget`` (bytes) caps the
    activations of one batched network call (default 1 GiB), which bounds peak memory for
    large volumes. ``periodic``, ``memory_budget`` and ``progress`` become the
    :class:`~microlad.reconstruct.SliceOptions` of every stage.

    ``slice_coupling`` (default True, ours): couple the slices' clean estimates across the
    slicing axis at every step so the volume's correlation is isotropic
    (:mod:`microlad.reconstruct.coupling`); False runs the paper's plain L-MPDD, whose
    slices have smaller features than the training images. ``coupling_stop``: couple only
    the steps at timesteps t >= coupling_stop · T (default None: the value calibrated for
    the model, :attr:`MicroladModel.coupling_stop`, see
    :mod:`microlad.reconstruct.calibration`).

    ``match_latent_mean`` (default :data:`~microlad.defaults.RECONSTRUCT_MATCH_LATENT_MEAN`,
    ours): shift every step's clean estimate per latent channel to the mean of the 2D
    prior's clean estimates at that step (:mod:`microlad.reconstruct.moments`), which
    undoes L-MPDD's drift against minority phases; False runs L-MPDD without it.

    ``match_vf``: True moves the per-phase decision thresholds so the volume has the
    training images' volume fractions (``model.training_stats.image_volume_fraction``,
    pixel-weighted over the whole inputs; older models: the patch mean
    ``volume_fraction``); a sequence gives explicit target fractions; False keeps
    L-MPDD's own fractions, which are biased against minority phases (BENCHMARKS.md);
    None (default) matches whenever the model stores training fractions. Applied after
    decoding and again after refinement (:func:`~microlad.reconstruct.decode.match_fractions`).

    ``smooth`` (default :data:`~microlad.defaults.RECONSTRUCT_SMOOTH`, ours): blur the final
    probabilities with the Gaussian width at which the slices' boundary length per area
    equals the training images' (stored in the model; fractions re-matched), which removes
    the specks and excess surface left where the three axes disagree
    (:mod:`microlad.reconstruct.smoothing`). Models without stored surface statistics are
    not smoothed.

    ``polish`` (default 0: off; opt-in, ours): after labelling, at most this many iterations
    of the label polish (:mod:`microlad.reconstruct.polish`) toward the training images'
    slice S2 and slice perimeter stored in the model (2D data only; the labels' phase
    fractions are held, their phase spannings kept, and no flip splits a connected piece of
    a phase). Measured on SOFC and carbonate it brings the slices' small-r S2 and perimeter
    within about 2–3 % of the training images'; on Berea pore τ moved by +2 % on average
    (+0.25 ± 0.2 per axis, one axis +12 %): it can narrow pore throats, so check transport
    in coarse rocks (BENCHMARKS.md, fine-scale findings). Needs a model with stored S2 and
    surface statistics.

    ``init`` (default None: L-MPDD from noise; opt-in, ours): ``"grains"`` starts L-MPDD from
    a pack of overlapping spheres of ``grain_phase`` (default: the phase with the larger
    training fraction) built from the training fraction and slice perimeter alone
    (:mod:`microlad.reconstruct.grains`), noised to ``init_start`` · T (SDEdit). For
    two-phase granular media, whose pore space is the connected complement of grains:
    L-MPDD from noise lays pores out as separate pockets. Lower ``init_start`` keeps more
    of the pack's connectivity, higher gives slices closer to the training images' (Berea,
    BENCHMARKS.md, fine-scale findings). ``grain_roughness`` A >= 0 (voxels) perturbs the
    grains' surfaces (:func:`~microlad.reconstruct.grains.boolean_grains`); ``"auto"``
    (default) calibrates A once per call from 2D data: the smallest A at which trial cubes'
    slices are, before smoothing, as rough as the training images'
    (:func:`~microlad.reconstruct.grains.calibrate_roughness`; a few small reconstructions).
    Two-phase models only.

    ``return_probabilities`` / ``return_latent``: keep each volume's final probabilities /
    its L-MPDD latent in the :class:`Reconstruction` (default off: they are large).
    """
    vae, unet = model.vae, model.unet
    f = vae.config.downsample_factor
    dims = check_shape(shape, f)
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}")
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    if refine < 0:
        raise InputError(f"refine must be >= 0, got {refine}")
    if not isinstance(polish, (int, np.integer)) or polish < 0:
        raise InputError(f"polish must be an integer >= 0, got {polish!r}")
    polish_targets = _polish_targets(model) if polish else None
    sampler = canonical_sampler(sampler)
    if coupling_stop is None:
        coupling_stop = model.coupling_stop
    if not 0.0 <= coupling_stop <= 1.0:
        raise InputError(f"coupling_stop must be in [0, 1], got {coupling_stop}")
    target_vf = _target_fractions(model, match_vf)
    device = next(vae.parameters()).device
    vae.eval()
    unet.eval()
    channels_last(vae, unet)
    opts = SliceOptions(periodic=periodic, memory_budget=memory_budget, progress=progress, device=device)
    moments = latent_mean_moments(model, sampler, steps) if match_latent_mean else None
    grains = _grain_start(model, init, init_start, grain_phase)
    grain_roughness = _check_roughness(grain_roughness)
    auto_roughness = grain_roughness == "auto"

    def latent_start(size: tuple[int, int, int], vol_seed: int, roughness: float) -> torch.Tensor | None:
        """The SDEdit start of ``init="grains"``: a grain pack built from the 2D statistics, as a latent."""
        if grains is None:
            return None
        from microlad.reconstruct.grains import boolean_grains, project_labels

        params, grain, pore = grains
        pack = np.where(boolean_grains(size, params, np.random.default_rng(vol_seed), roughness=roughness), grain, pore)
        return project_labels(vae, pack.astype(np.uint8), opts)

    def unsmoothed(size: tuple[int, int, int], vol_seed: int,
                   z_init: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """L-MPDD, decoding and refinement of one volume: probabilities (P, *size), the latent and
        the stage end times."""
        gen = torch.Generator(device="cpu").manual_seed(vol_seed)
        shape_latent = (vae.config.latent_channels, *(s // f for s in size))
        z = sample_latent_volume(unet, model.schedule, shape_latent, steps=steps, sampler=sampler, average_axes=average_axes,
                                 slice_coupling=slice_coupling, coupling_stop=coupling_stop,
                                 moments=moments, generator=gen, options=opts, init=z_init, start=init_start)
        t1 = time.perf_counter()
        probs = latents_to_probabilities(vae, z, target_vf, opts)
        t2 = time.perf_counter()
        return refine_probabilities(vae, probs, refine, target_vf, opts), z, [t1, t2, time.perf_counter()]

    roughness = None if grains is None else (0.0 if auto_roughness else float(grain_roughness))
    calibration = 0.0
    if grains is not None and auto_roughness:
        t_cal = time.perf_counter()
        roughness = _calibrated_roughness(model, grains[2], dims, latent_start, unsmoothed)
        calibration = time.perf_counter() - t_cal
    results = []
    for i in range(n):
        vol_seed = seed + i
        t0 = time.perf_counter()
        z_init = latent_start(dims, vol_seed, roughness) if grains is not None else None
        probs, z, (t1, t2, t3) = unsmoothed(dims, vol_seed, z_init)
        latent = z.detach().cpu() if return_latent else None
        sigma: tuple[float, ...] = (0.0,) * probs.shape[0]
        if smooth:
            probs, sigma = smooth_probabilities(model, probs, target_vf, periodic=periodic)
        t4 = time.perf_counter()
        labels = probs.argmax(0).to(torch.uint8).cpu().numpy()
        polished: dict = {}
        if polish_targets is not None:
            labels, polished = _polish(labels, polish_targets, int(polish), progress)
        t5 = time.perf_counter()
        results.append(
            Reconstruction(
                labels=labels,
                seed=vol_seed,
                probabilities=probs.float().cpu().numpy() if return_probabilities else None,
                timings={"lmpdd": t1 - t0, "decode": t2 - t1, "refine": t3 - t2, "smooth": t4 - t3, "polish": t5 - t4,
                         "total": t5 - t0, **({"grain_calibration": calibration} if i == 0 and calibration else {})},
                smoothing_sigma=sigma,
                polish=polished,
                grain_roughness=roughness,
                latent=latent,
            )
        )
    return results


def _moment_latent_size(model) -> int:
    """Side of the 2D latents whose clean estimates give the moments: the training patch's."""
    return max(1, int(getattr(model, "patch_size", None) or 64) // model.vae.config.downsample_factor)


def lmpdd_moments(model, sampler: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-step moments of ``model``'s 2D prior for L-MPDD with ``sampler`` and ``steps``
    (:func:`~microlad.reconstruct.moments.prior_moments` at the training patch size): the ones
    stored in the model's config when they were computed for these settings (training stores
    them for the default sampler), else computed (a few seconds; cached per model)."""
    size = _moment_latent_size(model)
    sampler, channels = canonical_sampler(sampler), model.vae.config.latent_channels
    stored = moments_from_dict(getattr(getattr(model, "config", None), "latent_moments", None),
                               sampler=sampler, steps=int(steps), latent_channels=channels, latent_size=size)
    if stored is not None:
        device = next(model.unet.parameters()).device
        return stored[0].to(device), stored[1].to(device)
    return _computed_moments(model, sampler, steps)


def _computed_moments(model, sampler: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~microlad.reconstruct.moments.prior_moments` of ``model`` at the training patch size."""
    return prior_moments(model.unet, model.schedule, model.vae.config.latent_channels, _moment_latent_size(model),
                         sampler=canonical_sampler(sampler), steps=steps)


def latent_mean_moments(model, sampler: str, steps: int) -> tuple[torch.Tensor, None]:
    """``moments`` for :func:`~microlad.reconstruct.lmpdd.sample_latent_volume` that match the
    2D prior's per-step mean only (``match_latent_mean``; the std stays L-MPDD's own)."""
    return lmpdd_moments(model, sampler, steps)[0], None


def store_lmpdd_moments(model, sampler: str = "ddim", steps: int = RECONSTRUCT_STEPS) -> dict:
    """Compute the L-MPDD moments of ``model`` for ``sampler`` and ``steps`` and return the
    record for ``config.latent_moments`` (:func:`~microlad.reconstruct.moments.moments_to_dict`)."""
    mean, std = _computed_moments(model, sampler, steps)
    return moments_to_dict(mean, std, sampler=canonical_sampler(sampler), steps=steps, latent_size=_moment_latent_size(model))


@torch.inference_mode()
def latents_to_probabilities(vae, z: torch.Tensor, target_vf: torch.Tensor | None = None,
                             options: SliceOptions | None = None, **keywords) -> torch.Tensor:
    """Normalised latent volume (C, d, h, w) → voxel probabilities (P, D, H, W): de-normalise,
    decode along the three axes (:func:`~microlad.reconstruct.decode.decode_volume`) and, if
    ``target_vf`` (P,) is given, match the phase fractions to it. ``options``: a
    :class:`SliceOptions`, or its fields as keywords."""
    raw = vae.denormalize(z.movedim(0, 1)).movedim(1, 0)  # z-slices (d, C, h, w) are a batch
    probs = decode_volume(vae, raw, SliceOptions.merge(options, **keywords))
    return probs if target_vf is None else match_fractions(probs, target_vf)


def refine_probabilities(vae, probs: torch.Tensor, refine: int, target_vf: torch.Tensor | None = None,
                         options: SliceOptions | None = None, **keywords) -> torch.Tensor:
    """``refine`` three-axis refinement passes (:func:`~microlad.reconstruct.decode.refine_volume`),
    then the phase fractions matched to ``target_vf`` again if given and ``refine`` > 0.
    ``options`` as for :func:`latents_to_probabilities`."""
    probs = refine_volume(vae, probs, refine, SliceOptions.merge(options, **keywords))
    return match_fractions(probs, target_vf) if target_vf is not None and refine else probs


def smooth_probabilities(model, probs: torch.Tensor, target_vf: torch.Tensor | None = None, *,
                         sigma: float | Sequence[float] | None = None, periodic: bool = False) -> tuple[torch.Tensor, tuple[float, ...]]:
    """Perimeter-calibrated smoothing of (P, Z, Y, X) ``probs`` with ``model``'s training
    slice perimeter (:func:`~microlad.reconstruct.smoothing.smooth_to_perimeter`), the
    fractions re-matched to ``target_vf`` if given. ``sigma``: fixed widths (one, or one
    per phase) instead of calibrating. Returns ``(probabilities, per-phase widths)``; all 0
    (nothing done) for models without stored surface statistics."""
    stats = model.training_stats.specific_surface_area
    reference = None if stats is None else [float(v) for v in stats]
    label = None if target_vf is None else (lambda q: match_fractions(q, target_vf))
    return smooth_to_perimeter(probs, reference, label, sigma=sigma, periodic=periodic)


def training_fractions(model) -> list[float] | None:
    """The training images' phase fractions stored with ``model`` (None if it has none);
    see :meth:`microlad.metadata.TrainingStats.fractions`."""
    vf = model.training_stats.fractions()
    return None if vf is None else list(vf)


def _target_fractions(model, match_vf: bool | Sequence[float] | None) -> torch.Tensor | None:
    """Target phase fractions for ``match_vf`` (None when not matching)."""
    if match_vf is False:
        return None
    p = model.vae.config.n_phases
    if match_vf is None or match_vf is True:
        vf = training_fractions(model)
        if vf is None:
            if match_vf is None:
                return None
            raise InputError("match_vf=True needs the training volume fractions, but the model has none stored; pass explicit fractions")
    else:
        vf = list(match_vf)
    t = torch.as_tensor([float(v) for v in vf], dtype=torch.float32)
    if t.numel() != p or not torch.isfinite(t).all() or (t <= 0).any():
        raise InputError(f"target volume fractions must be {p} positive numbers, got {list(vf)}")
    return t / t.sum()
