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
from _common import machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


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
                        r["tau"] = float(np.mean([solve_transport(sub, phase=phase, axis=a, method="grid").tortuosity for a in range(3)]))
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
    ap.add_argument("--name", required=True)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    from microlad.bundled import resolve_model
    from microlad.model import load_model
    from microlad.reconstruct.api import _target_fractions, smooth_probabilities
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
    t_start = time.time()
    for i in range(args.n):
        seed = args.seed + i
        gen = torch.Generator().manual_seed(seed)
        s = args.size
        z = sample_latent_volume(unet, model.schedule, (vae.config.latent_channels, s // f, s // f, s // f), generator=gen, options=opts)
        raw = vae.denormalize(z.movedim(0, 1)).movedim(1, 0)
        per_axis = decode_axes(vae, raw, opts)  # decoding is shared; the variants differ in fusion and finish
        for v in variants:
            t0 = time.time()
            mode = "logit" if v == "logit" else "mean"
            probs = match_fractions(fuse(per_axis, mode), target_vf)
            probs = match_fractions(refine(vae, probs, 3 if v == "k3" else 1, mode, opts), target_vf)
            extra = {}
            if v == "smooth":  # what reconstruct() does by default
                probs, sigma = smooth_probabilities(model, probs, target_vf)
                extra["sigma"] = sigma
            labels = probs.argmax(0).to(torch.uint8).numpy()
            m = measure(labels, args.phase, ref_la, with_tau)
            m.update(extra, seconds=time.time() - t0)
            rows[v].append(m)
            print(seed, v, json.dumps({k: (np.round(val, 4).tolist() if not isinstance(val, str) else val) for k, val in m.items()}), flush=True)
    truth = truth_stats(args.truth, args.phase, args.size, with_tau) if args.truth else None
    meta = {"model": args.model, "truth": args.truth, "phase": args.phase, "n": args.n, "size": args.size,
            "seeds": f"{args.seed}..{args.seed + args.n - 1}", "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "wall_s": time.time() - t_start, "command": "python bench/bench_fidelity_levers.py " + " ".join(sys.argv[1:]),
            "stereological_ssa": (4 / math.pi * ref_la).tolist()}
    (RESULTS / f"levers_{args.name}.json").write_text(json.dumps({"meta": meta, "rows": rows, "truth": truth}, indent=1))
    print(json.dumps(summary(rows, truth, meta), indent=1))


def summary(rows, truth, meta):
    out = {}
    for v, rs in rows.items():
        d = {}
        for key in rs[0]:
            a = np.asarray([r[key] for r in rs], dtype=float)
            d[key] = (np.nanmean(a, 0).round(4).tolist(), (np.nanstd(a, 0, ddof=1) / math.sqrt(len(a))).round(4).tolist() if len(a) > 1 else None)
        out[v] = d
    out["truth"] = truth
    out["stereological_ssa"] = meta["stereological_ssa"]
    return out


if __name__ == "__main__":
    main()
