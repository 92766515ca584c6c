"""One-off checks (bench/results/guidance.md, third and fourth status): S2-guided volumes (s2=IMAGE) in two
modes, same seeds: slice perimeter, small-r S2, SA, spanning, tau of one phase.

Usage: python bench/diag_guidance_offsets.py MODEL IMAGE PHASE N [COMPARE]
COMPARE: "offsets" (default; without and with the in-cell plane offsets), "calibrate"
(3 calibrations per run, calibrate_every 20, against the default for an S2 target) or
"checkpoint" (checkpoints only at the calibrations, checkpoint_every 20 — the default until
2026-12-07 — against today's default checkpoints every steps // 12).
"""
import math, sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)
from bench_fidelity_levers import measure
from bench_fine_scale import measure_volume, reference, errors
from microlad.bundled import resolve_model
from microlad.model import load_model
from microlad.io import read_image
name, img, phase, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
compare = sys.argv[5] if len(sys.argv) > 5 else "offsets"
MODES = {"offsets": ("plane_offsets", (False, True)), "calibrate": ("calibrate_every", (20, None)),
         "checkpoint": ("checkpoint_every", (20, None))}[compare]
m = load_model(resolve_model(name)); P = m.vae.config.n_phases
ref_la = np.asarray(m.training_stats.specific_surface_area, dtype=float)
image = np.asarray(read_image(img).labels)
ref = reference(image, P)
out = {}
for mode in MODES[1]:
    rows = []
    for seed in range(2000, 2000 + n):
        r = m.generate((64,) * 3, {"s2": img}, seed=seed, progress=False, **{MODES[0]: mode})[0]
        e = errors(measure_volume(r.labels, P), ref)
        mm = measure(r.labels, phase, ref_la, True)
        rows.append({"perimeter": e["perimeter"], "s2_small_r": e["s2_small_r"], "ssa": mm["ssa"][phase], "span": float(np.mean(mm["span"])),
                     "tau": mm.get("tau"), "s2_err": r.terms[0].achieved})
        print(mode, seed, {k: np.round(v, 4).tolist() for k, v in rows[-1].items()}, flush=True)
    out[mode] = rows
def ms(a): a = np.asarray(a, float); a = a[np.isfinite(a)] if a.ndim == 1 else a; return a.mean(0), a.std(0, ddof=1) / math.sqrt(len(a))
for mode, rows in out.items():
    print(f"{MODES[0]}={mode} n={len(rows)}")
    for k in ("perimeter", "s2_small_r", "ssa", "span", "s2_err"):
        mu, se = ms([r[k] for r in rows]); print(f"  {k}: {np.round(mu*(100 if k in ('perimeter','s2_small_r','s2_err') else 1),3)} ± {np.round(se*(100 if k in ('perimeter','s2_small_r','s2_err') else 1),3)}")
    t = np.array([r["tau"] for r in rows], float); print("  tau z/y/x:", np.round(np.nanmean(t, 0), 2), "±", np.round(np.nanstd(t, 0, ddof=1) / math.sqrt(len(t)), 2), "finite", np.isfinite(t).sum(0))
