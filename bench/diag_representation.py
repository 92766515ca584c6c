"""Diagnostic: can the reconstruction's representation hold the real 3D connectivity?

Pushes real 3D sub-volumes (ground truth) through the pieces of the pipeline that sit
between the sampler and the labels, and measures the pore network after each:

* ``truth``: the sub-volume itself;
* ``refine``: one three-axis refinement pass (encode → decode every voxel slice along z, y,
  x; average), fractions matched: the VAE and the axis averaging alone;
* ``latent3d``: the sub-volume projected onto an L-MPDD latent volume (every z slice
  encoded, the latents averaged over each 4-plane block along z, so the latent is ÷f
  along every axis, as a sampled one is), then decoded exactly as ``reconstruct`` decodes
  (each axis interpolated, decoded, averaged), fractions matched;
* ``latent3d+finish``: that, plus the default finish (one refinement, perimeter-calibrated
  smoothing, fractions matched).

If the connectivity survives ``latent3d+finish``, the representation can hold it and a
poorly connected reconstruction comes from what the sampler generates, not from the
latent grid or the finish. The truth is only evaluated here, never used to fit anything.

Usage: python bench/diag_representation.py MODEL VOLUME --phase 0 --size 128 -n 4
Prints one JSON line per sub-volume and variant; writes nothing.
"""
from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import torch
import torch.nn.functional as F


def measure(labels: np.ndarray, phase: int) -> dict:
    from microlad.descriptors import percolation, specific_surface_area
    from microlad.physics import solve_transport

    taus = []
    for ax in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            taus.append(round(float(solve_transport(labels, phase=phase, axis=ax, rtol=1e-5).tortuosity), 2))
    return {"vf": round(float((labels == phase).mean()), 4), "sa": round(float(specific_surface_area(labels, phase=phase)), 4),
            "span": round(float(np.mean([percolation(labels, phase=phase, axis=a).spanning_fraction for a in range(3)])), 3),
            "tau_zyx": taus}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("volume")
    ap.add_argument("--phase", type=int, default=0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("-n", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from microlad.bundled import resolve_model
    from microlad.io import read_image
    from microlad.model import load_model
    from microlad.reconstruct._orient import to_slices
    from microlad.reconstruct.api import _target_fractions, smooth_probabilities
    from microlad.reconstruct.decode import decode_volume, encode_slices, match_fractions, refine_volume
    from microlad.reconstruct.options import SliceOptions

    model = load_model(resolve_model(args.model))
    vae = model.vae.eval()
    f = vae.config.downsample_factor
    p = vae.config.n_phases
    target = _target_fractions(model, True)
    opts = SliceOptions(progress=False)
    vol = read_image(args.volume).labels
    s = args.size
    corners = [(0, 0, 0), (vol.shape[0] - s, vol.shape[1] - s, vol.shape[2] - s), (0, vol.shape[1] - s, 0),
               (vol.shape[0] - s, 0, vol.shape[2] - s), ((vol.shape[0] - s) // 2,) * 3]
    for c in corners[: args.n]:
        sub = np.ascontiguousarray(vol[c[0]:c[0] + s, c[1]:c[1] + s, c[2]:c[2] + s])
        print(json.dumps({"corner": c, "variant": "truth", **measure(sub, args.phase)}), flush=True)
        onehot = F.one_hot(torch.from_numpy(sub.astype(np.int64)), p).permute(3, 0, 1, 2).float()
        with torch.inference_mode():
            probs = match_fractions(refine_volume(vae, onehot, 1, opts), target)
            print(json.dumps({"corner": c, "variant": "refine", **measure(probs.argmax(0).numpy(), args.phase)}), flush=True)
            z = encode_slices(vae, to_slices(onehot, 0), opts)  # (Z, C, h, w)
            lat = F.avg_pool1d(z.permute(1, 2, 3, 0).reshape(-1, 1, s), f).reshape(z.shape[1], s // f, s // f, s // f)
            lat = lat.permute(0, 3, 1, 2).contiguous()  # (C, Z/f, h, w)
            probs = match_fractions(decode_volume(vae, lat, opts), target)
            print(json.dumps({"corner": c, "variant": "latent3d", **measure(probs.argmax(0).numpy(), args.phase)}), flush=True)
            probs = match_fractions(refine_volume(vae, probs, 1, opts), target)
            probs, sigma = smooth_probabilities(model, probs, target)
            print(json.dumps({"corner": c, "variant": "latent3d+finish", "sigma": [round(x, 2) for x in sigma],
                              **measure(probs.argmax(0).numpy(), args.phase)}), flush=True)


if __name__ == "__main__":
    main()
