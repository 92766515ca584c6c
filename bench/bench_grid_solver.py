"""The matrix-free grid solver against the assembled AMG solver on a Berea crop.

Usage: python bench/bench_grid_solver.py [--size 200]

Solves both phases of the Berea corner crop along z, y, x with `solve_transport` at the
`properties` report's tolerances (rtol 1e-4, flux spread 1e-2), once with
``method="auto"`` (assembled operator + AMG, what the report used before) and once with
``method="grid"`` (what it uses now for 3D volumes from 64³); each solver runs in its own
process, so its peak RSS is its own.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NO_PAPER, SHARED_DATA, machine, provenance, save  # noqa: E402

CHILD = """
import json, sys, time, resource
import numpy as np
from microlad.physics import SetupCache, solve_transport
from microlad.evaluate.properties import TRANSPORT_RTOL, TRANSPORT_FLUX_RTOL
path, size, method = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with np.load(path) as z:
    a = np.ascontiguousarray(z["labels"][:size, :size, :size])
rows = []
for phase in (0, 1):
    cache = SetupCache() if method == "auto" else None
    for axis in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        r = solve_transport(a, phase=phase, axis=axis, rtol=TRANSPORT_RTOL, flux_rtol=TRANSPORT_FLUX_RTOL, method=method, cache=cache)
        rows.append({"phase": phase, "axis": axis, "tau": r.tortuosity, "iterations": r.iterations, "converged": r.converged,
                     "wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2)})
print(json.dumps({"rows": rows, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=200)
    args = ap.parse_args()
    path = SHARED_DATA / "3d" / "berea_400.npz"
    start = machine()
    res = {}
    for method in ("auto", "grid"):
        p = subprocess.run([sys.executable, "-c", CHILD, str(path), str(args.size), method], capture_output=True, text=True, check=True)
        res[method] = json.loads(p.stdout.strip().splitlines()[-1])
    m = machine()
    n = args.size
    lines = [
        f"## Grid solver vs assembled AMG solver (`bench/bench_grid_solver.py`)",
        "",
        provenance(start=start, end=m, threads="solvers in numpy/scipy child processes (no torch)",
                   paper=f"{NO_PAPER} (a comparison of two of our solvers; the paper's solver is a 2D FEM)"),
        "",
        f"Berea {n}³ corner crop, both phases (0 = pore), `solve_transport` at the report's tolerances (rtol 1e-4, "
        f"flux spread 1e-2); each solver in its own process: peak RSS {res['auto']['peak_rss_mib']:.0f} MiB (AMG, "
        f"`method=\"auto\"`) vs {res['grid']['peak_rss_mib']:.0f} MiB (grid). {m['cpu_count']} CPUs shared with other "
        f"jobs (load {m['load_average_1min']}): CPU seconds are the process's own.",
        "",
        "| phase | axis | tau AMG | tau grid | Δtau | iterations AMG / grid | CPU s AMG / grid |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, g in zip(res["auto"]["rows"], res["grid"]["rows"]):
        d = 100 * (g["tau"] / a["tau"] - 1)
        lines.append(f"| {a['phase']} | {'zyx'[a['axis']]} | {a['tau']:.5f} | {g['tau']:.5f} | {d:+.4f} % | "
                     f"{a['iterations']} / {g['iterations']} | {a['cpu_s']:.1f} / {g['cpu_s']:.1f} |")
    save("grid_solver", {"machine": m, "machine_start": start, "size": n, **res}, "\n".join(lines))


if __name__ == "__main__":
    main()
