"""Helpers shared by the benchmark scripts: machine info, the provenance lines every
results table states, and result files."""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("MICROLAD_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
SHARED_DATA = Path(os.environ.get("MICROLAD_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()

# The paper's figures (MicroLad, arXiv 2508.20138; ../shared/METHOD.md §4, §6, §7), in one place so
# every table quotes them alike. Table 1: max S2 error over phases and axes of 64³ volumes.
PAPER_S2_CARBONATE = "carbonate 64³: L-MPDD 4.62 %, S2-guided SDS 0.41 % (Table 1)"
PAPER_S2_SOFC = "SOFC anode 64³: L-MPDD 10.81 %, S2-guided SDS 6.13 %; pixel-space MPDD 12.44 %, SliceGAN 11.01 % (Table 1)"
PAPER_SPEED_64 = "64³ in < 10 s (GPU) vs > 30 min for pixel-space MPDD"
PAPER_SPEED_256 = "256³ reconstruction 71 s (GPU)"
PAPER_SDS_VF_SA = "500 SDS steps ≈ 1 min per volume for VF/SA targets (GPU)"
PAPER_SDS_DEFF = "500 SDS steps ≈ 2.5 min per volume for a diffusivity target (GPU)"
NO_PAPER = "no paper figure"


def model_image_parser(doc: str | None = None) -> argparse.ArgumentParser:
    """Argument parser with the positional MODEL_DIR and IMAGE (training image) and ``--name``."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("model_dir")
    ap.add_argument("image")
    ap.add_argument("--name", required=True)
    return ap


def model_truth_parser(doc: str | None = None, *, name: str = "berea") -> argparse.ArgumentParser:
    """Argument parser for a model judged against a 3D truth: positional MODEL_DIR and TRUTH
    (a 3D label volume), ``-n`` volumes, their ``--size``, the ``--phase`` measured, ``--name``."""
    from pathlib import Path

    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("model_dir")
    ap.add_argument("truth", type=Path)
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--phase", type=int, default=0)
    ap.add_argument("--name", default=name)
    return ap


def sub_volumes(volume, size: int) -> list:
    """The non-overlapping ``size``³ sub-volumes of a 3D array, in z, y, x order."""
    return [volume[z:z + size, y:y + size, x:x + size] for z in range(0, volume.shape[0] - size + 1, size)
            for y in range(0, volume.shape[1] - size + 1, size) for x in range(0, volume.shape[2] - size + 1, size)]


def machine() -> dict:
    import numpy
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def command_line(argv: list[str] | None = None) -> str:
    """The command that ran this script, as typed from the repository root: ``python bench/NAME.py ARGS``
    (the script's path made relative to the root; arguments as given)."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    try:
        argv[0] = str(script.relative_to(ROOT))
    except ValueError:
        pass
    return "python " + shlex.join(argv)


def provenance(*, paper: str, start: dict | None = None, end: dict | None = None, command: str | None = None,
               threads: str | None = None) -> str:
    """The lines every results table states, right under its heading: machine, load average,
    date, the command that wrote it and the paper's figure beside ours.

    ``start`` / ``end``: :func:`machine` at the start and at the end of the run (at least one).
    ``paper``: the paper's figure for what the table measures, with ours beside it where the
    script has it (the ``PAPER_*`` constants here), or :data:`NO_PAPER` with the reason.
    ``command``: default :func:`command_line`. ``threads``: replaces the torch thread count of
    this process where the measured work ran elsewhere (e.g. "the CLI on 1 thread (OMP_NUM_THREADS=1)").
    """
    if start is None and end is None:
        raise ValueError("provenance needs the machine info at the start or the end of the run")
    info = end or start
    loads = [f"{m['load_average_1min']} at the {w}" for m, w in ((start, "start"), (end, "end")) if m is not None]
    dates = [m.get("date") or "date not recorded" for m in (start, end) if m is not None]
    if len(dates) == 1 or dates[0] == dates[1]:
        date = dates[0]
    elif dates[0][:10] == dates[1][:10] and dates[0].endswith(" UTC") and dates[1].endswith(" UTC"):
        date = f"{dates[0][:-4]}–{dates[1][11:]}"  # same day: 2026-12-03 13:37–13:46 UTC
    else:
        date = f"{dates[0]} – {dates[1]}"
    th = threads or f"{info['torch_threads']} torch thread(s)"
    return "\n".join([
        f"Machine: {info['cpu_count']} CPUs ({info['processor']}), python {info['python']}, torch {info['torch']}, {th}; "
        f"load average (1 min) {', '.join(loads)}; {date}.",
        f"Command: {_code(command or command_line())}.",
        f"Paper: {paper}.",
    ])


def _code(text: str) -> str:
    """``text`` as a markdown code span (double backticks when it holds a backtick itself)."""
    return f"``{text}``" if "`" in text else f"`{text}`"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save(name: str, data: dict, markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n")
    print(markdown)
    print(f"wrote {RESULTS / (name + '.json')} and {RESULTS / (name + '.md')}")
