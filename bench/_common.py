"""Helpers shared by the benchmark scripts: machine info and result files."""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_DATA = Path(os.environ.get("MICROLAD_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


def model_image_parser(doc: str | None = None) -> argparse.ArgumentParser:
    """Argument parser with the positional MODEL_DIR and IMAGE (training image) and ``--name``."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("model_dir")
    ap.add_argument("image")
    ap.add_argument("--name", required=True)
    return ap


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
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save(name: str, data: dict, markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n")
    print(markdown)
    print(f"wrote {RESULTS / (name + '.json')} and {RESULTS / (name + '.md')}")
