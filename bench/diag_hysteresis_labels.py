"""Hysteresis labelling of a phase's probabilities: does keeping weak paths to strong cores
connect the pore network (issue #11)?

Default labelling thresholds the voxel probabilities at the level that matches the phase
fraction: a throat whose probability dips just below that level is cut, and an isolated
blob just above it is kept. Hysteresis (as in the segmentation of porous-media images) keeps
the voxels above a low level that are connected (6-neighbours) to a voxel above a high level;
the high level is the top ``h`` fraction of the phase's target volume (the cores), the low
level is set so the fraction still equals the target. h = 1 is the default labelling.

For each volume of ``n`` default reconstructions (seeds 1000…; same probabilities for every
h) this measures slice perimeter against the training images, 2D pore clusters and their
area-weighted size, small-r S2 shape, 3D spanning fraction and τ per axis, against the
truth's sub-volumes.

Usage: python bench/diag_hysteresis_labels.py MODEL TRUTH [-n 4] [--size 128] [--phase 0]
       [--cores 1,0.5,0.25] [--name NAME]   (two-phase models)
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NO_PAPER, machine, model_truth_parser, provenance, save, sub_volumes  # noqa: E402

from microlad.bundled import resolve_model
from microlad.descriptors import (percolation, s2_autocorrelation, s2_slices, slice_clusters, slice_perimeter_density,
                                  specific_surface_area)
from microlad.io import read_image
from microlad.model import load_model
from microlad.physics import solve_transport


def hysteresis(q: np.ndarray, fraction: float, cores: float) -> np.ndarray:
    """Boolean phase mask: voxels of ``q`` above a low level, 6-connected to a voxel in the top
    ``cores · fraction`` of ``q``; the low level is bisected so the mask holds ``fraction``."""
    from scipy import ndimage

    flat = np.sort(q.ravel())[::-1]
    n_target = int(round(fraction * q.size))
    if cores >= 1.0:
        return q >= flat[n_target - 1]
    high = flat[max(int(cores * n_target) - 1, 0)]

    def grown(low: float) -> np.ndarray:
        lab, _ = ndimage.label(q >= low)
        keep = np.unique(lab[q >= high])
        return np.isin(lab, keep[keep > 0])

    lo_i, hi_i = n_target - 1, q.size - 1  # index into flat: a lower level (larger index) grows the mask
    while hi_i - lo_i > 1:
        mid = (lo_i + hi_i) // 2
        if grown(flat[mid]).sum() > n_target:
            hi_i = mid
        else:
            lo_i = mid
    return grown(flat[lo_i])


def weighted_cluster_size(mask: np.ndarray) -> float:
    """Area-weighted mean size of the 4-connected clusters of every 4th slice normal to z, y,
    x, pooled (Σa² / Σa over all those clusters; :func:`slice_clusters`' ``weighted_area``)."""
    num = den = 0.0
    for a in range(3):
        sub = np.moveaxis(mask, a, 0)[::4].astype(np.uint8)
        filled = float(sub.sum())
        num += slice_clusters(sub, phase=1, axis=0).weighted_area * filled
        den += filled
    return num / den if den else 0.0


def measure(labels: np.ndarray, phase: int, ref_perimeter: float, ref_s2: np.ndarray, with_tau: bool) -> dict:
    mask = labels == phase
    s2 = np.mean([s2_slices(labels, phase=phase, axis=a, cutoff=8, periodic=False) for a in range(3)], axis=0)
    d = (s2_autocorrelation(s2) - s2_autocorrelation(ref_s2))[1:] * (1 - ref_s2[0])
    out = {
        "perimeter": float(np.mean([slice_perimeter_density(labels, phase=phase, axis=a) for a in range(3)]) / ref_perimeter - 1),
        "clusters": float(np.mean([slice_clusters(labels, phase=phase, axis=a).density for a in range(3)])),
        "weighted_size": weighted_cluster_size(mask),
        "s2_shape": float(d[np.abs(d).argmax()]),
        "sa": float(specific_surface_area(labels, phase=phase)),
        "span": float(np.mean([percolation(labels, phase=phase, axis=a).spanning_fraction for a in range(3)])),
    }
    if with_tau:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for a, name in enumerate("zyx"):
                t = solve_transport(labels, phase=phase, axis=a, method="grid").tortuosity
                out[f"tau_{name}"] = float(t) if np.isfinite(t) else None
    return out


def main() -> None:
    ap = model_truth_parser(__doc__.splitlines()[0])
    ap.add_argument("--cores", default="1,0.5,0.25")
    ap.add_argument("--truth-volumes", type=int, default=8, help="truth sub-volumes measured (τ is slow)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = machine()
    model = load_model(resolve_model(args.model_dir))
    if model.n_phases != 2:
        raise SystemExit("two-phase models only")
    st = model.training_stats
    ref_per = float(st.specific_surface_area[args.phase])
    ref_s2 = np.asarray(st.s2_radial_mean, dtype=float)[args.phase, :9]
    target = float(model.training_stats.fractions()[args.phase])
    s = args.size
    truth = np.asarray(read_image(args.truth).labels)
    subs = sub_volumes(truth, s)[: args.truth_volumes]
    cores = [float(c) for c in args.cores.split(",")]
    rows: dict[str, list] = {f"h={c:g}": [] for c in cores}
    rows["truth"] = [measure(v, args.phase, ref_per, ref_s2, True) for v in subs]
    for i in range(args.n):
        t0 = time.time()
        rec = model.reconstruct((s, s, s), n=1, seed=1000 + i, progress=False, return_probabilities=True)[0]
        q = rec.probabilities[args.phase]
        for c in cores:
            mask = hysteresis(q, target, c)
            labels = np.where(mask, args.phase, 1 - args.phase).astype(np.uint8)
            rows[f"h={c:g}"].append(measure(labels, args.phase, ref_per, ref_s2, True))
        print(f"volume {i}: {time.time() - t0:.0f} s", {k: {m: (None if x is None else round(x, 4)) for m, x in v[-1].items()}
                                                         for k, v in rows.items() if k != "truth"}, flush=True)

    def ms(vals):
        v = np.array([x for x in vals if x is not None], dtype=float)
        if v.size == 0:
            return "–"
        se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0
        miss = len(vals) - v.size
        return f"{v.mean():.4g} ± {se:.2g}" + (f" ({miss} not spanning)" if miss else "")

    keys = list(rows["truth"][0])
    meta = {"machine": machine(), "model": args.model_dir, "truth": str(args.truth), "n": args.n, "size": s, "phase": args.phase,
            "cores": cores, "target_fraction": target, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    lines = [f"## Hysteresis labelling: {args.name} (`bench/diag_hysteresis_labels.py`)", "",
             provenance(start=start, end=meta["machine"], paper=f"{NO_PAPER} (the paper measures no connectivity)"), "",
             f"Model `{args.model_dir}`, {args.n} default reconstructions of {s}³ (seeds 1000…), phase {args.phase} labelled from "
             f"the same final probabilities with cores h (h = 1: the default threshold) at the target fraction {target:.4f}; "
             f"truth: {len(subs)} of the {s}³ sub-volumes of `{args.truth.name}`. Mean ± SE. Perimeter: slice perimeter relative "
             "to the training images'; clusters: 2D clusters per px² (4-connected); weighted size: area-weighted mean 2D "
             "cluster size (px²); S2 shape: largest |Δρ(r)|·(1 − φ) for r ≤ 8 against the training images; SA: 3D surface "
             "area (1/voxel); spanning: mean over axes; τ: grid solver.", "",
             "| labelling | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, vals in rows.items():
        lines.append(f"| {name} | " + " | ".join(ms([v[k] for v in vals]) for k in keys) + " |")
    save(f"hysteresis_{args.name}", {"meta": meta, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
