"""How rough are the slices decoded straight from the L-MPDD latent, next to and between
latent planes? (issue #11 diagnosis; prints, writes nothing)

For ``N`` default L-MPDD latents (64³, seeds 1000…, the model's coupling window), decodes the
slices normal to z only (latent planes linearly interpolated along z, cell-centred, as
``reconstruct`` does), matches the training volume fractions, labels by argmax (no three-axis
average, refinement or smoothing) and prints the slice perimeter density's relative error
against the image's 64² tiles, per phase, for the slices at z mod 4 = 0, 1, 2, 3
(1 and 2 lie next to a latent plane, 0 and 3 between two), mean ± SE over volumes.

Usage: ``python bench/diag_plane_roughness.py MODEL IMAGE N [COUPLING_STOP]`` (default: the
model's calibrated window; 1 = plain L-MPDD, 0 = every step coupled)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fine_scale import measure_slices, reference  # noqa: E402

from microlad.bundled import resolve_model
from microlad.io import read_image
from microlad.model import load_model
from microlad.reconstruct import SliceOptions, interpolate_along, sample_latent_volume, to_slices
from microlad.reconstruct.api import _target_fractions
from microlad.reconstruct.decode import decode_slices, match_fractions

SIZE = 64


def main() -> None:
    model_dir, image, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    stop = float(sys.argv[4]) if len(sys.argv) > 4 else None
    torch.set_num_threads(1)
    model = load_model(resolve_model(model_dir))
    vae, unet, p = model.vae, model.unet, model.n_phases
    f = vae.config.downsample_factor
    ref = reference(read_image(image).labels, p)
    target_vf = _target_fractions(model, True)
    errs: dict[int, list] = {k: [] for k in range(f)}
    for seed in range(1000, 1000 + n):
        with torch.inference_mode():
            z = sample_latent_volume(unet, model.schedule, (vae.config.latent_channels, SIZE // f, SIZE // f, SIZE // f),
                                     coupling_stop=model.coupling_stop if stop is None else stop, generator=torch.Generator().manual_seed(seed))
            raw = vae.denormalize(z.movedim(0, 1)).movedim(1, 0)
            probs = torch.zeros((p, SIZE, SIZE, SIZE))
            to_slices(probs, 0).add_(decode_slices(vae, to_slices(interpolate_along(raw, 0, f), 0), SliceOptions()))
            labels = match_fractions(probs, target_vf).argmax(0).numpy().astype(np.uint8)
        for k in range(f):
            errs[k].append(measure_slices(labels[k::f], p)["perimeter"] / ref["perimeter"] - 1)
    for k in range(f):
        a = 100 * np.asarray(errs[k])
        se = a.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.full(p, np.nan)
        print(f"z mod {f} = {k}: slice perimeter error per phase " + " / ".join(f"{m:+.1f} ± {s:.1f} %" for m, s in zip(a.mean(0), se)))


if __name__ == "__main__":
    main()
