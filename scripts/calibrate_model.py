"""Calibrate an existing model directory's L-MPDD coupling window (issue #11).

Usage: python scripts/calibrate_model.py MODEL_DIR [--threads N]

Models trained before 2026-12-06 evening store no ``config.reconstruct`` and couple every
L-MPDD step. This runs :func:`microlad.reconstruct.calibration.calibrate_coupling_stop`
(the same call ``microlad train`` now makes at the end of training; seed = the training
seed) and writes only ``config.reconstruct`` into ``config.json``; the weights and the
training statistics are untouched. The file is replaced atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from microlad.model import load_model
from microlad.reconstruct.calibration import calibrate_coupling_stop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = args.model_dir / "config.json"
    doc = json.loads(path.read_text())
    seed = int(((doc.get("config") or {}).get("training") or {}).get("seed", 0))
    cal = calibrate_coupling_stop(load_model(args.model_dir), seed=seed)
    if cal is None:
        raise SystemExit(f"{args.model_dir}: no stored S2 statistics to calibrate against")
    doc.setdefault("config", {})["reconstruct"] = cal.to_dict()
    fd, tmp = tempfile.mkstemp(dir=args.model_dir, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, path)
    scores = ", ".join(f"{k:g}: {100 * v:.2f} %" for k, v in cal.scores.items())
    print(f"{path}: coupling_stop {cal.coupling_stop:g} (S2 error per stop {scores}; {cal.seconds:.0f} s)")


if __name__ == "__main__":
    main()
