"""What the VAE alone loses at the finest scale (issue #11, item 0): encode → decode 256 random
64² patches of IMAGE and compare slice perimeter, cluster count and small-r S2 (r ≤ 8) per phase
with the image's own tiles (bench_fine_scale's reference), next to the same numbers for the real
patches themselves (the sampling noise of 256 patches), plus the pixel accuracy of the round trip.

Usage: python bench/diag_vae_round_trip.py MODEL IMAGE_OR_VOLUME  (figures: bench/results/fine_scale_findings.md)
"""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from bench_fine_scale import errors, measure_slices, reference  # noqa: E402
from microlad.bundled import resolve_model  # noqa: E402
from microlad.io import read_image  # noqa: E402
from microlad.model import load_model  # noqa: E402
from microlad.reconstruct.decode import decode_slices, encode_slices  # noqa: E402

torch.set_num_threads(1)
model = load_model(resolve_model(sys.argv[1]))
p = model.n_phases
img = read_image(sys.argv[2]).labels
ref = reference(img, p)
if img.ndim == 2:
    rng = np.random.default_rng(7)
    ys = rng.integers(0, img.shape[0] - 64 + 1, 256)
    xs = rng.integers(0, img.shape[1] - 64 + 1, 256)
    patches = np.stack([img[y:y + 64, x:x + 64] for y, x in zip(ys, xs)])
else:  # a 3D volume: random 64² crops of its slices along all three axes, no augmentation
    from microlad.data import PatchSampler
    sampler = PatchSampler([img], patch=64, augment=False)
    patches = sampler.sample_labels(256, torch.Generator().manual_seed(7)).numpy().astype(np.uint8)
with torch.no_grad():
    oh = F.one_hot(torch.as_tensor(patches, dtype=torch.long), p).permute(0, 3, 1, 2).float()
    rec = decode_slices(model.vae, encode_slices(model.vae, oh)).argmax(1).numpy().astype(np.uint8)
pct = lambda e: {k: np.round(v * 100, 1).tolist() for k, v in e.items()}  # noqa: E731
print(sys.argv[1], "real patches (%)", pct(errors(measure_slices(patches, p), ref)))
print(sys.argv[1], "VAE round trip (%)", pct(errors(measure_slices(rec, p), ref)), "pixel accuracy", round(float((rec == patches).mean()), 4))
