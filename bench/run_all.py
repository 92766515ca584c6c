"""Assemble BENCHMARKS.md from the result snippets in bench/results/*.md.

Each bench script writes its own results/NAME.md; this puts them together in a fixed
order so BENCHMARKS.md always states what the scripts last measured.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["transport", "training*", "reconstruct", "fidelity*", "fine_scale_[!f]*", "fine_scale_findings", "groundtruth*",
         "pixel_baseline*", "guidance*", "evaluate*"]
# hand-kept sections (figures measured once when the code was written, no script of their own): last
TAIL = ["design_measurements"]

HEADER = """# Benchmarks

Measured on the project machine (2 CPU cores, 24 GiB, no GPU) unless a section says
otherwise. Every number below is written by a script in `bench/`; rerun it to refresh
its section, then `python bench/run_all.py` to rebuild this file.
"""


def main() -> None:
    parts = [HEADER]
    results = ROOT / "bench" / "results"
    names: list[str] = []
    for pattern in [*ORDER, "*"]:
        names += [p.stem for p in sorted(results.glob(f"{pattern}.md")) if p.stem not in names and p.stem not in TAIL]
    names += [n for n in TAIL if (results / f"{n}.md").is_file()]
    for name in names:
        parts.append((results / f"{name}.md").read_text().rstrip() + "\n")
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts))
    print(f"wrote {ROOT / 'BENCHMARKS.md'} ({', '.join(names) or 'no results yet'})")


if __name__ == "__main__":
    main()
