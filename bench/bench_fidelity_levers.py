"""Fidelity levers (issue #11): the same L-MPDD latents finished in different ways, judged on
what a simulation sees — slice perimeter vs the training images, 3D surface area vs the
stereological value, clusters, spanning fraction and tortuosity of a phase — and, where a
3D truth exists, against the truth's own spread over sub-volumes.

Usage: python bench/bench_fidelity_levers.py MODEL [--truth VOLUME] [--phase 0] [-n 4]
       [--size 128] [--variants default,logit,k3,smooth] [--name NAME]

Variants (every one starts from the same latent volume per seed, decoded along z, y, x):
  default  probabilities averaged over the axes, VF matched, 1 refinement pass, VF matched
  logit    the axes fused by the mean of log-probabilities (decode and refinement)
  k3       as default with 3 refinement passes
  smooth   default, then the perimeter-calibrated smoothing that reconstruct() applies by
           default (microlad.reconstruct.smoothing: a Gaussian blur whose σ is set per
           volume so the mean slice perimeter equals the training images'; 2D data only)
  grains_F reconstruct(init="grains", init_start=F): L-MPDD from a pack of overlapping spheres
           built from the training fraction and slice perimeter, noised to F·T, then the
           smooth finish (its own latent, not the shared one)
  grainstex_F  as grains_F, but the pack's latent low-passed (Gaussian, σ = R/(2f) latent
           cells) plus the high-pass of the shared (free) latent before the noising (tried,
           not a library option: it lost connectivity on Leopard)
  polish   smooth, then reconstruct(polish=100)'s opt-in label polish toward the training
           slice S2 and perimeter (microlad.reconstruct.polish; fractions held, no phase
           split, spannings kept)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NO_PAPER, SHARED_DATA, machine, provenance, save  # noqa: E402


def texture_blend(coarse, fine, sigma):
    """Gaussian low-pass (σ in latent cells, per channel) of ``coarse`` plus the high-pass of ``fine``; (C, d, h, w)."""
    from scipy import ndimage as ndi

    def low(z):
        return torch.from_numpy(np.stack([ndi.gaussian_filter(c, sigma, mode="nearest") for c in z.numpy()])).to(z)

    return low(coarse) + fine - low(fine)


def fuse(per_axis, mode):
    if mode == "logit":
        return torch.softmax(sum(q.clamp_min(1e-8).log() for q in per_axis) / len(per_axis), dim=0)
    return sum(per_axis) / len(per_axis)


@torch.inference_mode()
def decode_axes(vae, raw, opts):
    from microlad.reconstruct._orient import to_slices
    from microlad.reconstruct.decode import decode_slices, interpolate_along

    f, p = vae.config.downsample_factor, vae.config.n_phases
    c, d, h, w = raw.shape
    out = []
    for axis in range(3):
        q = torch.zeros((p, d * f, h * f, w * f))
        to_slices(q, axis).add_(decode_slices(vae, to_slices(interpolate_along(raw, axis, f), axis), opts))
        out.append(q)
    return out


@torch.inference_mode()
def refine(vae, probs, passes, mode, opts):
    from microlad.reconstruct._orient import to_slices
    from microlad.reconstruct.decode import decode_slices, encode_slices

    p = vae.config.n_phases
    for _ in range(passes):
        onehot = F.one_hot(probs.argmax(0), p).permute(3, 0, 1, 2).float()
        per_axis = []
        for axis in range(3):
            q = torch.zeros_like(probs)
            to_slices(q, axis).add_(decode_slices(vae, encode_slices(vae, to_slices(onehot, axis), opts), opts))
            per_axis.append(q)
        probs = fuse(per_axis, mode)
    return probs


def measure(labels, phase, ref_la, with_tau):
    from microlad.descriptors import percolation, slice_clusters, slice_perimeter_density, specific_surface_area
    from microlad.physics import solve_transport

    p = len(ref_la)
    out = {
        "perimeter": [float(np.mean([slice_perimeter_density(labels, phase=q, axis=a) for a in range(3)]) / ref_la[q] - 1) for q in range(p)],
        "ssa": [float(specific_surface_area(labels, phase=q)) for q in range(p)],
        "clusters": [float(np.mean([slice_clusters(labels, phase=q, axis=a).density for a in range(3)])) for q in range(p)],
        "vf": float((labels == phase).mean()),
        "span": [percolation(labels, phase=phase, axis=a).spanning_fraction for a in range(3)],
    }
    if with_tau:
        taus = []
        for a in range(3):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = solve_transport(labels, phase=phase, axis=a, method="grid").tortuosity
            taus.append(float(t) if math.isfinite(t) else float("nan"))
        out["tau"] = taus
    return out


def truth_stats(path, phase, size, with_tau):
    from microlad.descriptors import percolation, specific_surface_area
    from microlad.io import read_image
    from microlad.physics import solve_transport

    vol = read_image(path).labels
    n = [s // size for s in vol.shape]
    rows = []
    for i in range(n[0]):
        for j in range(n[1]):
            for k in range(n[2]):
                sub = vol[i * size:(i + 1) * size, j * size:(j + 1) * size, k * size:(k + 1) * size]
                r = {"ssa": float(specific_surface_area(sub, phase=phase)),
                     "span": float(np.mean([percolation(sub, phase=phase, axis=a).spanning_fraction for a in range(3)]))}
                if with_tau:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        for a, name in enumerate("zyx"):
                            r[f"tau_{name}"] = float(solve_transport(sub, phase=phase, axis=a, method="grid").tortuosity)
                rows.append(r)
    return {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows], ddof=1))) for k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--truth", default=None)
    ap.add_argument("--phase", type=int, default=0)
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--variants", default="default,logit,k3,smooth")
    ap.add_argument("--no-tau", action="store_true")
    ap.add_argument("--sampler", default="ddim", help="L-MPDD sampler (ddim | ancestral)")
    ap.add_argument("--steps", type=int, default=None, help="L-MPDD steps (default: reconstruct's)")
    ap.add_argument("--average-axes", action="store_true", help="L-MPDD averages the three orientations at every step (3x cost)")
    ap.add_argument("--moments", choices=("none", "mean", "both"), default=None,
                    help="match each L-MPDD step's clean estimate per channel to the 2D prior's mean, or mean and std "
                         "(default: reconstruct's default, match_latent_mean)")
    ap.add_argument("--grain-roughness", default="0", help="grains_F / grainstex_F: the pack's surface roughness A (voxels), "
                    "or auto: reconstruct()'s calibration from 2D data (microlad.reconstruct.grains.calibrate_roughness)")
    ap.add_argument("--name", required=True)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    from microlad.bundled import resolve_model
    from microlad.defaults import RECONSTRUCT_MATCH_LATENT_MEAN, RECONSTRUCT_STEPS
    from microlad.model import load_model
    from microlad.reconstruct.api import _target_fractions, latent_mean_moments, lmpdd_moments, smooth_probabilities
    from microlad.reconstruct.decode import match_fractions
    from microlad.reconstruct.lmpdd import sample_latent_volume
    from microlad.reconstruct.options import SliceOptions

    model = load_model(resolve_model(args.model))
    vae, unet = model.vae, model.unet
    vae.eval(), unet.eval()
    f = vae.config.downsample_factor
    target_vf = _target_fractions(model, True)
    ref_la = np.asarray(model.training_stats.specific_surface_area, dtype=float)
    opts = SliceOptions(progress=False)
    variants = args.variants.split(",")
    with_tau = not args.no_tau
    rows = {v: [] for v in variants}
    use_moments = args.moments or ("mean" if RECONSTRUCT_MATCH_LATENT_MEAN else "none")
    steps = args.steps or RECONSTRUCT_STEPS
    moments = {"none": None, "mean": lambda: latent_mean_moments(model, args.sampler, steps),
               "both": lambda: lmpdd_moments(model, args.sampler, steps)}[use_moments]
    moments = moments() if moments else None
    t_start, start = time.time(), machine()
    roughness = {}  # per grains variant: A (calibrated once per variant with "auto", as reconstruct() does)
    for v in variants:
        if v.startswith(("grains_", "grainstex_")):
            if args.grain_roughness == "auto":
                rec = model.reconstruct((args.size,) * 3, seed=args.seed, steps=args.steps or RECONSTRUCT_STEPS, sampler=args.sampler,
                                        init="grains", init_start=float(v.split("_", 1)[1]), progress=False)[0]
                roughness[v] = float(rec.grain_roughness)
                print(f"{v}: calibrated grain roughness A = {roughness[v]:.3f} in {rec.timings['grain_calibration']:.1f} s", flush=True)
            else:
                roughness[v] = float(args.grain_roughness)
    for i in range(args.n):
        seed = args.seed + i
        gen = torch.Generator().manual_seed(seed)
        s = args.size
        z = sample_latent_volume(unet, model.schedule, (vae.config.latent_channels, s // f, s // f, s // f),
                                 coupling_stop=model.coupling_stop, generator=gen, options=opts, sampler=args.sampler,
                                 steps=args.steps or RECONSTRUCT_STEPS, average_axes=args.average_axes,
                                 moments=moments)
        raw = vae.denormalize(z.movedim(0, 1)).movedim(1, 0)
        per_axis = decode_axes(vae, raw, opts)  # decoding is shared; the variants differ in fusion and finish
        for v in variants:
            t0 = time.time()
            mode = "logit" if v == "logit" else "mean"
            axes_probs = per_axis
            if v.startswith(("grains_", "grainstex_")):  # reconstruct(init="grains"[+texture], init_start=F): its own latent
                from microlad.reconstruct.api import _grain_start
                from microlad.reconstruct.grains import boolean_grains, project_labels

                start_f = float(v.split("_", 1)[1])
                params, grain, pore = _grain_start(model, "grains", start_f, None)
                pack = np.where(boolean_grains((s, s, s), params, np.random.default_rng(seed), roughness=roughness[v]),
                                grain, pore).astype(np.uint8)
                z_init = project_labels(vae, pack, opts)
                if v.startswith("grainstex_"):  # the shared latent is reconstruct's free pass of this seed
                    z_init = texture_blend(z_init, z, params.radius / (2 * f))
                zg = sample_latent_volume(unet, model.schedule, (vae.config.latent_channels, s // f, s // f, s // f),
                                          coupling_stop=model.coupling_stop, generator=torch.Generator().manual_seed(seed),
                                          options=opts, sampler=args.sampler, steps=args.steps or RECONSTRUCT_STEPS,
                                          moments=moments, init=z_init, start=start_f)
                axes_probs = decode_axes(vae, vae.denormalize(zg.movedim(0, 1)).movedim(1, 0), opts)
            probs = match_fractions(fuse(axes_probs, mode), target_vf)
            probs = match_fractions(refine(vae, probs, 3 if v == "k3" else 1, mode, opts), target_vf)
            extra = {}
            if v in ("smooth", "polish") or v.startswith(("grains_", "grainstex_")):  # what reconstruct() does by default
                probs, sigma = smooth_probabilities(model, probs, target_vf)
                extra["sigma"] = sigma
            labels = probs.argmax(0).to(torch.uint8).numpy()
            if v == "polish":  # reconstruct(polish=100)
                from microlad.reconstruct.api import _polish, _polish_targets

                labels, st = _polish(labels, _polish_targets(model), 100, False)
                extra["polish_flipped"] = st["flipped"]
            m = measure(labels, args.phase, ref_la, with_tau)
            m.update(extra, seconds=time.time() - t0)
            rows[v].append(m)
            print(seed, v, json.dumps({k: (np.round(val, 4).tolist() if not isinstance(val, str) else val) for k, val in m.items()}), flush=True)
    truth_path = args.truth and (args.truth if Path(args.truth).exists() else str(SHARED_DATA / "3d" / args.truth))
    truth = truth_stats(truth_path, args.phase, args.size, with_tau) if args.truth else None
    meta = {"model": args.model, "truth": args.truth, "phase": args.phase, "n": args.n, "size": args.size,
            "seeds": f"{args.seed}..{args.seed + args.n - 1}", "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "wall_s": time.time() - t_start, "match_moments": use_moments, "command": "python bench/bench_fidelity_levers.py " + " ".join(sys.argv[1:]),
            "stereological_ssa": (4 / math.pi * ref_la).tolist(), **({"grain_roughness": roughness} if roughness else {})}
    data = {"meta": meta, "rows": rows, "truth": truth}
    save(f"levers_{args.name}", data, markdown(args, data, start))


def _pm(rs, key, index=None, scale=1.0, fmt="{:.3g}"):
    a = np.asarray([r[key] if index is None else r[key][index] for r in rs], dtype=float) * scale
    a = a[np.isfinite(a)]
    if not len(a):
        return "–"
    se = a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else float("nan")
    return f"{fmt.format(a.mean())} ± {fmt.replace('+', '').format(se)}" + (f" ({len(a)})" if len(a) < len(rs) else "")


def markdown(args, data, start) -> str:
    meta, rows, truth = data["meta"], data["rows"], data["truth"]
    p = len(meta["stereological_ssa"])
    ph = args.phase
    L = [f"## Fidelity levers: {args.name} (`bench/bench_fidelity_levers.py`)", "",
         provenance(start=start, end=meta["machine"], paper=f"{NO_PAPER} (the paper reports only the summed S2 error; "
                    "it names surface area and connectivity as what 2D data may miss)"), "",
         f"Model `{args.model}`; {args.n} × {args.size}³ volumes (seeds {meta['seeds']}), every variant finishing the same "
         f"L-MPDD latent (sampler {args.sampler}, {args.steps or 'default'} steps"
         f"{', the three orientations averaged at every step' if args.average_axes else ''}"
         f"{', each step' + chr(39) + 's clean estimate matched to the 2D prior' + chr(39) + 's ' + {'mean': 'mean', 'both': 'mean and std'}[meta['match_moments']] if meta.get('match_moments', 'none') != 'none' else ', no moment matching'}). Mean ± standard error over volumes. Perimeter: slice perimeter density L_A (slices normal to z, y, x "
         "pooled) relative to the training images' (stored in the model), per phase. SA: 3D surface area of phase "
         f"{ph} (marching cubes, 1/voxel); the stereological value from the training images is 4/π·L_A = "
         f"{meta['stereological_ssa'][ph]:.4f}. Spanning: fraction of phase {ph} in clusters touching both faces, mean over "
         f"axes. τ: tortuosity of phase {ph} along z / y / x (grid solver; non-spanning axes left out, count in brackets).", ""]
    head = f"| variant | perimeter (per phase, %) | SA | 2D clusters per 1000 px² (phase {ph}) | spanning | τ z | τ y | τ x | σ (voxels) | s (finish + measures) |"
    L += [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for v, rs in rows.items():
        per = " / ".join(_pm(rs, "perimeter", q, 100, "{:+.1f}") for q in range(p))
        span = _pm([{"s": float(np.mean(r["span"]))} for r in rs], "s")
        taus = [_pm(rs, "tau", a) if "tau" in rs[0] else "–" for a in range(3)]
        sig = _pm(rs, "sigma") if "sigma" in rs[0] else "0"
        L.append(f"| {v} | {per} | {_pm(rs, 'ssa', ph, 1, '{:.4f}')} | {_pm(rs, 'clusters', ph, 1000)} | {span} | "
                 f"{' | '.join(taus)} | {sig} | {_pm(rs, 'seconds', None, 1, '{:.0f}')} |")
    if truth:
        t = truth
        L.append(f"| **truth** ({args.size}³ sub-volumes of `{Path(args.truth).name}`, mean ± std) | – | "
                 f"{t['ssa'][0]:.4f} ± {t['ssa'][1]:.4f} | – | {t['span'][0]:.3f} ± {t['span'][1]:.3f} | "
                 + (" | ".join(f"{t[k][0]:.2f} ± {t[k][1]:.2f}" for k in ("tau_z", "tau_y", "tau_x")) + " | – | – |"
                    if "tau_z" in t else "– | – | – | – | – |"))
    if meta.get("grain_roughness"):
        how = "calibrated from 2D data (`--grain-roughness auto`)" if args.grain_roughness == "auto" else "set by hand"
        L += ["", "Grain surface roughness A (voxels), " + how + ": "
              + ", ".join(f"{v} {a:.2f}" for v, a in meta["grain_roughness"].items()) + "."]
    return "\n".join(L)


if __name__ == "__main__":
    main()
