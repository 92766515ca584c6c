"""One-off diagnosis of the S2-guided error (bench/results/guidance.md, "S2 plateau"): for one
seed, per phase and axis, the signed slice-S2 sum error of a guided (or unguided) 64³ SOFC volume
against the model's training-patch S2 and against the full training image, and the per-step log.

Usage: python bench/diag_guidance_s2.py SEED STEPS MODE   (MODE: unguided, or a label for a guided run;
env CAL=k sets calibrate_every)
"""
import sys, time, torch, numpy as np
torch.set_num_threads(1)
from microlad.bundled import resolve_model
from microlad.model import load_model
from microlad.io import read_image
from microlad.descriptors import s2_radial, s2_slices
from microlad.guidance.stats import training_reference
m = load_model(resolve_model("sofc-anode"))
seed=int(sys.argv[1]); steps=int(sys.argv[2]); mode=sys.argv[3]
img=read_image('/work/shared/data/2d/sofc_anode_1024.tif').labels
full=np.stack([s2_radial(img, phase=p, cutoff=32, periodic=False) for p in range(3)])
tr=training_reference(m).s2[:, :33]
t0=time.time()
if mode=='unguided':
    lab=m.reconstruct((64,)*3, n=1, seed=seed, progress=False)[0].labels
else:
    import os
    ce=int(os.environ.get("CAL","0")) or None
    r = m.generate((64,)*3, {"s2":"train"}, seed=seed, steps=steps, progress=False, calibrate_every=ce)[0]
    print(r.summary(), time.time()-t0)
    lab=r.labels
    for row in r.log:
        print(row['step'], row['axis'], row['t'], round(row['s2:value'],4), round(row['s2:residual'],2), {k:round(v,4) for k,v in row.items() if k.endswith('measured')})
for name, ref in (("vs train-patch target", tr), ("vs full image (paper)", full)):
    e=np.array([[ (s2_slices(lab, phase=p, axis=a, cutoff=32, periodic=False).sum()-ref[p].sum())/ref[p].sum() for a in range(3)] for p in range(3)])
    print(name, "signed % [phase][z,y,x]", np.round(100*e,2).tolist(), "max", round(100*np.abs(e).max(),2))
print("VF", [round(float((lab==p).mean()),4) for p in range(3)], "train VF", np.round(tr[:,0],4).tolist(), "full VF", np.round(full[:,0],4).tolist())
