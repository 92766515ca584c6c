"""How far real sub-volumes of a 3D truth are from the truth's whole slice S2, in the per-volume
measure S2-guided generation minimises (max over phases and axes of the relative Σ S2 error,
:func:`microlad.guidance.terms.s2_report`). Figures: bench/results/guidance.md, fifth status.

Usage: python bench/diag_natural_s2.py MODEL VOLUME N [SIZE]   (N random SIZE³ cubes, default 64)
"""
import sys

import numpy as np

from microlad.bundled import resolve_model
from microlad.guidance import terms as T
from microlad.guidance.stats import image_s2
from microlad.io import read_image
from microlad.model import load_model

model = load_model(resolve_model(sys.argv[1]))
path, n = sys.argv[2], int(sys.argv[3])
size = int(sys.argv[4]) if len(sys.argv) > 4 else 64
vol = read_image(path).labels
curve = image_s2(path, model.grey_values, 32)
rng = np.random.default_rng(0)
errs = []
for _ in range(n):
    z, y, x = (int(rng.integers(0, s - size + 1)) for s in vol.shape)
    errs.append(T.s2_report(vol[z:z + size, y:y + size, x:x + size], curve, tuple(range(curve.shape[0])))["max_error"])
e = 100 * np.asarray(errs)
print(f"{path}: {n} random {size}³ cubes, per-volume S2 error {e.mean():.1f} ± {e.std(ddof=1) / np.sqrt(n):.1f} % "
      f"(range {e.min():.1f}–{e.max():.1f} %)")
