"""Wall time of `microlad evaluate` on ten 64³ volumes with transport (issue #12: ≤ 60 s).

Usage: python bench/bench_evaluate.py VOLUME_DIR [--model sofc-anode] [--reference IMAGE] [-n 10]

Runs the console command in a subprocess (start-up, model load, reference statistics,
metrics, transport, report: everything a user waits for) with OMP_NUM_THREADS=1, once
per reference kind given, and records the machine's load average beside the time.
Make the volumes first, e.g. `microlad reconstruct sofc-anode --shape 64 64 64 -n 10 --out DIR`.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NO_PAPER, machine, provenance, save  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("volume_dir", type=Path)
    ap.add_argument("--model", default="sofc-anode")
    ap.add_argument("--reference", type=Path, default=None)
    ap.add_argument("-n", type=int, default=10)
    args = ap.parse_args()
    vols = sorted(args.volume_dir.glob("volume_*.tif"))[: args.n]
    if len(vols) < args.n:
        sys.exit(f"need {args.n} volume_*.tif files in {args.volume_dir}, found {len(vols)}")
    runs = [("model", ["--model", args.model])]
    if args.reference is not None:
        runs.append(("image + model", ["--reference", str(args.reference), "--model", args.model]))
    exe = Path(sys.executable).with_name("microlad")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows, data = [], {"machine": machine(), "n_volumes": len(vols), "runs": []}
    for name, extra in runs:
        with tempfile.TemporaryDirectory() as out:
            load = os.getloadavg()[0]
            cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            res = subprocess.run([str(exe), "evaluate", *map(str, vols), *extra, "--out", out], env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            if res.returncode:
                sys.exit(res.stderr)
            doc = json.loads((Path(out) / "metrics.json").read_text())
        timings = doc["timings_s"]
        data["runs"].append({"reference": name, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load_before": round(load, 2), "timings_s": timings,
                             "verdict": doc["verdict"], "s2_error": doc["s2_error"]["overall"]})
        rows.append(f"| {name} | {len(vols)} × {'x'.join(map(str, doc['shape']))} | {wall:.1f} s | {cpu:.1f} s | {timings.get('volumes', 0):.1f} s | "
                    f"{timings.get('reference', 0):.1f} s | {load:.2f} | {doc['verdict']} | {100 * doc['s2_error']['overall']:.2f} % |")
    info = data["machine"]
    data["machine_end"] = end = machine()
    md = "\n".join([
        "## `microlad evaluate` (`bench/bench_evaluate.py`)",
        "",
        provenance(start=info, end=end, threads="the CLI on 1 thread (OMP_NUM_THREADS=1)",
                   paper=f"{NO_PAPER} (the paper has no evaluation command; its metric is the S2 error column)"),
        "",
        f"`microlad evaluate` with transport on {len(vols)} volumes from `{args.volume_dir}`, OMP_NUM_THREADS=1, "
        f"{info['cpu_count']} CPUs ({info['processor']}); wall time of the whole command (start-up, model load, reference, "
        "metrics with tortuosity for every phase and axis, VAE round trip, report). Goal: ≤ 60 s. "
        "The CPU time is what the command costs on one otherwise idle core (it runs in one process when the "
        "other CPU is busy); the wall time depends on the load the other jobs put on the machine.",
        "",
        "| reference | volumes | wall | CPU time (user + sys) | metrics (wall) | reference stats | load avg (1 min) before | verdict | S2 error |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    save("evaluate", data, md)


if __name__ == "__main__":
    main()
