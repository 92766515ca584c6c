"""`microlad properties` on large volumes: wall time, peak memory, tortuosity vs a reference.

Usage: python bench/bench_properties_large.py [--sizes 400 512] [--reference]

Each size runs the real CLI in a fresh process (`microlad properties FILE --json ...
--no-progress`, default settings) and records its wall time, CPU time and peak RSS
(``RUSAGE_CHILDREN``: the largest child so far, so sizes run in increasing order).
400 is Berea 400³ (`3d/berea_400.npz` in the shared data); 512 is Berea mirrored
(``np.pad(..., mode="symmetric")``) to 512³. ``--reference`` also solves the pore phase
(label 0) of Berea 400³ with the assembled AMG solver that `properties` used before the
grid solver (``method="auto"``, same tolerances; the solid phase needs ~20 GB there and
is not run), in its own process, and compares the tortuosities; without it, the reference
of the previous run (results/properties_large.json) is compared, if there is one.
Goal (issue #15): 400³ in <= 3 min with peak RSS <= 4 GB, tau within 1 % of the old
values; 512³ within the same memory bound.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NO_PAPER, RESULTS, SHARED_DATA, machine, provenance, save  # noqa: E402

REFERENCE = """
import json, sys, time, resource, warnings
import numpy as np
from microlad.physics import SetupCache, solve_transport
from microlad.evaluate.properties import TRANSPORT_RTOL, TRANSPORT_FLUX_RTOL
a = np.load(sys.argv[1])["labels"]
cache, out = SetupCache(), {}
for axis in range(3):
    t0 = time.perf_counter()
    r = solve_transport(a, phase=0, axis=axis, rtol=TRANSPORT_RTOL, flux_rtol=TRANSPORT_FLUX_RTOL, method="auto", cache=cache)
    out["zyx"[axis]] = {"tau": r.tortuosity, "seconds": round(time.perf_counter() - t0, 1), "iterations": r.iterations}
out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def volume_file(size: int, tmp: Path) -> Path:
    src = SHARED_DATA / "3d" / "berea_400.npz"
    if size == 400:
        return src
    with np.load(src) as z:
        a = z["labels"]
    pad = size - a.shape[0]
    big = np.pad(a, ((0, pad),) * 3, mode="symmetric") if pad > 0 else a[:size, :size, :size]
    path = tmp / f"berea_{size}.npy"
    np.save(path, np.ascontiguousarray(big))
    return path


def run_cli(path: Path, tmp: Path) -> dict:
    js = tmp / f"{path.stem}.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "microlad", "properties", str(path), "--json", str(js), "--no-progress", "--overwrite"],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"properties failed on {path}: {p.stderr.strip()}")
    rep = json.loads(js.read_text())
    return {
        "shape": rep["shape"],
        "wall_s": round(wall, 1),
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "peak_rss_mib": round(after.ru_maxrss / 1024, 1),
        "load_1min": round(os.getloadavg()[0], 2),
        "tortuosity": {p: v["tortuosity"] for p, v in rep["phases"].items()},
        "volume_fraction": {p: v["volume_fraction"] for p, v in rep["phases"].items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[400, 512])
    ap.add_argument("--reference", action="store_true")
    args = ap.parse_args()
    start = machine()
    rows, ref, reused = [], None, False
    previous = RESULTS / "properties_large.json"
    if not args.reference and previous.exists():
        ref = json.loads(previous.read_text()).get("reference_pore_400")
        reused = ref is not None
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for size in sorted(args.sizes):
            rows.append({"size": size, **run_cli(volume_file(size, tmp), tmp)})
            print(json.dumps(rows[-1]), flush=True)
        if args.reference:
            p = subprocess.run([sys.executable, "-c", REFERENCE, str(volume_file(400, tmp))], capture_output=True, text=True, check=True)
            ref = json.loads(p.stdout.strip().splitlines()[-1])
    m = machine()
    lines = [
        "## `microlad properties` on large volumes (`bench/bench_properties_large.py`)",
        "",
        provenance(start=start, end=m, threads="the CLI's default threads",
                   paper=f"{NO_PAPER} (the paper measures no properties of volumes this large; its 256³ diffusivity "
                         "control, 156 min on a GPU, is generation, not measurement)"),
        "",
        f"Default settings, the CLI in a fresh process per volume; {m['cpu_count']} CPUs shared with other jobs "
        "(load column: 1-min load average after the run, so wall times include waiting for the CPU; CPU s is the "
        "process's own time). Berea 400³ from the shared data; 512³ is Berea mirrored to 512³. Transport: the "
        "matrix-free grid solver (3D volumes from 64³), one problem at a time on this machine.",
        "",
        "| volume | wall s | CPU s | peak RSS MiB | load 1 min | tau phase 0 (z, y, x) | tau phase 1 (z, y, x) |",
        "|---|---|---|---|---|---|---|",
    ]

    def fmt(t):
        return ", ".join("inf" if v is None else f"{v:.4f}" for v in t.values())

    for r in rows:
        lines.append(f"| {'x'.join(map(str, r['shape']))} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['peak_rss_mib']:.0f} | "
                     f"{r['load_1min']} | {fmt(r['tortuosity']['0'])} | {fmt(r['tortuosity']['1'])} |")
    if ref is not None:
        new = next(r for r in rows if r["size"] == 400)["tortuosity"]["0"]
        diffs = [100 * (new[a] / ref[a]["tau"] - 1) for a in "zyx"]
        lines += [
            "",
            "Reference, Berea 400³ pore phase with the assembled AMG solver `properties` used before (same tolerances, "
            f"own process, peak RSS {ref['peak_rss_mib']:.0f} MiB; the solid phase would need about 20 GB there"
            + ("; measured by an earlier run of this script with --reference" if reused else "") + "): "
            + ", ".join(f"{a} {ref[a]['tau']:.4f} ({ref[a]['seconds']:.0f} s)" for a in "zyx")
            + "; grid solver minus reference: " + ", ".join(f"{d:+.3f} %" for d in diffs) + ".",
        ]
    save("properties_large", {"machine": m, "machine_start": start, "rows": rows, "reference_pore_400": ref}, "\n".join(lines))


if __name__ == "__main__":
    main()
