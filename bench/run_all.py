"""Assemble BENCHMARKS.md from the result snippets in bench/results/*.md, and rerun the
commands that write them.

Each bench script writes its own results/NAME.md; this puts them together in a fixed
order so BENCHMARKS.md always states what the scripts last measured. Which command writes
which snippet is recorded in ``bench/registry.py``.

Usage::

    python bench/run_all.py                          # assemble BENCHMARKS.md from the snippets
    python bench/run_all.py --list                   # every snippet: its command, rough cost, status
    python bench/run_all.py --rerun NAME [NAME ...]  # rerun those commands, then assemble
    python bench/run_all.py --rerun all --skip-slow  # every command that runs in <= 15 min
    python bench/run_all.py --out /tmp/B.md          # assemble somewhere else
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, SHARED_DATA  # noqa: E402
from registry import HAND_KEPT, REGISTRY, SLOW_MINUTES, Entry  # noqa: E402

ORDER = ["transport", "training*", "reconstruct", "fidelity*", "fine_scale_[!f]*", "fine_scale_findings", "levers*", "groundtruth*",
         "pixel_baseline*", "guidance*", "evaluate*"]
# hand-kept sections (figures measured once when the code was written, no script of their own): last
TAIL = ["design_measurements"]

HEADER = """# Benchmarks

Measured on the project machine (2 CPU cores, 24 GiB, no GPU) unless a section says
otherwise. Every number below is written by a script in `bench/`; each section states the
machine, load average, date and command of its run and the paper's figure beside ours.
`python bench/run_all.py --list` shows which command writes which section and what it
costs; `python bench/run_all.py --rerun NAME` reruns one and rebuilds this file (plain
`python bench/run_all.py` only rebuilds it).
"""


def snippet_names(results: Path = RESULTS) -> list[str]:
    """Snippet stems in BENCHMARKS.md order: ORDER's patterns, then the rest, then TAIL."""
    names: list[str] = []
    for pattern in [*ORDER, "*"]:
        names += [p.stem for p in sorted(results.glob(f"{pattern}.md")) if p.stem not in names and p.stem not in TAIL]
    return names + [n for n in TAIL if (results / f"{n}.md").is_file()]


def assemble(out: Path, results: Path = RESULTS) -> list[str]:
    """Write every snippet of ``results`` into ``out`` under HEADER; returns the snippet names."""
    names = snippet_names(results)
    parts = [HEADER] + [(results / f"{name}.md").read_text().rstrip() + "\n" for name in names]
    out.write_text("\n".join(parts))
    return names


def expand(command: str) -> list[str]:
    """``command`` as argv: ``$DATA`` → the shared data folder, ``python`` → this interpreter,
    ``microlad`` → the console script beside it."""
    argv = shlex.split(command.replace("$DATA", shlex.quote(str(SHARED_DATA))))
    if argv[0] == "python":
        argv[0] = sys.executable
    elif argv[0] == "microlad":
        exe = Path(sys.executable).with_name("microlad")
        argv[:1] = [str(exe)] if exe.exists() else [sys.executable, "-m", "microlad"]
    return argv


def local(path: str) -> Path:
    """A registry path on this machine: ``$DATA`` expanded."""
    return Path(path.replace("$DATA", str(SHARED_DATA), 1)) if path.startswith("$DATA") else Path(path)


def skip_reason(entry: Entry, skip_slow: bool) -> str | None:
    """Why ``entry`` cannot or should not run now (one line), or None."""
    if entry.stale:
        return f"no command reproduces it anymore: it {entry.stale}"
    missing = [p for p in entry.inputs if not local(p).exists()]
    data = [str(local(p)) for p in missing if p.startswith("$DATA/")]
    other = [p for p in missing if not p.startswith("$DATA/")]
    parts = ([f"{', '.join(other)} (not in the repository, not on this machine; see --list)"] if other else []) + \
            ([f"{', '.join(data)} (shared data not found: set MICROLAD_SHARED_DATA)"] if data else [])
    if parts:
        return "needs " + "; ".join(parts)
    if skip_slow and entry.slow:
        return f"slow (~{entry.minutes:g} min > {SLOW_MINUTES:g}) and --skip-slow given"
    return None


def status(name: str) -> str:
    if name in HAND_KEPT:
        return "hand-kept"
    e = REGISTRY.get(name)
    if e is None:
        return "NO ENTRY"
    if e.stale:
        return "stale"
    missing = [p for p in e.inputs if not local(p).exists()]
    if missing:
        return "needs " + ", ".join(missing)
    return "slow" if e.slow else "ok"


def list_entries() -> None:
    names = snippet_names()
    extra = [n for n in REGISTRY if n not in names]
    print(f"{len(names)} snippets in {os.path.relpath(RESULTS, ROOT)} ({len(REGISTRY)} with a command, {len(HAND_KEPT)} hand-kept); "
          f"$DATA = $MICROLAD_SHARED_DATA or ../shared/data; slow = more than {SLOW_MINUTES:g} min\n")
    for name in names + extra:
        st = status(name) + ("" if name in names else ", snippet missing")
        if name in HAND_KEPT:
            print(f"{name}  [hand-kept]\n    no command: {HAND_KEPT[name]}\n")
            continue
        e = REGISTRY.get(name)
        if e is None:
            print(f"{name}  [NO ENTRY]\n    no command recorded in bench/registry.py\n")
            continue
        print(f"{name}  [{st}, ~{e.minutes:g} min]")
        for s in e.setup:
            print(f"    setup: {s}")
        print(f"    {e.command}")
        if e.stale:
            print(f"    stale: no command reproduces this snippet anymore: it {e.stale}")
        if e.note:
            print(f"    note: {e.note}")
        print()


def rerun(names: list[str], skip_slow: bool) -> list[str]:
    """Run the commands of ``names`` from the repository root; returns the names that failed."""
    failed = []
    for name in names:
        e = REGISTRY[name]
        why = skip_reason(e, skip_slow)
        if why:
            print(f"skip {name}: {why}", flush=True)
            continue
        print(f"== {name} (~{e.minutes:g} min): {e.command}", flush=True)
        t0 = time.perf_counter()
        for cmd in (*e.setup, e.command):
            rc = subprocess.run(expand(cmd), cwd=ROOT).returncode
            if rc:
                print(f"FAILED {name}: `{cmd}` exited with {rc}", flush=True)
                failed.append(name)
                break
        else:
            print(f"== {name} done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print every snippet's command, rough cost and status")
    ap.add_argument("--rerun", nargs="+", metavar="NAME", help="rerun these snippets' commands ('all': every one), then assemble")
    ap.add_argument("--skip-slow", action="store_true", help=f"with --rerun: leave out commands of more than {SLOW_MINUTES:g} min")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="where to assemble (default BENCHMARKS.md)")
    args = ap.parse_args(argv)
    if args.list:
        list_entries()
        return 0
    failed: list[str] = []
    if args.rerun:
        names = list(REGISTRY) if args.rerun == ["all"] else args.rerun
        unknown = [n for n in names if n not in REGISTRY]
        if unknown:
            hand = [n for n in unknown if n in HAND_KEPT]
            print(f"error: no command for {', '.join(unknown)}" + (f" ({', '.join(hand)}: hand-kept)" if hand else "")
                  + "; see --list", file=sys.stderr)
            return 2
        failed = rerun(names, args.skip_slow)
    names = assemble(args.out)
    print(f"wrote {args.out} ({', '.join(names) or 'no results yet'})")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
