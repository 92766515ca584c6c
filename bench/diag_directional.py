"""Do the statistics that 2D sections can see tell a rock's pore connectivity apart (issue #11)?

Sections of an isotropic medium fix every two-point and line statistic in every direction:
S2(r) and the lineal path L(r) (the probability that a straight segment of length r lies
wholly in the phase) depend only on |r|, and a slice contains lines of every in-plane
direction. L-MPDD constrains only the axis-aligned slices, so a lever would show as a 3D
volume whose statistics along face and body diagonals fall off the axes' curve. The 3D
Euler characteristic (the number of loops of the pore network, what makes throats) is
*not* a section statistic: no stereological relation gives it from sections (it takes
pairs of adjacent sections, the disector).

This measures, on sets of volumes of one material: the phase fraction, the normalised S2
ρ(r) = (S2 − φ²)/(φ − φ²) and L(r) along the axes (k = 7, 14 voxels), face diagonals
(k = 5, 10: 7.1, 14.1) and body diagonals (k = 4, 8: 6.9, 13.9), the 3D Euler
characteristic per voxel of the phase (skimage, 6-connectivity), the spanning fraction and
τ per axis (grid solver). Sets: the rock's non-overlapping sub-volumes and directories of
label volumes (``microlad reconstruct`` / ``microlad generate`` outputs). A set that
matches the rock's τ but not its line statistics (or the reverse) shows that the section
statistics do not decide τ.

Usage: python bench/diag_directional.py TRUTH --phase 0 --size 128 --set NAME=DIR[,DIR] [--set ...]
       [--name NAME]
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NO_PAPER, machine, provenance, save, sub_volumes  # noqa: E402

from microlad.descriptors import percolation
from microlad.io import read_image

DIRECTIONS = {
    "axis": ([(1, 0, 0), (0, 1, 0), (0, 0, 1)], (7, 14)),
    "face": ([(1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1), (0, 1, 1), (0, 1, -1)], (5, 10)),
    "body": ([(1, 1, 1), (1, 1, -1), (1, -1, 1), (-1, 1, 1)], (4, 8)),
}
"""Direction families: unit steps and the lags k (in steps) read out, ≈ 7 and 14 voxels."""


def _pair(shape, d, k):
    """Index slices of x and x + k·d, both inside the volume (non-periodic)."""
    a, b = [], []
    for di, n in zip(d, shape):
        s = di * k
        a.append(slice(0, n - s) if s >= 0 else slice(-s, n))
        b.append(slice(s, n) if s >= 0 else slice(0, n + s))
    return tuple(a), tuple(b)


def line_stats(mask: np.ndarray) -> dict:
    """S2 and L at the read-out lags of every direction family of a boolean (Z, Y, X) mask."""
    phi = float(mask.mean())
    out = {"fraction": phi}
    for fam, (dirs, lags) in DIRECTIONS.items():
        kmax = max(lags)
        s2 = np.zeros(kmax + 1)
        lp = np.zeros(kmax + 1)
        for d in dirs:
            run = mask.copy()  # run[x]: x, x + d, ..., x + k d all in the phase
            for k in range(1, kmax + 1):
                a, b = _pair(mask.shape, d, k)
                s2[k] += (mask[a] & mask[b]).mean()
                nxt = np.zeros_like(run)
                nxt[a] = run[a] & mask[b]
                run = nxt
                lp[k] += run[a].mean()
        s2 /= len(dirs)
        lp /= len(dirs)
        for k in lags:
            out[f"rho_{fam}_{k}"] = (s2[k] - phi**2) / max(phi - phi**2, 1e-12)
            out[f"L_{fam}_{k}"] = lp[k]
    return out


def volume_stats(labels: np.ndarray, phase: int) -> dict:
    from skimage.measure import euler_number

    from microlad.physics import solve_transport

    mask = labels == phase
    out = line_stats(mask)
    out["euler"] = euler_number(mask, connectivity=1) / mask.size
    out["spanning"] = float(np.mean([percolation(labels, phase=phase, axis=a).spanning_fraction for a in range(3)]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a, name in enumerate("zyx"):
            out[f"tau_{name}"] = float(solve_transport(labels, phase=phase, axis=a, method="grid").tortuosity)
    return out


ROWS = [("fraction", "phase fraction")] + [
    (f"{s}_{fam}_{k}", f"{'ρ' if s == 'rho' else 'L'} {fam} {k * {'axis': 1, 'face': 2**0.5, 'body': 3**0.5}[fam]:.1f} vox")
    for s in ("rho", "L") for fam, (_, lags) in DIRECTIONS.items() for k in lags
] + [("euler", "3D Euler characteristic per voxel"), ("spanning", "spanning fraction (mean over axes)"),
     ("tau_z", "τ z"), ("tau_y", "τ y"), ("tau_x", "τ x")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("truth")
    ap.add_argument("--phase", type=int, default=0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--set", action="append", default=[], help="NAME=DIR[,DIR...] of label volumes (.tif/.npy)")
    ap.add_argument("--name", default="berea")
    args = ap.parse_args()
    t0 = time.time()
    start = machine()
    truth = np.asarray(read_image(args.truth).labels)
    sets: dict[str, list[dict]] = {"rock": []}
    for sub in sub_volumes(truth, args.size):
        sets["rock"].append(volume_stats(sub, args.phase))
    print(f"rock: {len(sets['rock'])} sub-volumes, {time.time() - t0:.0f} s", flush=True)
    for spec in args.set:
        name, d = spec.split("=", 1)
        files = [f for one in d.split(",") for f in sorted(glob.glob(os.path.join(one, "*.tif")) + glob.glob(os.path.join(one, "*.npy")))]
        sets[name] = []
        for f in files:
            st = volume_stats(np.asarray(read_image(f).labels), args.phase)
            sets[name].append(st)
            print(f"{name} {os.path.basename(f)}: " + ", ".join(f"{k} {v:.4g}" for k, v in st.items() if k.startswith(("tau", "span", "L_body_8", "euler"))), flush=True)
    names = list(sets)
    header = "| statistic | " + " | ".join(f"{n} ({len(sets[n])})" for n in names) + " |"
    lines = [header, "|" + "---|" * (len(names) + 1)]
    rock = {k: np.array([s[k] for s in sets["rock"]]) for k, _ in ROWS}
    for key, label in ROWS:
        cells = []
        for n in names:
            v = np.array([s[key] for s in sets[n]], dtype=float)
            blocked = int((~np.isfinite(v)).sum())  # τ of an axis the phase does not span
            v = v[np.isfinite(v)]
            if not len(v):
                cells.append(f"none spans ({blocked})")
                continue
            m, se = v.mean(), v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
            cell = f"{m:.4g} ± {se:.2g}" + (f" ({blocked} of {blocked + len(v)} do not span)" if blocked else "")
            if n == "rock":
                cell += f" ({v.std(ddof=1):.2g})"
            else:
                finite = rock[key][np.isfinite(rock[key])]
                ref = finite.mean() if len(finite) else 0.0
                cell += f", {100 * (m / ref - 1):+.0f} %" if ref else ""
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    md = (
        f"## Directional statistics and connectivity: {args.name} (`bench/diag_directional.py`)\n\n"
        f"{provenance(start=start, end=machine(), paper=f'{NO_PAPER} (the paper measures no connectivity)')}\n\n"
        f"Phase {args.phase}; rock: the non-overlapping {args.size}³ sub-volumes of `{Path(args.truth).name}`; mean ± "
        "standard error over volumes (rock: its std in brackets); relative: to the rock's mean. ρ: normalised S2 "
        "(S2 − φ²)/(φ − φ²); L: lineal path; at the lag in voxels along the axes, face diagonals and body diagonals "
        "(non-periodic, every direction of the family averaged); Euler: skimage, 6-connected phase; τ: grid solver, mean "
        "over the volumes whose phase spans the axis.\n\n"
        f"{table}\n"
    )
    save(f"directional_{args.name}", {"sets": sets, "machine": machine()}, md)


if __name__ == "__main__":
    main()
