"""Where does the excess fine-scale surface of reconstructions arise? (issue #11, diagnosis)

For one model and its training image, generates ``-n`` volumes per variant (same seeds for
every variant: the L-MPDD latent is shared, only the stages after it differ) and measures
what the paper's summed S2 hides, on the slices normal to z, y and x, against 64² patches
of the training image (the slices' own size, so border effects match):

- slice perimeter density L_A per phase (:func:`microlad.descriptors.slice_perimeter_density`,
  the estimator the model's training statistics store),
- clusters per unit area in the slices (:func:`microlad.descriptors.slice_clusters`),
- the largest signed deviation of the slices' radial S2 for 1 ≤ r ≤ 8 from the training
  patches', in % of S2(0) (non-periodic, :func:`microlad.descriptors.s2_slices`).

Each figure is the mean over volumes and axes of the signed relative error, ± the standard
error over volumes. Variants (all with the training volume fractions matched, as the
default reconstruction does):

- ``default``: what ``reconstruct`` does: L-MPDD (coupled) → three-axis probability average →
  match → K = 1 refinement → match → perimeter-calibrated smoothing (match);
- ``common_width``: the default with one smoothing width for every phase (the default
  before per-phase widths, 2026-12-06; identical to ``default`` for two phases);
- ``unsmoothed``: the default without the smoothing (the default before 2026-12-06);
- ``k0`` / ``k3``: no refinement / three passes (no smoothing, like every variant below);
- ``axis0_only``: only the decode along z (slices normal to z decoded, others implied);
- ``logit_mean``: the three axes fused by averaging log-probabilities instead of probabilities;
- ``plain``: the paper's uncoupled L-MPDD, default decoding;
- ``coupled_until_F``: the default with the slice coupling only at timesteps t >= F·T
  (the coarse layout), plain L-MPDD below;
- ``prior_2d``: 2D samples of the prior (64², DDIM 25, the steps L-MPDD uses) decoded — the
  floor a 3D method stands on; ``prior_2d_ddim50``: the same with 50 DDIM steps (the
  default of models without a calibrated sampler; ``prior_2d_ddimN``: N steps);
  ``prior_2d_dpm``: 25 steps of DPM-Solver++(2M) instead of DDIM (``prior_2d_dpmN``: N
  steps); ``prior_2d_model``: ``sample_2d``'s default, the sampler and steps calibrated for
  the model at training (``config.prior_sampler``). Each "volume" of a prior variant is 64
  samples;
- ``dpm``: the default with DPM-Solver++(2M) as the L-MPDD sampler (same steps);
- ``stop_T``: the default, but L-MPDD returns its clean estimate at the first step with
  timestep <= T instead of running the remaining low-noise steps;
- ``polish``: ``reconstruct(polish=100)``: the default, then the label polish
  (:mod:`microlad.reconstruct.polish`, spannings kept) toward the training S2 and slice
  perimeter stored in the model (2D data only); ``polish_s2``: the same toward the S2 alone;
- ``harmonise_T``: the default with, after L-MPDD, the latent re-noised to timestep T and
  replaced by the (coupled) clean estimate along x, then y, then z (one U-Net pass per axis).

The reference is the image's non-overlapping 64² tiles (since 2026-12-06; 128 random
64² patches before, whose offsets over-weight the image centre: on the 256² carbonate
image that put the reference's perimeter 9 % and its pore S2(0) 10 % above the image's
own; on the 1024² SOFC image about 1 %).

Usage: ``python bench/bench_fine_scale.py sofc-anode ../shared/data/2d/sofc_anode_1024.tif -n 6 --name sofc``
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from _common import NO_PAPER, machine, model_image_parser, provenance, save  # noqa: E402

from microlad.bundled import resolve_model
from microlad.descriptors import s2_autocorrelation, s2_radial, s2_slices, slice_clusters, slice_perimeter_density
from microlad.io import read_image
from microlad.model import load_model
from microlad.reconstruct import SliceOptions, interpolate_along, refine_volume, sample_latent_volume, to_slices
from microlad.defaults import RECONSTRUCT_MATCH_LATENT_MEAN, RECONSTRUCT_STEPS
from microlad.reconstruct.api import _target_fractions, lmpdd_moments, smooth_probabilities
from microlad.reconstruct.decode import decode_slices, match_fractions
from microlad.reconstruct.smoothing import calibrate_sigma

VARIANTS = ("prior_2d", "prior_2d_ddim50", "prior_2d_dpm", "default", "moments", "no_moments", "dpm", "common_width", "unsmoothed", "k0", "k3", "axis0_only", "logit_mean", "plain")
R_SMALL = 8
PATCH = 64


def reference(image: np.ndarray, n_phases: int, max_tiles: int = 1024, seed: int = 0) -> dict:
    """The image's statistics on its non-overlapping 64² tiles (every pixel weighted once)."""
    from microlad.data import PatchSampler

    tiles = PatchSampler([image], patch=PATCH, augment=False).tile_labels(max_tiles, torch.Generator().manual_seed(seed))
    return measure_slices(tiles, n_phases)


