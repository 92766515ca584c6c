"""Where along the sampler's trajectory does L-MPDD's fine-scale roughness form? (issue #11
diagnosis; prints, writes nothing)

At every step of the default L-MPDD (DDIM 25, the model's coupling window) on ``N`` 64³
volumes (seeds 1000…), the step's clean estimate x̂0 is decoded slice by slice along the
step's slicing axis (latent planes only), matched to the training fractions and labelled;
the same for 64 samples of the 2D prior (seed 0) at the same timesteps. Prints the slice
perimeter error against the image's 64² tiles per phase (mean over volumes) every other step.

Usage: ``python bench/diag_lmpdd_trajectory.py MODEL IMAGE N``
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fine_scale import measure_slices, reference  # noqa: E402

from microlad.bundled import resolve_model
from microlad.defaults import RECONSTRUCT_STEPS
from microlad.io import read_image
from microlad.model import load_model
from microlad.reconstruct import sample_latent_volume, to_slices
from microlad.reconstruct.api import _target_fractions
from microlad.reconstruct.decode import match_fractions


def main() -> None:
    torch.set_num_threads(1)
    model = load_model(resolve_model(sys.argv[1]))
    n = int(sys.argv[3])
    vae, unet, schedule, p = model.vae, model.unet, model.schedule, model.n_phases
    ref = reference(read_image(sys.argv[2]).labels, p)
    target_vf = _target_fractions(model, True)

    def perimeter_error(latents: torch.Tensor) -> np.ndarray:
        """(N, C, h, w) normalized latents → per-phase slice perimeter error (%) of their decodes."""
        probs = torch.softmax(vae.decode(vae.denormalize(latents)), 1)
        labels = match_fractions(probs.movedim(1, 0), target_vf).argmax(0).numpy().astype(np.uint8)
        return 100 * (measure_slices(labels, p)["perimeter"] / ref["perimeter"] - 1)

    timesteps: list[int] = []
    rows3 = []
    with torch.inference_mode():
        for seed in range(1000, 1000 + n):
            row: list[np.ndarray] = []
            timesteps.clear()

            def record(i, t, axis, z, x0, row=row):
                timesteps.append(t)
                row.append(perimeter_error(to_slices(x0, axis)))

            sample_latent_volume(unet, schedule, (vae.config.latent_channels, 16, 16, 16), coupling_stop=model.coupling_stop,
                                 generator=torch.Generator().manual_seed(seed), on_step=record)
            rows3.append(row)
        # the 2D prior's clean estimates at the same timesteps (64 samples, seed 0)
        smp = model.make_sampler(RECONSTRUCT_STEPS, sampler="ddim")
        x = torch.randn((64, vae.config.latent_channels, 16, 16), generator=torch.Generator().manual_seed(0))
        rows2 = []
        for i, t in enumerate(smp.timesteps.tolist()):
            out = unet(x, smp.timestep_tensor(i, len(x)))
            rows2.append(perimeter_error(schedule.predict_x0_eps(x, out, t)[0]))
            x = smp.step(out, i, x)
    mean3 = np.mean(rows3, axis=0)
    for i, t in enumerate(timesteps):
        if i % 2 == 0 or i == len(timesteps) - 1:
            print(f"t={t:4d}  L-MPDD x0 perimeter error % {np.round(mean3[i], 1)}   2D prior x0 {np.round(rows2[i], 1)}")


if __name__ == "__main__":
    main()
