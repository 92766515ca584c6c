"""Thread policy under contention: `microlad reconstruct` 64³ quiet and beside busy processes.

Usage: python bench/bench_threads.py [--model sofc-anode] [--size 64] [--repeats 2] [--busy 1]

Runs the real CLI (a fresh process each time, model load included, the time the user
waits) with the default settings and with ``--threads N`` for N = the CPU count (what
torch would pick without the policy), first on the machine as it is ("quiet") and then
with ``--busy`` CPU-bound processes (``python -c "while True: pass"``) running beside it.
OMP_NUM_THREADS is removed from the environment so that the default policy applies.
Goal (issue #15): with one busy process, default settings take at most 2x the quiet time.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NO_PAPER, machine, provenance, save  # noqa: E402

BUSY = [sys.executable, "-c", "while True: pass"]


def run_once(model: str, size: int, threads: int | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "microlad", "reconstruct", model, "--shape", *[str(size)] * 3, "--out", out, "--no-progress"]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0


def measure(model: str, size: int, threads: int | None, repeats: int) -> dict:
    times = [run_once(model, size, threads) for _ in range(repeats)]
    return {"threads": "default" if threads is None else threads, "seconds": [round(t, 2) for t in times],
            "median_s": round(sorted(times)[len(times) // 2], 2), "load_1min": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="sofc-anode")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--busy", type=int, default=1)
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    start = machine()
    rows = []
    for busy in (0, args.busy):
        procs = [subprocess.Popen(BUSY) for _ in range(busy)]
        try:
            time.sleep(1.0 if busy else 0.0)
            for threads in (None, cpus):
                rows.append({"busy": busy, **measure(args.model, args.size, threads, args.repeats)})
        finally:
            for p in procs:
                p.kill()
                p.wait()
    quiet = {r["threads"]: r["median_s"] for r in rows if r["busy"] == 0}
    for r in rows:
        r["vs_quiet"] = round(r["median_s"] / quiet[r["threads"]], 2)
    m = machine()
    from microlad.cli._threads import available_cores

    lines = [
        "## Threads under contention (`bench/bench_threads.py`)",
        "",
        provenance(start=start, end=m, threads="the CLI's threads as in the table",
                   paper=f"{NO_PAPER} (the paper's timings are on a GPU and say nothing about shared CPUs)"),
        "",
        f"`microlad reconstruct {args.model} --shape {args.size} {args.size} {args.size}` as a fresh process (model load "
        f"included), median of {args.repeats} runs; {cpus} CPUs ({available_cores()} available), torch {m['torch']}. "
        f"'busy 1': one `python -c \"while True: pass\"` beside it. `--threads {cpus}` is what torch uses without the "
        "policy (one thread per core). Other jobs shared the machine (load column: 1-min load average after the runs).",
        "",
        "| busy processes | threads | median s | runs s | vs quiet | load 1 min |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['busy']} | {r['threads']} | {r['median_s']:.2f} | {', '.join(f'{t:.2f}' for t in r['seconds'])} | "
                     f"{r['vs_quiet']:.2f}x | {r['load_1min']} |")
    lines.append("")
    lines.append("Default policy (README, 'Threads'): `--threads`, else `$OMP_NUM_THREADS`, else "
                 "max(1, min(cores - 1, cores - busy)), 1 for volumes up to 32³. Goal: busy/quiet ≤ 2x with the default.")
    save("threads", {"machine": m, "machine_start": start, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
