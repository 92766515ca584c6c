"""L-MPDD with each step's clean estimate matched to the 2D prior's power per frequency band
(issue #11, a diagnostic; fine-scale findings, "L-MPDD's std deficit is broadband").

On top of latent-mean matching, every step's x̂0 is filtered, per latent channel and per band
of spatial frequency of the slices the step denoises (the bands of
``bench/diag_latent_spectrum.py``), so that its power in each band equals the 2D prior's own
x̂0 at that step (64 samples at the training patch size, the stored moments' seed); factors
clamped to [0.5, 2]. ``SPEC_MODE=bands`` leaves the lowest band (k ≤ 1/16 cycles per latent
pixel, which a 16² prior patch barely resolves) as it is; ``SPEC_MODE=all`` matches it too.
Everything else is ``bench/bench_fidelity_levers.py``, run with the given arguments
(``--moments mean``), e.g.:

    SPEC_MODE=bands MICROLAD_BENCH_RESULTS=/tmp/res python bench/diag_band_matching.py \
        bench/models/berea-default --truth berea_400.npz -n 4 --size 128 --variants smooth \
        --moments mean --name berea_spec_bands
"""
import os, runpy, sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diag_latent_spectrum as D
import microlad.reconstruct.lmpdd as L
from microlad.model import load_model
from microlad.bundled import resolve_model
from microlad.diffusion import make_sampler
from microlad.reconstruct.api import _moment_latent_size
from microlad.reconstruct.moments import PRIOR_MOMENT_SAMPLES, _SEED, match_moments
from microlad.defaults import RECONSTRUCT_STEPS

MODE = os.environ.get("SPEC_MODE", "bands")
model_path = sys.argv[1]
st = {"i": 0, "prior": None}
B = torch.tensor(D.BANDS, dtype=torch.float64)

def prior_bands():
    m = load_model(resolve_model(model_path))
    C, size = m.vae.config.latent_channels, _moment_latent_size(m)
    s = make_sampler(m.schedule, "ddim", RECONSTRUCT_STEPS)
    gen = torch.Generator().manual_seed(_SEED)
    x = torch.randn((PRIOR_MOMENT_SAMPLES, C, size, size), generator=gen)
    out_l = []
    with torch.inference_mode():
        for i, t in enumerate(s.timesteps.tolist()):
            out = m.unet(x, s.timestep_tensor(i, len(x), device="cpu"))
            out_l.append(torch.tensor(D.band_power(m.schedule.predict_x0_eps(x, out, t)[0])))
            x = s.step(out, i, x, generator=gen)
    return torch.stack(out_l)  # (steps, C, bands)

def band_index(h, w):
    ky = torch.fft.fftfreq(h, dtype=torch.float64).view(-1, 1); kx = torch.fft.fftfreq(w, dtype=torch.float64).view(1, -1)
    k = torch.sqrt(ky ** 2 + kx ** 2)
    idx = torch.bucketize(k, B[1:-1], right=False)  # band b for k in (B[b], B[b+1]]
    idx[k == 0] = -1
    return idx

def patched(x0, mean, std):
    if st["prior"] is None:
        st["prior"] = prior_bands()
    i = st["i"] % RECONSTRUCT_STEPS; st["i"] += 1
    a = i % 3
    x0 = match_moments(x0, mean, None)
    y = x0.double().movedim(a + 1, 1)  # (C, n, h, w)
    C, n, h, w = y.shape
    F = torch.fft.fft2(y)
    idx = band_index(h, w)
    p = (F.abs() ** 2).sum(1) / n / (h * w) ** 2  # (C, h, w)
    scale = torch.ones((C, h, w), dtype=torch.float64)
    first = 0 if MODE == "all" else 1
    for b in range(first, len(D.BANDS) - 1):
        m = idx == b
        if not m.any(): continue
        vol = p[:, m].sum(-1)
        f = torch.sqrt(st["prior"][i][:, b] / vol.clamp_min(1e-30)).clamp(0.5, 2.0)
        scale[:, m] = f.view(-1, 1)
    y = torch.fft.ifft2(F * scale[:, None]).real
    return y.movedim(1, a + 1).to(x0.dtype)

L.match_moments = patched
sys.argv = ["bench_fidelity_levers.py"] + sys.argv[1:]
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_fidelity_levers.py"), run_name="__main__")