def measure_slices(stack: np.ndarray, n_phases: int) -> dict:
    """Per-phase L_A, clusters per area and radial S2 (r ≤ R_SMALL) of a (N, H, W) stack."""
    per = np.array([slice_perimeter_density(stack, phase=p, axis=0) for p in range(n_phases)])
    clu = np.array([slice_clusters(stack, phase=p, axis=0).density for p in range(n_phases)])
    s2 = np.stack([np.mean([s2_radial(s, phase=p, cutoff=R_SMALL, periodic=False) for s in stack], axis=0)
                   for p in range(n_phases)])
    return {"perimeter": per, "clusters": clu, "s2": s2}


def measure_volume(labels: np.ndarray, n_phases: int) -> dict:
    """The same quantities over the slices normal to z, y and x (averaged over the axes)."""
    per = np.array([[slice_perimeter_density(labels, phase=p, axis=a) for a in range(3)] for p in range(n_phases)]).mean(1)
    clu = np.array([[slice_clusters(labels, phase=p, axis=a).density for a in range(3)] for p in range(n_phases)]).mean(1)
    s2 = np.stack([np.mean([s2_slices(labels, phase=p, axis=a, cutoff=R_SMALL, periodic=False) for a in range(3)], axis=0)
                   for p in range(n_phases)])
    return {"perimeter": per, "clusters": clu, "s2": s2}


def _signed_worst(d: np.ndarray) -> np.ndarray:
    return d[np.arange(len(d)), np.abs(d).argmax(1)]


def errors(m: dict, ref: dict) -> dict:
    phi = ref["s2"][:, :1]
    s2d = (m["s2"] - ref["s2"])[:, 1:] / phi
    # the same without the set's own phase fraction (ρ = (S2 − φ²)/(φ − φ²), in units of S2(0)):
    # the feature shape alone; the phase fraction is its own column
    rho = np.stack([s2_autocorrelation(c) for c in m["s2"]]) - np.stack([s2_autocorrelation(c) for c in ref["s2"]])
    return {"perimeter": m["perimeter"] / ref["perimeter"] - 1, "clusters": m["clusters"] / ref["clusters"] - 1,
            "s2_small_r": _signed_worst(s2d), "s2_shape": _signed_worst(rho[:, 1:] * (1 - phi)),
            "fraction": m["s2"][:, 0] / ref["s2"][:, 0] - 1}


def harmonise(model, z: torch.Tensor, t: int, gen: torch.Generator) -> torch.Tensor:
    """Re-noise the latent volume to timestep ``t`` and take the clean estimate along x, y, z in turn."""
    from microlad.reconstruct.coupling import coupled_output
    from microlad.reconstruct.lmpdd import predict_slices

    schedule = model.schedule
    a = float(schedule.alphas_cumprod_f64[t])
    for axis in (2, 1, 0):
        xt = a ** 0.5 * z + (1 - a) ** 0.5 * torch.randn(z.shape, generator=gen)
        out = predict_slices(model.unet, xt, t, axis)
        if t >= model.coupling_stop * schedule.num_train_timesteps:
            out = coupled_output(schedule, xt, out, t, axis)
        z, _ = schedule.predict_x0_eps(xt, out, t)
    return z


