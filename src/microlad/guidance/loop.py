"""``generate``: SDS-guided 3D generation (MicroLad §6, with the fixes of METHOD.md §6).

One run, per volume:

1. Start: the L-MPDD latent volume ``reconstruct`` samples for this seed (normalised
   diffusion space, (C, D/f, H/f, W/f)); it is optimised as ONE persistent leaf tensor by
   ONE Adam optimiser for the whole run.
2. Each step: a random slicing axis; the SDS pseudo-gradient ``z − ẑ₀`` of every latent
   plane normal to it (:mod:`~microlad.guidance.prior`); the slice terms on one decoded
   voxel plane per latent cell along that axis, at a random in-cell offset (``plane_offsets``:
   over the run every voxel plane of the user's decoding is steered, not only the latent
   planes), the 3D transport terms every ``property_every`` steps on
   a full one-axis decode (their last gradient direction is reused in between)
   (:mod:`~microlad.guidance.surrogate`, :mod:`~microlad.guidance.terms`); each term's
   gradient balanced against the prior's (:mod:`~microlad.guidance.balance`); one Adam step.
3. Calibration (step 0 and every ``calibrate_every`` steps, by default 3 per run): the current
   latent is finished exactly as at the end and every term measured on the labels with the
   report's code; the offset between the surrogate and the measurement is taken out of the
   surrogate's target, so the loop steers what the user gets, not the surrogate. The S2
   offset is kept per slicing axis and in-cell plane offset (the paper's metric takes the
   worst axis, and the surrogate's offset differs between axes, and between latent and
   interpolated planes, by up to a few points).
4. Checkpoints and extension: every calibration after step 0, every ``checkpoint_every``
   steps in between (measured the same way, offsets left as they are), and the latent after
   the last step, is a checkpoint whose finished labels were measured. If after ``steps`` a scalar
   target (surface area, D_eff, τ, or a VF target that will not be settled) is still
   outside its tolerance (:data:`~microlad.guidance.terms.TOLERANCE`), the run goes on,
   one calibration period at a time, at the last step's noise range, up to
   ``max_steps``. The result is the checkpoint whose measured values are closest to the
   targets (largest residual in tolerance units; ties go to the later one): a transport
   property of a finished volume can swing by ±10 % between calibrations, and the
   measurement, not the surrogate, decides. Before closeness comes connectivity: the
   choice is among the checkpoints that lose the fewest protected spannings (a (phase,
   axis) pair that spans the start, i.e. the unguided volume, or the last step; phases no
   scalar target names; :func:`~microlad.descriptors.percolating_axes` on the labels the
   user would get). The score sees only the targets, and a checkpoint close to them can
   have a broken pore network (measured on Leopard: BENCHMARKS.md, guidance status). A
   spanning seen only at a checkpoint in between is not protected: on carbonate such a
   checkpoint was a transient overshoot of the pore fraction, 24.5 % off the S2 target.
   So guidance never returns less connectivity than the unguided volume or its own last
   step had where another checkpoint kept it; a phase that never spans is not pushed.
5. Finish: decode, refine, smooth and label as ``reconstruct`` does; every targeted
   quantity is measured on the final labels (:func:`~microlad.guidance.terms.measure`).
   The smoothing width is calibrated once, on the start volume (the first calibration),
   to the training images' slice perimeter and then kept, so the map from latent to
   labels stays fixed during the run. With a surface-area target the finish does not
   smooth at all: the smoothing exists to give the volume the training images' surface,
   and an explicit target replaces that (with it, SOFC surface-area targets ended short;
   BENCHMARKS.md, guidance status).
6. Polish (S2 targets, with or without VF targets; not with a surface-area or transport
   target, which it does not see): the returned labels' interface voxels are moved toward
   the S2 target curves with the report's S2 (:mod:`~microlad.reconstruct.polish`; VF-target
   phases held at their settled fractions). The latent steering leaves each 64³ volume a
   few per cent off the S2 target (decode, refinement and argmax are not steered exactly);
   the polish takes that to a few tenths of a per cent with interface moves only (no
   specks, no new one-voxel spikes). It must not lose a spanning (phase, axis) pair the
   chosen labels had (checked every 5 iterations; if one is lost, the polish goes back to
   the last state that kept them all, freezes the voxels flipped since, and goes on; at the
   end the result keeps them all). The S2 report gives ``before_polish``.

Volume-fraction targets are settled exactly in the final finish (``exact_vf``, default on):
SDS brings a VF target to within about 0.01 and the last calibration's offset can drift by
that much, so after the last step the decision thresholds are moved (the same threshold
matching as ``reconstruct``'s, on the closest calls only) so that every targeted phase has
its target fraction and the other phases keep their relative shares. The calibrations
measure the VF terms before settling (they must see what guidance itself achieved), and
each VF term reports the fraction guidance reached before settling (``before_settle``).
Every other target is measured after settling, at the calibrations as at the end, so its
offset, the extension and the checkpoint choice see the volume the user gets: settling a
phase's fraction moves its transport and surface (measured: a VF + D_eff target whose
last checkpoint read D_eff on target ended 19 % short after the settle).

Phase-fraction matching to the training fractions (``match_vf``): off by default, so nothing silently
undoes a VF, surface-area, S2 or transport target (guidance itself moves the fractions:
S2(0) is the VF). ``match_vf=True`` (training fractions) or explicit fractions apply
``reconstruct``'s threshold matching after decoding and after refinement; together with a
VF target that is an error. (Measured, SOFC 64³, s2=train, one seed: matching in the
finish left the max slice-S2 error at 6.3-6.9 %, no matching reached 4.0 %.)
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from microlad.defaults import GRAINS_START, GUIDANCE_POLISH, GUIDANCE_STEPS, RECONSTRUCT_MATCH_LATENT_MEAN, RECONSTRUCT_REFINE, RECONSTRUCT_SMOOTH, RECONSTRUCT_STEPS
from microlad.descriptors import spanning_pairs, volume_fraction
from microlad.errors import InputError
from microlad.guidance import terms as T
from microlad.guidance.balance import balance
from microlad.reconstruct.polish import polish_s2
from microlad.guidance.prior import NoiseRange, sds_gradient
from microlad.guidance.result import GuidanceResult, TermReport
from microlad.guidance.stats import image_s2, training_reference
from microlad.guidance.surrogate import axis_volume, cell_slices
from microlad.guidance.targets import TRANSPORT_KINDS, Target, parse_targets, parse_weights, validate_targets
from microlad.reconstruct import (check_shape, latent_mean_moments, latents_to_probabilities, refine_probabilities,
                                  sample_latent_volume, smooth_probabilities)
from microlad.reconstruct._chunks import channels_last
from microlad.reconstruct.decode import match_fractions

__all__ = ["GuidanceOptions", "generate", "prepare"]

DEFAULT_STEPS = GUIDANCE_STEPS
DEFAULT_LR = 0.05


@dataclass(frozen=True)
class GuidanceOptions:
    """Settings of one guided run (see :func:`generate` for their meaning)."""

    steps: int = DEFAULT_STEPS
    max_steps: int = 2 * DEFAULT_STEPS
    lr: float = DEFAULT_LR
    noise: NoiseRange = field(default_factory=NoiseRange)
    property_every: int = 5
    calibrate_every: int = DEFAULT_STEPS // 3
    checkpoint_every: int = DEFAULT_STEPS // 3
    lmpdd_steps: int = RECONSTRUCT_STEPS
    refine: int = RECONSTRUCT_REFINE
    smooth: bool = RECONSTRUCT_SMOOTH
    exact_vf: bool = True
    polish: int = GUIDANCE_POLISH
    plane_offsets: bool = True
    periodic: bool = False
    memory_budget: int | None = None
    progress: bool = True
    init: str | None = None
    init_start: float = GRAINS_START
    grain_phase: int | None = None
    grain_roughness: float | str = "auto"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("progress")
        if out["init"] is None:  # the grain-start settings only where they apply
            for key in ("init_start", "grain_phase", "grain_roughness"):
                out.pop(key)
        return out


def prepare(model, targets, weights=None) -> tuple[list[Target], dict[str, float]]:
    """Parse and validate ``targets`` and ``weights`` against ``model`` (no work done)."""
    tg = parse_targets(targets)
    ref = training_reference(model)
    tg = [_resolve_s2_source(t, model, ref) for t in tg]
    validate_targets(tg, model.vae.config.n_phases, has_training_s2=ref.s2 is not None)
    return tg, parse_weights(weights, tg)


def _resolve_s2_source(t: Target, model, ref) -> Target:
    """An ``s2=FILE`` target with its curves read from the file (on the model's phases)."""
    if t.kind != "s2" or t.source is None or t.curve is not None:
        return t
    cutoff = ref.s2.shape[-1] - 1 if ref.s2 is not None else model.patch_size // 2
    try:
        curve = image_s2(t.source, model.grey_values, cutoff)
    except InputError as err:
        raise InputError(f"target {t.name}={t.source}: {err}") from None
    if t.phase is not None:
        curve = curve[t.phase]
    return dataclasses.replace(t, curve=curve)


def _states(model, targets: list[Target], weights: dict[str, float]) -> list[T.TermState]:
    ref = training_reference(model)
    p = model.vae.config.n_phases
    out = []
    for t in targets:
        st = T.TermState(t, weight=weights[t.name])
        if t.kind == "s2":
            curve = ref.s2 if t.curve is None else t.curve
            phases = tuple(range(p)) if t.phase is None else (t.phase,)
            if curve.ndim == 2 and t.phase is not None:
                curve = curve[t.phase : t.phase + 1]
            st.curve = torch.as_tensor(np.atleast_2d(curve), dtype=torch.float32)
            st.phases = phases
        out.append(st)
    return out


def _default_checkpoint_every(targets: list[Target], steps: int, calibrate_every: int, exact_vf: bool) -> int:
    """``steps // 12`` where extra checkpoints are cheap and can be closer (a scored S2,
    surface-area or unsettled VF target, no transport target: a transport target's
    measurement is a 3D solve); else the calibrations only."""
    if calibrate_every == 0 or any(t.kind in TRANSPORT_KINDS for t in targets):
        return calibrate_every
    if any(t.kind in ("s2", "sa") or (t.kind == "vf" and not exact_vf) for t in targets):
        return max(1, steps // 12)
    return calibrate_every


def _finish_fractions(model, targets: list[Target], match_vf) -> torch.Tensor | None:
    has_vf = any(t.kind == "vf" for t in targets)
    if match_vf is None or match_vf is False:
        return None
    if has_vf:
        raise InputError("match_vf would move the phase fractions after guidance and undo the vf targets; leave it off")
    vf = training_reference(model).volume_fraction if match_vf is True else np.asarray(match_vf, dtype=np.float64)
    if vf is None:
        return None
    if vf.shape != (model.vae.config.n_phases,) or not np.isfinite(vf).all() or (vf <= 0).any():
        raise InputError(f"match_vf must be {model.vae.config.n_phases} positive fractions, got {list(vf)}")
    t = torch.as_tensor(vf, dtype=torch.float32)
    return t / t.sum()


def generate(
    model,
    shape: Sequence[int],
    targets: Mapping[str, Any] | Sequence[str | Target],
    *,
    n: int = 1,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    max_steps: int | None = None,
    weights: Mapping[str, float] | Sequence[str] | None = None,
    lr: float = DEFAULT_LR,
    noise: NoiseRange = NoiseRange(),
    property_every: int = 5,
    calibrate_every: int | None = None,
    checkpoint_every: int | None = None,
    lmpdd_steps: int = RECONSTRUCT_STEPS,
    refine: int = RECONSTRUCT_REFINE,
    smooth: bool = RECONSTRUCT_SMOOTH,
    exact_vf: bool = True,
    polish: int = GUIDANCE_POLISH,
    plane_offsets: bool = True,
    match_vf: bool | Sequence[float] | None = None,
    periodic: bool = False,
    memory_budget: int | None = None,
    return_probabilities: bool = False,
    progress: bool = True,
    indices: Sequence[int] | None = None,
    on_volume: Callable[[int, GuidanceResult], None] | None = None,
    init: str | None = None,
    init_start: float = GRAINS_START,
    grain_phase: int | None = None,
    grain_roughness: float | str = "auto",
) -> list[GuidanceResult]:
    """Generate ``n`` volumes of ``shape`` (D, H, W) steered toward ``targets``.

    Parameters
    ----------
    targets : ``{"vf:1": 0.4, "s2": "train", "deff:0@x": 0.05}`` or strings
        ``["vf:1=0.4", ...]`` (syntax: :mod:`microlad.guidance.targets`). Validated before
        any work.
    n, seed : volume i uses seed ``seed + i``; same seed and machine ⇒ identical volume.
    steps : optimisation steps (each: one slicing axis, one Adam step).
    max_steps : the run is extended up to this many steps while a scalar target misses its
        tolerance (module notes, item 4); default ``2 * steps``; ``steps``: never extend.
    weights : per-term weights (``{"vf:1": 2}`` or ``["vf:1=2", "prior=0.5"]``), default 1;
        O(1) because every term is balanced against the prior (:mod:`~microlad.guidance.balance`).
    lr : Adam step size on the normalised latent (unit variance per element).
    noise : SDS noise range (:class:`~microlad.guidance.prior.NoiseRange`).
    property_every : evaluate the 3D transport terms every k steps (they cost a full one-axis
        decode and a 3D solve); in between their last gradient direction is reused.
    calibrate_every : measure the finished volume every k steps (and at step 0) to take the
        surrogate's offset out of the targets; default ``steps // 3``; 0: only at step 0.
        More calibrations move the offsets more often (with an S2 target, ``steps // 12``
        gave rougher slices: BENCHMARKS.md, guidance status).
    checkpoint_every : also measure the finished volume every k steps between calibrations,
        as a candidate result, without moving the offsets; default ``steps // 12`` with an
        S2, surface-area or unsettled VF target and no transport target (each checkpoint is
        one finish; a transport target's would be a 3D solve), else ``calibrate_every``.
    lmpdd_steps, refine, smooth, periodic, memory_budget : as in
        :func:`microlad.reconstruct.reconstruct` (the smoothing width is calibrated on the
        start volume and then kept fixed; no smoothing with a surface-area target).
    exact_vf : settle volume-fraction targets exactly after the last step (default on;
        see the module notes); False reports what SDS alone reached.
    polish : with an S2 target (and no surface-area or transport target), at most this many
        iterations of the label polish (:mod:`~microlad.reconstruct.polish`, module notes item 6)
        on the returned labels; 0: none.
    plane_offsets : the slice terms read, each step, the voxel planes at a random offset
        k in [0, f) within the latent cells of the step's axis (interpolated latents, as
        the user's volume is decoded), so over the run every voxel plane is steered
        (default on); False reads only the latent planes themselves (the cell centres).
    match_vf : phase-fraction matching to the training fractions in the finish (default
        off; see the module notes).
    indices : volume indices to make (default ``range(n)``; the CLI shards them over ranks).
    on_volume : called with (index, result) as each volume is done.
    init, init_start, grain_phase, grain_roughness : the start, as in
        :func:`microlad.reconstruct.reconstruct`: None (default) starts from the L-MPDD latent
        reconstruct samples for the seed; ``"grains"`` from the latent of
        ``reconstruct(init="grains", ...)`` for the seed (two-phase granular media: a connected
        pore space to steer from). With ``grain_roughness="auto"`` the roughness is calibrated
        once (first volume) and used for every volume; ``config["grain_roughness"]`` of each
        result records the value used.

    Returns a list of :class:`~microlad.guidance.result.GuidanceResult`.
    """
    tg, wt = prepare(model, targets, weights)
    vae, unet = model.vae, model.unet
    f = vae.config.downsample_factor
    dims = check_shape(shape, f)
    for name, v, lo in (("n", n, 1), ("steps", steps, 1), ("property_every", property_every, 1), ("refine", refine, 0),
                        ("lmpdd_steps", lmpdd_steps, 1), ("polish", polish, 0)):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise InputError(f"{name} must be an integer >= {lo}, got {v!r}")
    if not (isinstance(lr, (int, float)) and 0 < lr < 10):
        raise InputError(f"lr must be a number in (0, 10), got {lr!r}")
    max_steps = 2 * int(steps) if max_steps is None else max_steps
    if not isinstance(max_steps, (int, np.integer)) or max_steps < steps:
        raise InputError(f"max_steps must be an integer >= steps ({steps}), got {max_steps!r}")
    cal = max(1, steps // 3) if calibrate_every is None else int(calibrate_every)
    if cal < 0:
        raise InputError(f"calibrate_every must be >= 0, got {calibrate_every}")
    ckpt = _default_checkpoint_every(tg, steps, cal, bool(exact_vf)) if checkpoint_every is None else int(checkpoint_every)
    if ckpt < 0:
        raise InputError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
    target_vf = _finish_fractions(model, tg, match_vf)
    roughness = _check_grain_start(model, init, init_start, grain_phase, grain_roughness)
    device = next(vae.parameters()).device
    vae.eval()
    unet.eval()
    channels_last(vae, unet)
    options = GuidanceOptions(steps=steps, max_steps=int(max_steps), lr=float(lr), noise=noise, property_every=property_every, calibrate_every=cal,
                              checkpoint_every=ckpt,
                              lmpdd_steps=lmpdd_steps, refine=refine, exact_vf=bool(exact_vf), polish=int(polish), periodic=periodic,
                              plane_offsets=bool(plane_offsets), smooth=bool(smooth) and not any(t.kind == "sa" for t in tg),
                              memory_budget=memory_budget, progress=progress,
                              init=init, init_start=float(init_start), grain_phase=grain_phase, grain_roughness=roughness)
    config = options.to_dict() | {"match_vf": None if target_vf is None else [round(float(v), 6) for v in target_vf],
                                  "weights": wt, "targets": [t.describe() for t in tg],
                                  "coupling_stop": model.coupling_stop, "match_latent_mean": RECONSTRUCT_MATCH_LATENT_MEAN}
    results = []
    for i in (range(n) if indices is None else indices):
        run = _Run(model, dims, _states(model, tg, wt), wt["prior"], seed + int(i), options, target_vf, device)
        res = run.execute(dict(config), return_probabilities)
        if run.grain_roughness is not None:  # calibrated once, then the same for every volume
            options = dataclasses.replace(options, grain_roughness=run.grain_roughness)
        results.append(res)
        if on_volume is not None:
            on_volume(int(i), res)
    return results


class _Run:
    """One guided volume (state shared by the steps of one run)."""

    def __init__(self, model, dims: tuple[int, int, int], terms: list[T.TermState], w_prior: float, seed: int,
                 options: GuidanceOptions, target_vf: torch.Tensor | None, device: torch.device) -> None:
        self.dims, self.seed, self.o = dims, seed, options
        self.model, self.vae, self.unet, self.schedule = model, model.vae, model.unet, model.schedule
        self.terms, self.w_prior, self.target_vf, self.device = terms, w_prior, target_vf, device
        self.steps = options.steps
        self.opts = {"periodic": options.periodic, "memory_budget": options.memory_budget}
        # per-phase smoothing widths, set by the first finish (all 0: no smoothing)
        self.sigma: tuple[float, ...] | None = None if options.smooth else (0.0,) * model.vae.config.n_phases
        # phases whose spanning a checkpoint must keep: those no scalar target names
        named = {t.target.phase for t in terms if t.target.kind != "s2" and t.target.phase is not None}
        self.guarded = tuple(p for p in range(model.vae.config.n_phases) if p not in named)
        self.timings = {"lmpdd": 0.0, "prior": 0.0, "slice_terms": 0.0, "volume_terms": 0.0, "calibrate": 0.0, "finish": 0.0}
        self.grain_roughness: float | None = None  # with init="grains": the roughness used

    def start_latent(self, gen: torch.Generator) -> torch.Tensor:
        """The latent the run starts from: the one ``reconstruct`` samples for this seed (its
        defaults; with ``init``, its grain start)."""
        if self.o.init is None:
            moments = latent_mean_moments(self.model, "ddim", self.o.lmpdd_steps) if RECONSTRUCT_MATCH_LATENT_MEAN else None
            f = self.vae.config.downsample_factor
            latent_shape = (self.vae.config.latent_channels, *(s // f for s in self.dims))
            return sample_latent_volume(self.unet, self.schedule, latent_shape, steps=self.o.lmpdd_steps, generator=gen,
                                        coupling_stop=self.model.coupling_stop, moments=moments, device=self.device,
                                        progress=self.o.progress, **self.opts)
        from microlad.reconstruct import reconstruct

        rec = reconstruct(self.model, self.dims, n=1, seed=self.seed, steps=self.o.lmpdd_steps, refine=self.o.refine,
                          init=self.o.init, init_start=self.o.init_start, grain_phase=self.o.grain_phase,
                          grain_roughness=self.o.grain_roughness, return_latent=True, progress=self.o.progress, **self.opts)[0]
        self.grain_roughness = rec.grain_roughness
        return rec.latent.to(self.device)

    # -- finishing and measuring ----------------------------------------------------------
    def finish(self, z: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        probs = latents_to_probabilities(self.vae, z.detach(), self.target_vf, **self.opts)
        probs = refine_probabilities(self.vae, probs, self.o.refine, self.target_vf, **self.opts)
        if self.sigma is None or any(v > 0.0 for v in self.sigma):
            probs, self.sigma = smooth_probabilities(self.model, probs, self.target_vf, sigma=self.sigma, periodic=self.o.periodic)
        return probs, probs.argmax(0).to(torch.uint8).cpu().numpy()

    @property
    def settles(self) -> bool:
        """Whether the finish settles VF targets exactly (there are some, and ``exact_vf``)."""
        return self.o.exact_vf and any(term.target.kind == "vf" for term in self.terms)

    def settle_fractions(self, probs: torch.Tensor, labels: np.ndarray) -> tuple[torch.Tensor, np.ndarray, dict[str, float]]:
        """Move the decision thresholds so every VF-targeted phase has its target fraction
        (the others keep their relative shares); returns the new probabilities, labels and
        each VF term's fraction before settling. Unchanged without VF targets."""
        if not self.settles:
            return probs, labels, {}
        vf_terms = [term for term in self.terms if term.target.kind == "vf"]
        p = probs.shape[0]
        current = np.bincount(labels.ravel(), minlength=p).astype(np.float64) / labels.size
        before = {term.target.name: float(current[term.target.phase]) for term in vf_terms}
        goal = current.copy()
        fixed = {term.target.phase: float(term.target.value) for term in vf_terms}
        free = [q for q in range(p) if q not in fixed]
        rest = 1.0 - sum(fixed.values())
        for q, v in fixed.items():
            goal[q] = v
        if free:
            share = current[free].sum()
            goal[free] = rest * (current[free] / share if share > 0 else np.full(len(free), 1.0 / len(free)))
        goal = np.clip(goal, 1e-6, None)
        settled = match_fractions(probs, torch.as_tensor(goal / goal.sum(), dtype=probs.dtype, device=probs.device))
        return settled, settled.argmax(0).to(torch.uint8).cpu().numpy(), before

    def volume_values(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The 3D transport terms' surrogate values at ``z`` (one-axis decode, no gradient)."""
        vol_terms = [x for x in self.terms if x.is_volume]
        if not vol_terms:
            return {}
        with torch.no_grad():
            probs = axis_volume(self.vae, z.detach(), 0, **self.opts)
            return {x.target.name: T.volume_value(x, probs).detach() for x in vol_terms}

    def _residuals(self, measured: dict[str, float]) -> dict[str, float]:
        """Measured residual (tolerance units, :func:`~microlad.guidance.terms.measured_residual`)
        per target name; VF targets that the finish settles exactly do not count."""
        return {term.target.name: T.measured_residual(term, measured[term.target.name]) for term in self.terms
                if not (term.target.kind == "vf" and self.o.exact_vf) and term.target.name in measured}

    def score(self, measured: dict[str, float]) -> float:
        """How far a measured checkpoint is from the targets: its largest residual."""
        return max(self._residuals(measured).values(), default=0.0)

    def unmet(self, measured: dict[str, float]) -> bool:
        """Whether a scalar target (not S2) misses its tolerance."""
        return any(r > 1.0 for name, r in self._residuals(measured).items() if name.split(":")[0] != "s2")

    def measure_unsettled(self, term: T.TermState, labels: np.ndarray, measured: dict[str, float]) -> float:
        """The term on ``labels`` as finished, before any VF target is settled (``measured``:
        the calibration's values, reused where settling changes nothing)."""
        t = term.target
        if t.kind == "vf" or not self.settles:
            return measured[t.name]
        return self._measure(term, labels, labels)

    def polish(self, labels: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """The label polish toward the S2 targets (module notes item 6); returns the labels
        and what it did ({} when it does not apply)."""
        s2_terms = [term for term in self.terms if term.target.kind == "s2"]
        if not self.o.polish or not s2_terms or any(term.target.kind not in ("s2", "vf") for term in self.terms):
            return labels, {}
        tp = time.perf_counter()
        rows = {}
        for term in s2_terms:  # one curve per phase (a later term's curve for a phase wins)
            for row, p in zip(term.curve.cpu().numpy(), term.phases):
                rows[p] = row
        phases = tuple(sorted(rows))
        p_all = self.vae.config.n_phases
        held = {term.target.phase: float(volume_fraction(labels, n_phases=p_all)[term.target.phase])
                for term in self.terms if term.target.kind == "vf"}
        spans = self.spans(labels)  # never return less connectivity than the labels guidance chose
        out, st = polish_s2(labels, np.stack([rows[p] for p in phases]), phases, n_phases=p_all, vf_targets=held,
                            max_iter=self.o.polish, keep=lambda lab: spans <= self.spans(lab), progress=self.o.progress)
        self.timings["polish"] = time.perf_counter() - tp
        return out, st.as_dict()

    def spans(self, labels: np.ndarray) -> frozenset[tuple[int, int]]:
        """The (phase, axis) pairs of the guarded phases that span ``labels``."""
        return spanning_pairs(labels, self.guarded)

    def calibrate(self, z: torch.Tensor, values: dict[str, torch.Tensor], update: bool = True
                  ) -> tuple[dict[str, float], tuple[torch.Tensor, np.ndarray], frozenset[tuple[int, int]]]:
        """Finish ``z``, measure every term and, if ``update``, set the surrogate offsets;
        returns the measurements, the finished (probabilities, labels) and the spanning
        (phase, axis) pairs of the guarded phases (:meth:`spans`, on the settled labels)."""
        probs, labels = self.finish(z)
        # what the user gets: VF targets settled (identity without them); only the VF terms
        # are measured before settling, to see what guidance itself reached
        _, settled, _ = self.settle_fractions(probs, labels)
        spans = self.spans(settled)
        if not update:
            return {term.target.name: self._measure(term, labels, settled) for term in self.terms}, (probs, labels), spans
        with torch.no_grad():
            offsets = range(self.vae.config.downsample_factor) if self.o.plane_offsets else (None,)
            planes = [[cell_slices(self.vae, z.detach(), a, offset=k, **self.opts) for k in offsets] for a in range(3)]
        measured = {}
        for term in self.terms:
            t = term.target
            if t.kind == "s2":
                rep = T.s2_report(settled, term.curve.cpu().numpy(), term.phases)
                measured[t.name] = rep["max_error"]
                got = torch.as_tensor(rep["axis_curves"], dtype=torch.float32)  # (3, P_t, K')
                sur = torch.stack([torch.stack([T.slice_value(term, q, a) for q in p]) for a, p in enumerate(planes)])
                kk = min(got.shape[-1], sur.shape[-1])  # sur: (3, n_offsets, P_t, K')
                off = torch.zeros((3, sur.shape[1], *term.curve.shape), dtype=term.curve.dtype)
                off[..., :kk] = sur[..., :kk] - got[:, None, :, :kk]
                term.offset = off
                continue
            m = self._measure(term, labels, settled)
            measured[t.name] = m
            if term.is_volume:
                sur = values.get(t.name)
                s = None if sur is None else float(sur)
            else:
                vals = [T.slice_value(term, q, a) for a, p in enumerate(planes) for q in p]
                vals = [float(v) for v in vals if v is not None]
                s = float(np.mean(vals)) if vals else None
            if s is None or not np.isfinite(m) or not np.isfinite(s):
                continue
            if t.kind == "vf":
                term.offset = s - m
            elif m > 0 and s > 0:
                term.offset = s / m
        return measured, (probs, labels), spans

    @staticmethod
    def _measure(term: T.TermState, labels: np.ndarray, settled: np.ndarray) -> float:
        """A term on finished labels: VF before settling, everything else after."""
        if term.target.kind == "s2":
            return T.s2_report(settled, term.curve.cpu().numpy(), term.phases)["max_error"]
        return T.measure(term, labels if term.target.kind == "vf" else settled)

    # -- one step ---------------------------------------------------------------------------
    def step(self, z: torch.Tensor, opt: torch.optim.Optimizer, s: int, gen: torch.Generator, force_volume: bool) -> tuple[dict, dict]:
        axis = int(torch.randint(0, 3, (1,), generator=gen))
        t = self.o.noise.draw(s, self.steps, self.schedule.num_train_timesteps, gen)
        t0 = time.perf_counter()
        g_prior = sds_gradient(self.unet, self.schedule, z, axis, t, gen, **self.opts)
        prior_norm = float(g_prior.norm())
        total = self.w_prior * g_prior
        t1 = time.perf_counter()
        row: dict[str, Any] = {"step": s, "axis": "zyx"[axis], "t": t, "prior_grad_norm": prior_norm}
        values: dict[str, torch.Tensor] = {}
        slice_terms = [x for x in self.terms if not x.is_volume]
        if slice_terms:
            zr = z.detach().requires_grad_(True)
            offset = None
            if self.o.plane_offsets:
                offset = int(torch.randint(0, self.vae.config.downsample_factor, (1,), generator=gen))
            planes = cell_slices(self.vae, zr, axis, offset=offset, **self.opts)
            live = [(x, T.slice_value(x, planes, axis)) for x in slice_terms]
            live = [(x, v) for x, v in live if v is not None]
            for j, (term, v) in enumerate(live):
                loss = T.loss_of(term, v, axis, offset)
                (g,) = torch.autograd.grad(loss, zr, retain_graph=j < len(live) - 1)
                term.last_value, term.last_residual = T.display_value(term, v, axis, offset), T.residual_of(term, v, axis, offset)
                term.last_grad, values[term.target.name] = g, v.detach()
        t2 = time.perf_counter()
        vol_terms = [x for x in self.terms if x.is_volume]
        if vol_terms and (force_volume or s % self.o.property_every == 0):
            zr = z.detach().requires_grad_(True)
            probs = axis_volume(self.vae, zr, axis, **self.opts)
            for j, term in enumerate(vol_terms):
                v = T.volume_value(term, probs)
                (g,) = torch.autograd.grad(T.loss_of(term, v), zr, retain_graph=j < len(vol_terms) - 1)
                term.last_value, term.last_residual = float(v.detach()), T.residual_of(term, v)
                term.last_grad, values[term.target.name] = g, v.detach()
        t3 = time.perf_counter()
        for term in self.terms:
            name = term.target.name
            if term.last_grad is not None:
                g_bal, norm = balance(term.last_grad, prior_norm, term.last_residual, term.weight)
                total = total + g_bal
                term.last_grad_norm = norm
                row[f"{name}:balanced_norm"] = float(g_bal.norm())
            row[f"{name}:value"] = term.last_value
            row[f"{name}:residual"] = term.last_residual
            row[f"{name}:grad_norm"] = term.last_grad_norm
        opt.zero_grad(set_to_none=False)
        z.grad = torch.nan_to_num(total)
        opt.step()
        self.timings["prior"] += t1 - t0
        self.timings["slice_terms"] += t2 - t1
        self.timings["volume_terms"] += t3 - t2
        return row, values

    def execute(self, config: dict, return_probabilities: bool) -> GuidanceResult:
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        t0 = time.perf_counter()
        z0 = self.start_latent(gen)
        self.timings["lmpdd"] = time.perf_counter() - t0
        if self.grain_roughness is not None:
            config["grain_roughness"] = round(float(self.grain_roughness), 4)
        z = z0.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.o.lr)
        log: list[dict] = []
        start: dict[str, float] = {}
        cal, every = self.o.calibrate_every, self.o.checkpoint_every
        checkpoints: list[tuple[float, int, torch.Tensor, frozenset]] = []  # (score, step, latent, spans)
        start_spans: frozenset = frozenset()
        last_finished: tuple[int, torch.Tensor, np.ndarray] | None = None
        bar = tqdm(total=self.steps, desc=f"guide seed {self.seed}", unit="step", disable=not self.o.progress, leave=False)
        s, end, measured_at = 0, self.steps, -1
        while s < end:
            # (an extended run's first step needs no calibration: its latent was just measured)
            at_cal = (s == 0 or (cal > 0 and s % cal == 0)) and s != measured_at
            # a checkpoint between calibrations: measured, offsets left as they are
            at_check = not at_cal and every > 0 and s % every == 0 and s != measured_at
            if at_cal or at_check:
                # measure before the step's update: the step's surrogate values and the
                # measurement then refer to the same latent
                zc = z.detach().clone()
            row, values = self.step(z, opt, s, gen, force_volume=at_cal)
            if at_cal or at_check:
                tc = time.perf_counter()
                measured, finished, spans = self.calibrate(zc, values, update=at_cal)
                self.timings["calibrate"] += time.perf_counter() - tc
                if s == 0:
                    # the start as reconstructed, without the VF targets settled
                    start = {term.target.name: self.measure_unsettled(term, finished[1], measured) for term in self.terms}
                    start_spans = spans
                    start_fractions = volume_fraction(finished[1], n_phases=self.vae.config.n_phases).tolist()
                else:
                    checkpoints.append((self.score(measured), s, zc, spans))
                    last_finished = (s, *finished)
                row.update({f"{k}:measured": v for k, v in measured.items()})
                row["spanning:measured"] = _spans_text(spans)
            log.append(row)
            s += 1
            bar.update()
            bar.set_postfix_str(" ".join(f"{x.target.name}={x.last_value:.4g}" for x in self.terms))
            if s == end:
                tc = time.perf_counter()
                zc = z.detach().clone()
                measured, finished, spans = self.calibrate(zc, self.volume_values(zc))
                self.timings["calibrate"] += time.perf_counter() - tc
                checkpoints.append((self.score(measured), s, zc, spans))
                last_finished, measured_at = (s, *finished), s
                row.update({f"{k}:measured_after": v for k, v in measured.items()})
                row["spanning:measured_after"] = _spans_text(spans)
                if self.unmet(measured) and end < self.o.max_steps:
                    end = min(end + max(1, cal or self.steps // 3 or 1), self.o.max_steps)
                    bar.total = end
                    bar.refresh()
        bar.close()
        tf = time.perf_counter()
        # the choice loses as few spannings as possible of those the start (the unguided
        # volume) or the last step has (guarded phases): the score looks only at the targets,
        # and a checkpoint close to them can have a broken network; a spanning seen only at a
        # transient checkpoint in between is not protected (it can come from an overshoot)
        protected = start_spans | checkpoints[-1][3]
        best_score, best_step, best_z, _ = min(checkpoints, key=lambda c: (len(protected - c[3]), c[0], -c[1]))
        if last_finished is not None and last_finished[0] == best_step:
            probs, labels = last_finished[1], last_finished[2]
        else:
            probs, labels = self.finish(best_z)
        z = best_z
        probs, labels, before_settle = self.settle_fractions(probs, labels)
        unpolished = labels
        labels, polish_info = self.polish(labels)
        reports = []
        for term in self.terms:
            t = term.target
            extra = {}
            if t.kind == "s2":
                rep = T.s2_report(labels, term.curve.cpu().numpy(), term.phases)
                achieved, extra = rep["max_error"], {"max_pointwise": rep["max_pointwise"]}
                if polish_info:
                    extra["before_polish"] = T.s2_report(unpolished, term.curve.cpu().numpy(), term.phases)["max_error"]
            else:
                achieved = T.measure(term, labels)
            if t.name in before_settle:
                extra = {"before_settle": before_settle[t.name]}
            reports.append(TermReport(t.name, 0.0 if t.kind == "s2" else float(t.value), float(start.get(t.name, np.nan)),
                                      float(achieved), term.weight, extra))
        self.timings["finish"] = time.perf_counter() - tf
        self.timings["total"] = time.perf_counter() - t0
        self.timings["per_step"] = (self.timings["total"] - self.timings["lmpdd"] - self.timings["finish"] - self.timings["calibrate"]) / s
        return GuidanceResult(labels=labels, seed=self.seed, terms=reports, log=log, timings=dict(self.timings), config=config,
                              probabilities=probs.float().cpu().numpy() if return_probabilities else None,
                              smoothing_sigma=tuple(self.sigma or ()), steps_run=s, selected_step=best_step, polish=polish_info,
                              phase_fractions={"start": start_fractions,
                                               "final": volume_fraction(labels, n_phases=self.vae.config.n_phases).tolist()})


def _check_grain_start(model, init: str | None, start: float, grain_phase: int | None,
                       roughness: float | str) -> float | str:
    """Validate the start options of :func:`generate` before any work (one-line errors)."""
    from microlad.reconstruct.api import _check_roughness, _grain_start

    _grain_start(model, init, start, grain_phase)
    return _check_roughness(roughness)


def _spans_text(spans: frozenset[tuple[int, int]]) -> str:
    """``"0:zyx 2:z"``: for each phase, the axes it spans (a log column)."""
    by_phase: dict[int, str] = {}
    for p, a in sorted(spans):
        by_phase[p] = by_phase.get(p, "") + "zyx"[a]
    return " ".join(f"{p}:{axes}" for p, axes in by_phase.items())
