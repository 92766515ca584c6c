"""One-off diagnosis: where the S2 sum error of the *starting* latent (reconstruct's L-MPDD sample,
no fraction matching) arises: the guidance surrogate (16 decoded latent planes per axis), the fused
decode, and the refined finish, per axis and phase, against the training-patch S2 (SOFC, 64³).

Usage: python bench/diag_guidance_start.py
"""
import torch, numpy as np
torch.set_num_threads(1)
from microlad.bundled import resolve_model
from microlad.model import load_model
from microlad.guidance.stats import training_reference
from microlad.guidance.surrogate import cell_slices
from microlad.guidance import terms as T
from microlad.reconstruct import latents_to_probabilities, refine_probabilities, sample_latent_volume
from microlad.defaults import RECONSTRUCT_STEPS, RECONSTRUCT_REFINE
m = load_model(resolve_model("sofc-anode")); vae=m.vae
tr=training_reference(m).s2[:, :33]
from microlad.guidance.targets import parse_targets
st=T.TermState(parse_targets(["s2=train"])[0]); st.curve=torch.as_tensor(tr, dtype=torch.float32); st.phases=(0,1,2)
for seed in (2000, 2001):
    gen=torch.Generator().manual_seed(seed)
    z=sample_latent_volume(m.unet, m.schedule, (vae.config.latent_channels,16,16,16), steps=RECONSTRUCT_STEPS, generator=gen, progress=False)
    with torch.no_grad():
        sur=[T.slice_value(st, cell_slices(vae, z, a), a).numpy() for a in range(3)]
        p0=latents_to_probabilities(vae, z, None); lab0=p0.argmax(0).to(torch.uint8).numpy()
        p1=refine_probabilities(vae, p0, RECONSTRUCT_REFINE, None); lab1=p1.argmax(0).to(torch.uint8).numpy()
    def err(curves): return np.round(100*(curves.sum(-1)-tr.sum(-1))/tr.sum(-1),2)
    print("seed", seed)
    print(" surrogate (16 latent planes/axis)  [axis][phase]", [err(s).tolist() for s in sur])
    for nm, lab in (("decoded fused, no refine", lab0), ("decoded + refined (finish)", lab1)):
        from microlad.descriptors import s2_slices; ac=np.stack([np.stack([s2_slices(lab, phase=p, axis=a, cutoff=32, periodic=False) for p in range(3)]) for a in range(3)])
        print(" ", nm, [err(ac[a]).tolist() for a in range(3)], "VF", [round(float((lab==p).mean()),4) for p in range(3)])
