"""One full 1000-step DDPM ancestral volume of the pixel-space baseline: its time and fidelity.

Usage: python bench/bench_pixel_ddpm_full.py PIXEL_DIR IMAGE [--seed 1000] [--name pixel_baseline_ddpm1000]

Supplements ``bench/bench_pixel_baseline.py`` (whose table extrapolates the DDPM-1000 time
from a few steps and cannot afford its quality): this runs the paper's comparison sampler
once, one torch thread, and measures the same S2 and slice perimeter errors. The ratio to
ours uses our time from ``bench/results/pixel_baseline.json`` (a separate run, same machine).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PAPER_SPEED_64, RESULTS, machine, provenance, save  # noqa: E402
from bench_pixel_baseline import _row, _x, perimeter_fidelity, timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pixel_dir")
    ap.add_argument("image")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--name", default="pixel_baseline_ddpm1000")
    ap.add_argument("--steps", type=int, default=None, help="ancestral steps (default: all T; fewer only for a smoke test)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from microlad.evaluate import s2_fidelity
    from microlad.io import read_image
    from pixel_baseline import load_pixel, sample_pixel_volume

    started = datetime.datetime.now(datetime.timezone.utc)
    info = machine()
    ref = read_image(args.image).labels
    pix = load_pixel(args.pixel_dir)
    P, T = pix.n_phases, args.steps or pix.schedule.num_train_timesteps
    vol, wall, cpu = timed(lambda: sample_pixel_volume(pix, (args.size,) * 3, steps=T, sampler="ancestral", seed=args.seed, progress=True))
    vol = vol.numpy()
    fid = s2_fidelity([vol], [ref], n_phases=P)
    per = perimeter_fidelity([vol], ref, P)
    row = _row(f"pixel baseline, DDPM ancestral {T}", [(wall, cpu)], fid, per, [[float((vol == p).mean()) for p in range(P)]])
    main_run = RESULTS / "pixel_baseline.json"
    ours = json.loads(main_run.read_text())["rows"]["ours"] if main_run.is_file() else None
    finished = datetime.datetime.now(datetime.timezone.utc)
    info_end = machine()
    md = [
        f"### Pixel-space baseline, full DDPM-1000 volume (`bench/bench_pixel_ddpm_full.py`)",
        "",
        provenance(start=info, end=info_end, paper=f"{PAPER_SPEED_64}; SOFC anode max S2 error: pixel-space MPDD 12.44 %, "
                   "L-MPDD 10.81 % (Table 1); ours and this run's below"),
        "",
        f"One {args.size}³ volume (seed {args.seed}) of the same baseline with DDPM ancestral sampling over all {T} timesteps.",
        "",
        f"**{wall:.0f} s wall ({wall / 60:.1f} min), {cpu:.0f} CPU s**; max S2 error {100 * fid.max_error:.2f} % (n = 1, no "
        f"standard error), max slice perimeter error {100 * per['max_error']:.1f} %; VF "
        + ", ".join(f"{v:.3f}" for v in row["vf"][0]) + " (per phase); signed perimeter error per phase "
        + ", ".join(f"{100 * x:+.1f} %" for x in np.mean(per["signed"], axis=1)) + ".",
    ]
    if ours is not None:
        md[-1] += (f" Against ours from the main run ({ours['wall_s_mean']:.1f} s wall, {ours['cpu_s_mean']:.1f} CPU s per "
                   f"volume): **{_x(wall / ours['wall_s_mean'])} (wall), {_x(cpu / ours['cpu_s_mean'])} (CPU)**.")
    save(args.name, {"machine": info, "machine_end": info_end, "args": vars(args), "row": row,
                     "ours_from": str(main_run) if ours else None}, "\n".join(md))


if __name__ == "__main__":
    main()
