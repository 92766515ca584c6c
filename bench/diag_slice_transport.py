"""Diagnostic: is a reconstruction's poor 3D connectivity visible in its 2D slices?

Compares the in-plane 2D D_eff (and 2D spanning) of a phase on square slices of
reconstructions with the same quantity on same-size crops of the training images (2D
information only), next to the 3D tortuosity per axis. If the slices conduct less than the
training images, a 2D-only target (``deff2d`` guidance toward the training images'
value) is a lever on 3D connectivity that uses no 3D truth.

Usage: python bench/diag_slice_transport.py MODEL IMAGE --phase 0 --size 128 -n 3
IMAGE is a 2D image or a 3D volume (then its slices along every axis are the 2D data).
Prints JSON; writes nothing.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def slice_deff(planes: np.ndarray, phase: int) -> np.ndarray:
    """D_eff of ``phase`` along both in-plane axes of each (H, W) plane -> (n, 2)."""
    from microlad.physics import solve_transport

    out = np.zeros((len(planes), 2))
    for i, p in enumerate(planes):
        for j, ax in enumerate((0, 1)):
            if not (p == phase).any():
                continue
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[i, j] = solve_transport(p, phase=phase, axis=ax, rtol=1e-5).effective_diffusivity
    return out


def image_crops(labels: np.ndarray, size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random size x size crops of a 2D image or of a 3D volume's slices (every axis)."""
    crops = []
    for _ in range(n):
        if labels.ndim == 2:
            plane = labels
        else:
            ax = int(rng.integers(3))
            plane = np.take(labels, int(rng.integers(labels.shape[ax])), axis=ax)
        y = int(rng.integers(plane.shape[0] - size + 1))
        x = int(rng.integers(plane.shape[1] - size + 1))
        crops.append(plane[y:y + size, x:x + size])
    return np.stack(crops)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("image")
    ap.add_argument("--phase", type=int, default=0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--crops", type=int, default=48)
    ap.add_argument("--every", type=int, default=16, help="slice stride in the volumes")
    args = ap.parse_args()

    from microlad.bundled import resolve_model
    from microlad.io import read_image
    from microlad.model import load_model
    from microlad.physics import solve_transport

    img = read_image(args.image).labels
    rng = np.random.default_rng(0)
    ref = slice_deff(image_crops(img, args.size, args.crops, rng), args.phase)
    out = {"image_2d_deff": [float(ref.mean()), float(ref.std() / np.sqrt(ref.size))],
           "image_2d_spanning": float((ref > 0).mean())}
    model = load_model(resolve_model(args.model))
    s = args.size
    vols = []
    t0 = time.perf_counter()
    recs = model.reconstruct((s, s, s), n=args.n, seed=2000, progress=False)
    for r in recs:
        v = np.asarray(r.labels if hasattr(r, "labels") else r)
        per_axis = {}
        for ax, name in enumerate("zyx"):
            planes = np.moveaxis(v, ax, 0)[args.every // 2::args.every]
            d = slice_deff(planes, args.phase)
            per_axis[name] = float(d.mean())
        taus = []
        for ax in range(3):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                taus.append(float(solve_transport(v, phase=args.phase, axis=ax, rtol=1e-5).tortuosity))
        vols.append({"slice_2d_deff_by_normal": per_axis, "tau_zyx": taus, "vf": float((v == args.phase).mean())})
    out["volumes"] = vols
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
