"""Which 2D slice statistics tell a rock's connected pores from a reconstruction's (issue #11)?

Reconstructions match the rock's slice S2, perimeter and 2D cluster count, yet their pore
tortuosity is 3–4× the rock's. This measures, on the slices of both, statistics that carry
connectivity information beyond those: the area-weighted mean 2D cluster size, the largest
cluster's share, the Euler characteristic density, and the lineal-path function L(r) (the
probability that a segment of length r lies wholly in the phase). A statistic that differs
is a 2D-measurable target a connectivity lever could use (training data only); one that
matches says 2D data do not see the difference.

The same 2D statistics of samples of the 2D prior at the slice size say whether a
deficit is already in the 2D model or made by the 3D assembly.

Usage: python bench/diag_slice_connectivity.py MODEL TRUTH [-n 4] [--size 128] [--phase 0]
       [--every 4] [--name NAME]

TRUTH is a 3D label volume (.npz/.npy/.tif); its non-overlapping ``size``³ sub-volumes are
measured like the ``n`` default reconstructions (seeds 1000…). Slices normal to z, y, x,
every ``every``-th; 4-connected clusters (as :func:`microlad.descriptors.slice_clusters`).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NO_PAPER, machine, model_truth_parser, provenance, save, sub_volumes  # noqa: E402

from microlad.bundled import resolve_model
from microlad.descriptors import percolation, slice_perimeter_density
from microlad.io import read_image
from microlad.model import load_model

LINEAL_R = (2, 4, 8, 16)
VARIANTS = {"default": {}, "unsmoothed": {"smooth": False}, "norefine": {"refine": 0}, "plain": {"slice_coupling": False}}
"""Reconstruction variants (keywords of :func:`microlad.reconstruct.reconstruct`)."""


def slice_stats(mask2d: np.ndarray) -> dict:
    """Connectivity statistics of one 2D boolean slice."""
    from scipy import ndimage
    from skimage.measure import euler_number

    lab, n = ndimage.label(mask2d)
    areas = np.bincount(lab.ravel())[1:].astype(float)
    total = areas.sum()
    out = {
        "clusters": n / mask2d.size,
        "weighted_size": float((areas**2).sum() / total) if total else 0.0,
        "largest_share": float(areas.max() / total) if total else 0.0,
        "euler": euler_number(mask2d, connectivity=1) / mask2d.size,
    }
    for r in LINEAL_R:  # segment of r + 1 pixels wholly inside, along both in-plane axes
        run = [np.logical_and.reduce([np.roll(mask2d, -k, axis=a)[: mask2d.shape[0] - r if a == 0 else None,
                                                                   : mask2d.shape[1] - r if a == 1 else None]
                                      for k in range(r + 1)]).mean() for a in (0, 1)]
        out[f"lineal_{r}"] = float(np.mean(run))
    return out


def prior_stats(labels: np.ndarray, phase: int) -> dict:
    """The 2D statistics of (N, H, W) samples of the 2D prior (no 3D entries)."""
    rows = [slice_stats(lab == phase) for lab in labels]
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["fraction"] = float((labels == phase).mean())
    out["perimeter"] = float(slice_perimeter_density(labels, phase=phase, axis=0))
    return out


def volume_stats(labels: np.ndarray, phase: int, every: int) -> dict:
    mask = labels == phase
    rows = [slice_stats(np.moveaxis(mask, a, 0)[i]) for a in range(3) for i in range(0, mask.shape[a], every)]
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["fraction"] = float(mask.mean())
    out["perimeter"] = float(np.mean([slice_perimeter_density(labels, phase=phase, axis=a) for a in range(3)]))
    out["spanning"] = float(np.mean([percolation(labels, phase=phase, axis=a).spanning_fraction for a in range(3)]))
    return out


def main() -> None:
    ap = model_truth_parser(__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--variants", default="default", help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = machine()
    model = load_model(resolve_model(args.model_dir))
    truth = np.asarray(read_image(args.truth).labels)
    s = args.size
    subs = sub_volumes(truth, s)
    t0 = time.time()
    rock = [volume_stats(v, args.phase, args.every) for v in subs]
    t_rock = time.time() - t0
    variants = args.variants.split(",")
    recs: dict[str, list] = {v: [] for v in variants}
    for v in variants:
        for i in range(args.n):
            t1 = time.time()
            lab = np.asarray(model.reconstruct((s, s, s), n=1, seed=1000 + i, progress=False, **VARIANTS[v])[0].labels)
            recs[v].append(volume_stats(lab, args.phase, args.every))
            print(f"{v} volume {i}: {time.time() - t1:.0f} s", {k: round(x, 4) for k, x in recs[v][-1].items()}, flush=True)
    # the 2D prior alone at the same slice size (sample_2d's default sampler): is a deficit
    # already in the 2D model, or does the 3D assembly make it?
    # (at the training patch size: larger 2D samples drift, e.g. Berea's pore fraction −13 % at 128²)
    ps = model.patch_size or s
    prior = [prior_stats(np.asarray(model.sample_2d(32, size=ps, seed=2000 + i)), args.phase) for i in range(args.n)]
    tiles = np.stack([t for v in subs for a in range(3) for sl in np.moveaxis(v, a, 0)[:: args.every]
                      for t in (sl[y:y + ps, x:x + ps] for y in range(0, s - ps + 1, ps) for x in range(0, s - ps + 1, ps))])
    rock_tiles = prior_stats(tiles, args.phase)
    keys = list(rock[0])

    def ms(rows, k):
        v = np.array([r[k] for r in rows])
        return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0, float(v.std(ddof=1)) if len(v) > 1 else 0.0

    table = {k: {"rock": ms(rock, k), **{v: ms(recs[v], k) for v in variants},
                 **({"prior_2d": ms(prior, k)} if k in prior[0] else {})} for k in keys}
    meta = {"rock_tiles": rock_tiles, "machine": machine(), "model": args.model_dir, "truth": str(args.truth), "n": args.n, "size": s,
            "phase": args.phase, "every": args.every, "seeds": [1000 + i for i in range(args.n)], "rock_subvolumes": len(subs),
            "seconds_rock": t_rock, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    names = {"fraction": "phase fraction", "perimeter": "slice perimeter L_A [1/px]", "clusters": "2D clusters per px²",
             "weighted_size": "area-weighted mean 2D cluster size [px²]", "largest_share": "largest 2D cluster's share of the phase",
             "euler": "2D Euler characteristic per px² (clusters − holes)", "spanning": "3D spanning fraction (mean over axes)",
             **{f"lineal_{r}": f"lineal path L({r})" for r in LINEAL_R}}
    lines = [f"## Slice connectivity: {args.name} (`bench/diag_slice_connectivity.py`)", "",
             provenance(start=start, end=meta["machine"], paper=f"{NO_PAPER} (the paper measures no connectivity)"), "",
             f"Model `{args.model_dir}`, {args.n} reconstructions of {s}³ per variant ({', '.join(variants)}) (seeds {meta['seeds'][0]}–{meta['seeds'][-1]}) "
             f"against the {len(subs)} non-overlapping {s}³ sub-volumes of `{args.truth.name}`; phase {args.phase}; slices normal "
             f"to z, y, x, every {args.every}th, 4-connected; mean ± standard error over volumes (rock: ± its spread, std, in "
             f"brackets); relative: to the rock; z = (reconstruction − rock) / rock std. 2D prior: {args.n} × 32 samples of {ps}² (the "
             "training patch size) from `sample_2d` (the model's sampler, seeds 2000…), the same 2D statistics, relative to the "
             f"rock's slices cut into {ps}² tiles (cluster counts and sizes depend on the slice size).", "",
             "| statistic | rock | " + " | ".join(f"{v}: value, relative, z" for v in variants) + " | 2D prior: value, relative |",
             "|---|---|" + "---|" * len(variants) + "---|"]
    for k in keys:
        rm, rse, rsd = table[k]["rock"]
        cells = []
        for v in [*variants, "prior_2d"]:
            if v not in table[k]:
                cells.append("–")
                continue
            gm, gse, _ = table[k][v]
            ref = rock_tiles[k] if v == "prior_2d" else rm
            rel = f"{100 * (gm / ref - 1):+.0f} %" if ref else "–"
            z = f", z {(gm - rm) / rsd:+.1f}" if rsd and v != "prior_2d" else ""
            cells.append(f"{gm:.4g} ± {gse:.2g}, {rel}{z}")
        lines.append(f"| {names[k]} | {rm:.4g} ± {rse:.2g} ({rsd:.2g}) | " + " | ".join(cells) + " |")
    save(f"slice_connectivity_{args.name}", {"meta": meta, "rows": table}, "\n".join(lines))


if __name__ == "__main__":
    main()
