"""Per-checkpoint record of S2-guided runs (bench/results/guidance.md, fifth status): at every
calibration, the measured S2 error and what a simulation sees that the S2 score does not:
slice perimeter per phase (vs the model's training images) and each phase's spanning per axis.
Used to compare checkpoint-choice rules offline on the same runs.

Usage: python bench/diag_checkpoint_guard.py MODEL IMAGE N OUT.json [--every K] [--checkpoint-every K] [--seed0 S]
(--every: calibrate every K steps; --checkpoint-every: a measured checkpoint every K steps.)
"""
import argparse, json, sys, time
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
from microlad.bundled import resolve_model
from microlad.descriptors import percolation, slice_perimeter_density
from microlad.guidance import loop as L
from microlad.model import load_model

ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("image"); ap.add_argument("n", type=int); ap.add_argument("out")
ap.add_argument("--every", type=int, default=None); ap.add_argument("--checkpoint-every", type=int, default=None); ap.add_argument("--seed0", type=int, default=2000)
ap.add_argument("--size", type=int, default=64)
a = ap.parse_args()
m = load_model(resolve_model(a.model)); P = m.vae.config.n_phases
ref_la = np.asarray(m.training_stats.specific_surface_area, dtype=float)
orig = L._Run.calibrate
records = []


def calibrate(self, z, values, update=True):
    measured, finished, spans = orig(self, z, values, update)
    labels = finished[1]
    per = [[slice_perimeter_density(labels, phase=p, axis=ax) for ax in range(3)] for p in range(P)]
    perc = [[percolation(labels, phase=p, axis=ax) for ax in range(3)] for p in range(P)]
    records[-1]["cal"].append({"s2": float(measured["s2"]), "update": update, "spans": sorted(spans),
                               "vf": [float((labels == p).mean()) for p in range(P)],
                               "perimeter_rel": (np.asarray(per) / ref_la[:, None] - 1).tolist(),
                               "percolates": [[bool(x.percolates) for x in r] for r in perc],
                               "span": [[float(x.spanning_fraction) for x in r] for r in perc]})
    return measured, finished, spans


L._Run.calibrate = calibrate
for seed in range(a.seed0, a.seed0 + a.n):
    records.append({"seed": seed, "cal": []})
    t0 = time.perf_counter()
    r = m.generate((a.size,) * 3, {"s2": a.image}, seed=seed, progress=False, calibrate_every=a.every,
                   checkpoint_every=a.checkpoint_every)[0]
    records[-1].update(selected=r.selected_step, achieved=r.terms[0].achieved, seconds=time.perf_counter() - t0)
    print(seed, len(records[-1]["cal"]), "selected", r.selected_step, "s2", round(100 * r.terms[0].achieved, 2),
          "s", round(records[-1]["seconds"], 1), flush=True)
    Path(a.out).write_text(json.dumps({"model": a.model, "image": a.image, "every": a.every, "checkpoint_every": a.checkpoint_every, "size": a.size,
                                       "ref_perimeter": ref_la.tolist(), "runs": records}))