@torch.inference_mode()
def variant_labels(model, variant: str, seed: int, size: int, target_vf) -> np.ndarray:
    vae, unet = model.vae, model.unet
    f, p = vae.config.downsample_factor, vae.config.n_phases
    opts = SliceOptions()
    gen = torch.Generator().manual_seed(seed)
    if variant == "prior_2d_model":  # sample_2d's default: the sampler calibrated for the model
        return np.asarray(model.sample_2d(size, size=size, seed=seed))
    if variant.startswith("prior_2d"):
        sampler = "dpm2m" if variant.startswith("prior_2d_dpm") else "ddim"
        digits = variant.removeprefix("prior_2d_ddim" if sampler == "ddim" else "prior_2d_dpm")
        steps = int(digits) if digits.isdigit() else 25
        return np.asarray(model.sample_2d(size, size=size, steps=steps, seed=seed, sampler=sampler))
    stop = float(variant.split("_")[-1]) if variant.startswith("coupled_until_") else model.coupling_stop
    shape = (vae.config.latent_channels, size // f, size // f, size // f)
    stop_t = int(variant.removeprefix("stop_")) if variant.startswith("stop_") else None
    # moment matching of the L-MPDD clean estimates: "moments" (mean and std), "moments_mean",
    # "moments_std", "no_moments"; every other variant: reconstruct's default (the mean when on)
    which = {"moments": (True, True), "moments_mean": (True, False), "moments_std": (False, True),
             "no_moments": (False, False)}.get(variant, (RECONSTRUCT_MATCH_LATENT_MEAN, False))
    mom = None
    if any(which):
        full = lmpdd_moments(model, "dpm2m" if variant == "dpm" else "ddim", RECONSTRUCT_STEPS)
        mom = tuple(m if keep else None for m, keep in zip(full, which))
    z = sample_latent_volume(unet, model.schedule, shape, slice_coupling=variant != "plain", coupling_stop=stop,
                             moments=mom,
                             generator=gen, sampler="dpm2m" if variant == "dpm" else "ddim",
                             on_step=None if stop_t is None else (lambda i, t, axis, z_t, x0: t <= stop_t))
    if variant.startswith("harmonise_"):
        z = harmonise(model, z, int(variant.removeprefix("harmonise_")), gen)
    raw = vae.denormalize(z.movedim(0, 1)).movedim(1, 0)
    per_axis = []
    for axis in ((0,) if variant == "axis0_only" else range(3)):
        out = torch.zeros((p, size, size, size))
        to_slices(out, axis).add_(decode_slices(vae, to_slices(interpolate_along(raw, axis, f), axis), opts))
        per_axis.append(out)
    if variant == "logit_mean":
        probs = torch.softmax(sum(q.clamp_min(1e-8).log() for q in per_axis) / len(per_axis), dim=0)
    else:
        probs = sum(per_axis) / len(per_axis)
    probs = match_fractions(probs, target_vf)
    refine = {"k0": 0, "k3": 3, "axis0_only": 0}.get(variant, 1)
    if refine:
        probs = match_fractions(refine_volume(vae, probs, refine), target_vf)
    if variant in ("default", "dpm", "moments", "no_moments", "polish", "polish_s2") or variant.startswith(("coupled_until_", "moments_", "harmonise_", "stop_")):  # reconstruct()'s default finish: perimeter-calibrated smoothing
        probs, _ = smooth_probabilities(model, probs, target_vf)
    elif variant == "common_width":
        ref = [float(v) for v in model.training_stats.specific_surface_area]
        sigma = calibrate_sigma(probs, ref, lambda q: match_fractions(q, target_vf))
        probs, _ = smooth_probabilities(model, probs, target_vf, sigma=sigma)
    labels = probs.argmax(0).to(torch.uint8).numpy()
    if variant in ("polish", "polish_s2"):  # reconstruct()'s opt-in polish (polish_s2: without the perimeter term)
        from microlad.reconstruct.api import _polish, _polish_targets

        s2, perimeter = _polish_targets(model)
        labels, _ = _polish(labels, (s2, perimeter if variant == "polish" else None), 100, False)
    return labels


def main() -> None:
    ap = model_image_parser(__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=6, help="volumes per variant")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = machine()
    model = load_model(resolve_model(args.model_dir))
    p = model.n_phases
    image = read_image(args.image).labels
    ref = reference(image, p)
    target_vf = _target_fractions(model, True)
    rows, t_start = {}, time.time()
    for variant in args.variants.split(","):
        t0 = time.time()
        errs = []
        for i in range(args.n):
            lab = variant_labels(model, variant, 1000 + i, args.size, target_vf)
            m = measure_slices(lab, p) if variant.startswith("prior_2d") else measure_volume(lab, p)
            errs.append(errors(m, ref))
        rows[variant] = {k: (np.mean([e[k] for e in errs], 0).tolist(), (np.std([e[k] for e in errs], 0, ddof=1) / np.sqrt(args.n)).tolist())
                         for k in errs[0]}
        rows[variant]["seconds_per_volume"] = (time.time() - t0) / args.n
        print(variant, {k: np.round(np.array(v[0]) * 100, 1).tolist() for k, v in rows[variant].items() if k != "seconds_per_volume"}, flush=True)
    meta = {"model": args.model_dir, "image": str(args.image), "n": args.n, "size": args.size, "seeds": f"1000..{999 + args.n}",
            "machine": machine(), "machine_start": start, "date": time.strftime("%Y-%m-%d"), "wall_s": time.time() - t_start}
    pm = lambda v, k: " / ".join(f"{100 * a:+.1f} ± {100 * b:.1f}" for a, b in zip(*v[k]))
    lines = [f"## Fine-scale fidelity, diagnosis: {args.name} (`bench/bench_fine_scale.py`)", "",
             provenance(start=start, end=meta["machine"], paper=f"{NO_PAPER} (the paper reports only the summed S2 error; "
                                                                "no perimeter, cluster or small-r S2 figures)"), "",
             f"Model `{args.model_dir}`, reference: the non-overlapping 64² tiles of `{Path(args.image).name}`; {args.n} × {args.size}³ volumes per variant "
             f"(seeds {meta['seeds']}; variants that share the sampler start from the same L-MPDD latents), slices normal to z, y, x pooled; "
             f"{meta['machine']['torch_threads']} torch thread(s), load average {meta['machine']['load_average_1min']}, {meta['date']}. "
             "Signed relative error per phase (0 / 1 / …), mean ± standard error over volumes, in %. "
             "S2 column: the largest |S2_gen(r) − S2_ref(r)| for 1 ≤ r ≤ 8, signed, in % of S2(0); "
             "S2 shape: the same for the fraction-free ρ(r) = (S2 − φ²)/(φ − φ²) of each set, × (1 − φ_ref); "
             "fraction: the phase fraction's relative error (matched in 3D, chance in 2D samples). "
             "Goals (issue #11): perimeter within ±3 %, S2 within 2 % of S2(0).", "",
             "| variant | slice perimeter L_A | clusters per area | S2, r ≤ 8 | S2 shape, r ≤ 8 | fraction | s / volume |",
             "|---|---|---|---|---|---|---|"]
    for v, r in rows.items():
        lines.append(f"| {v} | {pm(r, 'perimeter')} | {pm(r, 'clusters')} | {pm(r, 's2_small_r')} | {pm(r, 's2_shape')} | "
                     f"{pm(r, 'fraction')} | {r['seconds_per_volume']:.1f} |")
    save(f"fine_scale_{args.name}", {"meta": meta, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
