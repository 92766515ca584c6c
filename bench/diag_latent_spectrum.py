"""Where in frequency L-MPDD's clean estimates lose variance against the 2D prior's (issue #11,
the latent drift's std deficit; fine-scale findings).

For each sampler step, the power of x̂0 per latent channel, summed in bands of spatial
frequency (cycles per latent pixel, DC excluded; Parseval: the bands add up to the
variance of a slice about its own mean), for (a) the 2D prior's own samples at the training
patch size (64 samples, the stored moments' seed) and (b) the slices of an L-MPDD volume
along the axis that step denoises (default settings: latent-mean matching, coupling window).
Prints the ratio (b)/(a) per band, mean over channels, at a few steps, and the bands'
share of the prior's variance.

Usage: python bench/diag_latent_spectrum.py MODEL SIZE [--seeds 1000 1001]
"""
import argparse

import numpy as np
import torch

BANDS = (0.0, 1 / 16, 2 / 16, 3 / 16, 4 / 16, 6 / 16, 0.71)


def band_power(x: torch.Tensor) -> np.ndarray:
    """x (N, C, h, w) → (C, bands): per channel, mean over N of the power in each band / (h·w)."""
    n, c, h, w = x.shape
    f = torch.fft.fft2(x.double() - x.double().mean(dim=(2, 3), keepdim=True))
    p = (f.abs() ** 2).mean(0) / (h * w) ** 2  # (C, h, w): sum over k = variance
    ky = torch.fft.fftfreq(h, dtype=torch.float64).view(-1, 1)
    kx = torch.fft.fftfreq(w, dtype=torch.float64).view(1, -1)
    k = torch.sqrt(ky ** 2 + kx ** 2)
    out = np.zeros((c, len(BANDS) - 1))
    for b in range(len(BANDS) - 1):
        m = (k > BANDS[b]) & (k <= BANDS[b + 1]) if b else (k > 0) & (k <= BANDS[1])
        out[:, b] = p[:, m].sum(-1).numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model"); ap.add_argument("size", type=int)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1000])
    ap.add_argument("--no-moments", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from microlad.diffusion import make_sampler
    from microlad.model import load_model
    from microlad.reconstruct.api import _moment_latent_size, latent_mean_moments
    from microlad.reconstruct.lmpdd import sample_latent_volume
    from microlad.reconstruct.moments import PRIOR_MOMENT_SAMPLES, _SEED
    from microlad.defaults import RECONSTRUCT_STEPS
    model = load_model(args.model)
    unet, sch = model.unet, model.schedule
    C, size, steps = model.vae.config.latent_channels, _moment_latent_size(model), RECONSTRUCT_STEPS
    s = make_sampler(sch, "ddim", steps)
    gen = torch.Generator().manual_seed(_SEED)
    x = torch.randn((PRIOR_MOMENT_SAMPLES, C, size, size), generator=gen)
    prior = []
    with torch.inference_mode():
        for i, t in enumerate(s.timesteps.tolist()):
            out = unet(x, s.timestep_tensor(i, len(x), device="cpu"))
            prior.append(band_power(sch.predict_x0_eps(x, out, t)[0]))
            x = s.step(out, i, x, generator=gen)
    lat = args.size // model.vae.config.downsample_factor
    vol = [np.zeros_like(p) for p in prior]
    for seed in args.seeds:
        def hook(i, t, axis, z, x0):
            sl = x0.movedim(axis + 1, 0)  # (n slices, C, h, w)
            vol[i] += band_power(sl) / len(args.seeds)
            return False
        with torch.inference_mode():
            sample_latent_volume(unet, sch, (C, lat, lat, lat), steps=steps, coupling_stop=model.coupling_stop,
                                 moments=None if args.no_moments else latent_mean_moments(model, "ddim", steps),
                                 generator=torch.Generator().manual_seed(seed), on_step=hook)
    names = [f"{BANDS[b]:.3f}-{BANDS[b + 1]:.3f}" for b in range(len(BANDS) - 1)]
    print("bands (cycles / latent px):", " ".join(names))
    for i in sorted({0, 3, 6, 9, 12, 15, 18, 21, steps - 1}):
        r = (vol[i] / np.maximum(prior[i], 1e-30)).mean(0)
        share = (prior[i] / prior[i].sum(1, keepdims=True)).mean(0)
        print(f"step {i:2d} t={s.timesteps[i].item():4d} ratio L-MPDD/prior", " ".join(f"{v:5.2f}" for v in r),
              "| prior share", " ".join(f"{v:.2f}" for v in share),
              f"| std ratio {np.sqrt(vol[i].sum(1) / prior[i].sum(1)).mean():.2f}")


if __name__ == "__main__":
    main()
