"""Reconstruction speed and memory on this CPU: 64³ and 256³ end to end (model load excluded).

Usage: python bench/bench_reconstruct.py MODEL_DIR [--sizes 64 256] [--steps 50] [--refine 2]

Each size runs in a fresh subprocess so its peak RSS is its own. Goals (issue 5):
64³ ≤ 10 s, 256³ ≤ 3 min with peak RSS ≤ 4 GiB. Also compares cycling one axis per
step (default) with averaging the three orientations' predictions at every step.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from microlad.defaults import RECONSTRUCT_STEPS  # noqa: E402
from _common import PAPER_SPEED_64, PAPER_SPEED_256, machine, peak_rss_mib, provenance, save  # noqa: E402


def one_run(model_dir: str, size: int, steps: int, refine: int, average_axes: bool) -> dict:
    from microlad.model import load_model
    from microlad.reconstruct import reconstruct

    model = load_model(model_dir)
    rss_before = peak_rss_mib()
    t0 = time.perf_counter()
    rec = reconstruct(model, (size, size, size), n=1, seed=0, steps=steps, refine=refine, average_axes=average_axes, progress=False)[0]
    total = time.perf_counter() - t0
    return {"size": size, "steps": steps, "refine": refine, "average_axes": average_axes, "seconds": round(total, 2),
            "timings": {k: round(v, 2) for k, v in rec.timings.items()}, "peak_rss_mib": round(peak_rss_mib(), 1),
            "rss_after_load_mib": round(rss_before, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--steps", type=int, default=RECONSTRUCT_STEPS)
    ap.add_argument("--refine", type=int, default=1)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--average-axes", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one_run(args.model_dir, args.sizes[0], args.steps, args.refine, args.average_axes)))
        return
    start = machine()
    runs = []
    for size in args.sizes:
        # small volumes: cycled vs averaged orientations; large ones: the default K and K = 2
        variants = [(False, args.refine), (True, args.refine)] if size <= 64 else [(False, k) for k in sorted({args.refine, 2})]
        for avg, refine in variants:
            cmd = [sys.executable, __file__, args.model_dir, "--child", "--sizes", str(size), "--steps", str(args.steps), "--refine", str(refine)]
            out = subprocess.run(cmd + (["--average-axes"] if avg else []), check=True, capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            print(runs[-1], flush=True)
    info = machine()
    ours = "; ".join(f"{r['size']}³ {r['seconds']} s" for r in runs if not r["average_axes"] and r["refine"] == args.refine)
    lines = [
        "## Reconstruction speed (`bench/bench_reconstruct.py`)",
        "",
        provenance(start=start, end=info, threads=f"{info['torch_threads']} torch thread(s) in each size's child process",
                   paper=f"{PAPER_SPEED_64}; {PAPER_SPEED_256}; ours on this CPU (cycled, K = {args.refine}): {ours}"),
        "",
        f"Model `{args.model_dir}`; DDIM {args.steps} steps; one volume, model load excluded; "
        f"{info['cpu_count']} CPUs, torch {info['torch']} ({info['torch_threads']} threads), load avg {info['load_average_1min']}.",
        "",
        "| size | orientations per step | refinement K | L-MPDD s | decode s | refine s | smoothing s | total s | peak RSS MiB | goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        goal = "≤ 10 s" if r["size"] <= 64 else "≤ 180 s, ≤ 4096 MiB"
        t = r["timings"]
        lines.append(f"| {r['size']}³ | {'3 (averaged)' if r['average_axes'] else '1 (cycled z→y→x)'} | {r['refine']} | {t['lmpdd']} | {t['decode']} | {t['refine']} | {t.get('smooth', '–')} | {r['seconds']} | {r['peak_rss_mib']} | {goal} |")
    save("reconstruct", {"machine": info, "machine_start": start, "model": args.model_dir, "runs": runs}, "\n".join(lines))


if __name__ == "__main__":
    main()
