"""Where along the sampler's trajectory does L-MPDD's fine-scale roughness form? (issue #11
diagnosis; prints, writes nothing)

At every step of the default L-MPDD (DDIM 25, the model's coupling window) on ``N`` 64³
volumes (seeds 1000…), the step's clean estimate x̂0 is decoded slice by slice along the
step's slicing axis (latent planes only), matched to the training fractions and labelled;
the same for 64 samples of the 2D prior (seed 0) at the same timesteps. Prints the slice
perimeter error against the image's 64² tiles per phase (mean over volumes) every other step.

Usage: ``python bench/diag_lmpdd_trajectory.py MODEL IMAGE N``
"""
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fine_scale import reference, measure_slices
from microlad.bundled import resolve_model
from microlad.model import load_model
from microlad.io import read_image
from microlad.diffusion import make_sampler
from microlad.reconstruct._orient import axis_schedule, to_slices
from microlad.reconstruct.lmpdd import predict_slices
from microlad.reconstruct.coupling import coupled_output
from microlad.reconstruct.decode import match_fractions
from microlad.reconstruct.api import _target_fractions
torch.set_num_threads(1)
model = load_model(resolve_model(sys.argv[1])); n = int(sys.argv[3])
vae, unet, sch = model.vae, model.unet, model.schedule; p = model.n_phases
ref = reference(read_image(sys.argv[2]).labels, p)
tv = _target_fractions(model, True)
def perim(lat):  # lat (N, C, 16, 16) normalized
    with torch.inference_mode():
        probs = torch.softmax(vae.decode(vae.denormalize(lat)), 1)  # (N, P, 64, 64)
    lab = match_fractions(probs.movedim(1, 0), tv).argmax(0).numpy().astype(np.uint8)
    return (measure_slices(lab, p)["perimeter"] / ref["perimeter"] - 1) * 100
s = make_sampler(sch, "ddim", 25)
rows3, rows2 = [], []
with torch.inference_mode():
    for seed in range(1000, 1000 + n):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn((vae.config.latent_channels, 16, 16, 16), generator=g)
        axes = axis_schedule(len(s)); r = []
        for i, t in enumerate(s.timesteps.tolist()):
            out = predict_slices(unet, z, t, axes[i])
            if t >= model.coupling_stop * sch.num_train_timesteps:
                out = coupled_output(sch, z, out, t, axes[i])
            x0, _ = sch.predict_x0_eps(z, out, t)
            r.append(perim(to_slices(x0, axes[i])))
            z = s.step(out, i, z)
        rows3.append(r)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((64, vae.config.latent_channels, 16, 16), generator=g)
    for i, t in enumerate(s.timesteps.tolist()):
        out = unet(x, s.timestep_tensor(i, 64))
        x0, _ = sch.predict_x0_eps(x, out, t)
        rows2.append(perim(x0))
        x = s.step(out, i, x)
a3 = np.array(rows3).mean(0)
for i, t in enumerate(s.timesteps.tolist()):
    if i % 2 == 0 or i == len(s) - 1:
        print(f"t={t:4d}  L-MPDD x0 perimeter err % {np.round(a3[i], 1)}   2D prior x0 {np.round(rows2[i], 1)}")
