"""Calibrate an existing model directory's sampling settings (issue #11).

Usage: python scripts/calibrate_model.py MODEL_DIR [--what coupling|prior|both|moments|all] [--threads N]

Models trained before 2026-12-06 evening store no ``config.reconstruct`` and couple every
L-MPDD step; models trained before 2026-12-07 midday store no ``config.prior_sampler`` and
sample the 2D prior with DDIM 50; models trained before 2026-12-07 evening store no
``config.latent_moments`` and compute the 2D prior's clean-estimate moments for L-MPDD's
latent-mean matching at every load (a few seconds). This runs
:func:`microlad.reconstruct.calibration.calibrate_coupling_stop` and/or
:func:`~microlad.reconstruct.calibration.calibrate_prior_sampler` (``both``) and/or
:func:`~microlad.reconstruct.api.store_lmpdd_moments` (``moments``; ``all``: the three), the
calls ``microlad train`` makes at the end of training (seed = the training seed), and writes
only those entries into ``config.json``; the weights and the training statistics are
untouched. The file is replaced atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from microlad.model import load_model
from microlad.reconstruct.api import store_lmpdd_moments
from microlad.reconstruct.calibration import calibrate_coupling_stop, calibrate_prior_sampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--what", choices=("coupling", "prior", "both", "moments", "all"), default="all")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = args.model_dir / "config.json"
    doc = json.loads(path.read_text())
    seed = int(((doc.get("config") or {}).get("training") or {}).get("seed", 0))
    model = load_model(args.model_dir)
    lines = []
    if args.what in ("moments", "all"):
        doc.setdefault("config", {})["latent_moments"] = rec = store_lmpdd_moments(model)
        lines.append(f"latent moments for L-MPDD ({rec['sampler']} {rec['steps']} steps, {rec['n']} 2D samples)")
    if args.what in ("coupling", "both", "all"):
        cal = calibrate_coupling_stop(model, seed=seed)
        if cal is None:
            raise SystemExit(f"{args.model_dir}: no stored S2 statistics to calibrate against")
        doc.setdefault("config", {})["reconstruct"] = cal.to_dict()
        scores = ", ".join(f"{k:g}: {100 * v:.2f} %" for k, v in cal.scores.items())
        lines.append(f"coupling_stop {cal.coupling_stop:g} (S2 error per stop {scores}; {cal.seconds:.0f} s)")
    if args.what in ("prior", "both", "all"):
        pcal = calibrate_prior_sampler(model, seed=seed)
        if pcal is None:
            raise SystemExit(f"{args.model_dir}: no stored perimeter and S2 statistics to calibrate against")
        doc.setdefault("config", {})["prior_sampler"] = pcal.to_dict()
        scores = ", ".join(f"{k} {v:.2f}" for k, v in pcal.scores.items())
        lines.append(f"2D prior sampler {pcal.sampler} {pcal.steps} (score per candidate {scores}; {pcal.seconds:.0f} s)")
    fd, tmp = tempfile.mkstemp(dir=args.model_dir, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, path)
    print(f"{path}: " + "; ".join(lines))


if __name__ == "__main__":
    main()
