"""Diagnostic: where along the L-MPDD trajectory is the rock's 3D connectivity lost?

Projects a real 3D sub-volume onto an L-MPDD latent volume (as
``bench/diag_representation.py``: z slices encoded, latents averaged over each f-plane
block along z), noises it to the sampler's step k (SDEdit: z_t = √ᾱ_t·z0 + √(1−ᾱ_t)·ε) and
runs the default coupled L-MPDD from there, then the default finish (decode three axes,
average, match fractions, one refinement, perimeter-calibrated smoothing). Start fraction
0 = the projection itself (no sampling), 1 = pure noise (a normal reconstruction).

If τ stays near the rock's up to high noise, the prior keeps the connectivity it is given
and the loss is in how L-MPDD builds 3D structure from noise; if it is lost already at low
noise, the prior's denoiser itself pulls the pore network apart.

Usage: python bench/diag_sdedit_truth.py MODEL VOLUME --phase 0 --size 128 --fractions 0.2 0.5 0.8
Prints one JSON line per start fraction; writes nothing. The truth is only evaluated.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from diag_representation import measure


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("volume")
    ap.add_argument("--phase", type=int, default=0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--corner", type=int, nargs=3, default=[0, 0, 0])
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.5, 0.8])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from microlad.bundled import resolve_model
    from microlad.diffusion import make_sampler
    from microlad.io import read_image
    from microlad.model import load_model
    from microlad.reconstruct._orient import to_slices
    from microlad.reconstruct.api import _target_fractions, smooth_probabilities
    from microlad.reconstruct.coupling import coupled_output
    from microlad.reconstruct.decode import decode_volume, encode_slices, match_fractions, refine_volume
    from microlad.defaults import RECONSTRUCT_STEPS
    from microlad.reconstruct._orient import axis_schedule
    from microlad.reconstruct.lmpdd import predict_slices
    from microlad.reconstruct.options import SliceOptions

    model = load_model(resolve_model(args.model))
    vae, unet = model.vae.eval(), model.unet.eval()
    f, p, s = vae.config.downsample_factor, vae.config.n_phases, args.size
    target = _target_fractions(model, True)
    opts = SliceOptions(progress=False)
    vol = read_image(args.volume).labels
    c = args.corner
    sub = np.ascontiguousarray(vol[c[0]:c[0] + s, c[1]:c[1] + s, c[2]:c[2] + s])
    print(json.dumps({"start": "truth", **measure(sub, args.phase)}), flush=True)
    onehot = F.one_hot(torch.from_numpy(sub.astype(np.int64)), p).permute(3, 0, 1, 2).float()
    with torch.inference_mode():
        z = encode_slices(vae, to_slices(onehot, 0), opts)  # (Z, C, h, w) raw
        lat = F.avg_pool1d(z.permute(1, 2, 3, 0).reshape(-1, 1, s), f).reshape(z.shape[1], s // f, s // f, s // f)
        raw0 = lat.permute(0, 3, 1, 2).contiguous()
        z0 = vae.normalize(raw0.movedim(0, 1)).movedim(1, 0)
        sampler = make_sampler(model.schedule, "ddim", RECONSTRUCT_STEPS)
        ts = sampler.timesteps.tolist()
        axes = axis_schedule(len(sampler))
        T = model.schedule.num_train_timesteps
        for frac in [0.0] + list(args.fractions):
            gen = torch.Generator().manual_seed(args.seed)
            if frac <= 0:
                zz, k = z0.clone(), len(ts)
            else:
                k = min(range(len(ts)), key=lambda i: abs(ts[i] - frac * T))
                zz = model.schedule.add_noise(z0, torch.randn(z0.shape, generator=gen), int(ts[k]))
            for i in range(k, len(ts)):
                out = predict_slices(unet, zz, ts[i], axes[i], opts)
                out = coupled_output(model.schedule, zz, out, ts[i], axes[i])
                zz = sampler.step(out, i, zz, generator=gen)
            raw = vae.denormalize(zz.movedim(0, 1)).movedim(1, 0)
            probs = match_fractions(decode_volume(vae, raw, opts), target)
            probs = match_fractions(refine_volume(vae, probs, 1, opts), target)
            probs, sigma = smooth_probabilities(model, probs, target)
            print(json.dumps({"start": frac, "t": int(ts[k]) if k < len(ts) else 0, "steps_run": len(ts) - k,
                              **measure(probs.argmax(0).numpy(), args.phase)}), flush=True)


if __name__ == "__main__":
    main()
