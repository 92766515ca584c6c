"""Recompute a model directory's stored training statistics on tiles (issue #11).

Usage: python scripts/restat_model.py MODEL_DIR IMAGE [IMAGE ...] [--key KEY]

Models trained before 2026-12-06 store VF / S2 / slice-perimeter statistics measured on 256
random patches, whose offsets over-weight image centres (on the 256² carbonate image the
stored perimeter was 9 % and the pore S2(0) 10 % above the image's own). This rewrites
only those entries of ``config.json`` (``patch_statistics`` on the non-overlapping tiles
of the same training inputs, as ``microlad train`` now does); the weights, the latent
normalisation and the VAE report are untouched. The file is replaced atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from microlad.data import PatchSampler
from microlad.io import read_image
from microlad.training._state import derive_seed
from microlad.training._stats import patch_statistics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("images", nargs="+")
    ap.add_argument("--key", default=None, help="array name inside .npz inputs")
    args = ap.parse_args()
    path = args.model_dir / "config.json"
    doc = json.loads(path.read_text())
    stats = doc["training_stats"]
    run = (doc.get("config") or {}).get("training") or {}
    patch = int(stats.get("patch") or doc["config"]["patch_size"])
    max_n = int((run.get("options") or {}).get("stats_patches", 256))
    seed = int(run.get("seed", 0))
    labels = [read_image(p, key=args.key).labels for p in args.images]
    sampler = PatchSampler(labels, patch=patch, augment=False)
    tiles = sampler.tile_labels(max_n, torch.Generator().manual_seed(derive_seed(seed, "tiles")))
    new = patch_statistics(tiles, int(stats["n_phases"]))
    before = {k: stats.get(k) for k in ("n_patches", "specific_surface_area")}
    stats.update(new)
    stats["sampling"] = "tiles"
    doc["training_stats"] = stats
    fd, tmp = tempfile.mkstemp(dir=args.model_dir, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, path)
    print(f"{path}: {len(tiles)} tiles of {patch}²; L_A {before['specific_surface_area']} -> {new['specific_surface_area']}")


if __name__ == "__main__":
    main()
