"""``microlad properties``: descriptor report of a segmented image or volume."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from microlad.errors import InputError

_SLICE = re.compile(r"^\s*(-?\d*)\s*:\s*(-?\d*)\s*$")


def parse_subvolume(text: str, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``"Z0:Z1,Y0:Y1,X0:X1"`` (numpy-style, ends exclusive, empty = whole axis) to slices.

    Raises :class:`InputError` unless there is one range per axis and each selects at
    least two voxels inside ``shape``.
    """
    parts = text.split(",")
    if len(parts) != len(shape):
        raise InputError(f"--subvolume needs {len(shape)} comma-separated ranges START:STOP for shape {shape}, got {text!r}")
    out = []
    for part, n, axis in zip(parts, shape, "zyx"[-len(shape):]):
        m = _SLICE.match(part)
        if m is None:
            raise InputError(f"--subvolume: range {part.strip()!r} of axis {axis} is not START:STOP")
        lo = int(m.group(1)) if m.group(1) not in ("", "-") else 0
        hi = int(m.group(2)) if m.group(2) not in ("", "-") else n
        start, stop, _ = slice(lo, hi).indices(n)
        if stop - start < 2 or lo >= n or lo < -n:
            raise InputError(f"--subvolume: range {part.strip()!r} of axis {axis} selects fewer than 2 of its {n} voxels")
        out.append(slice(start, stop))
    return tuple(out)


def properties(
    path: Path = typer.Argument(..., help="Segmented image or volume: .tif/.tiff, .png, .npy, .npz."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON to this file."),
    key: Optional[str] = typer.Option(None, "--key", help="Array name inside an .npz (default: the first)."),
    thresholds: Optional[List[float]] = typer.Option(None, "--threshold", help="Grey threshold for unsegmented images (repeat for more phases)."),
    voxel_size: float = typer.Option(1.0, "--voxel-size", help="Voxel edge length (surface areas and TPB density per this unit)."),
    cutoff: Optional[int] = typer.Option(None, "--cutoff", help="Largest S2 distance in voxels, every axis (default and maximum: half the smallest side)."),
    non_periodic: bool = typer.Option(False, "--non-periodic", help="Non-periodic S2 (overlap-normalised) instead of periodic."),
    no_transport: bool = typer.Option(False, "--no-transport", help="Skip the diffusion solves (tortuosity, D_eff)."),
    subvolume: Optional[str] = typer.Option(None, "--subvolume", help="Evaluate only this box, Z0:Z1,Y0:Y1,X0:X1 (Y0:Y1,X0:X1 for 2D; ends exclusive, empty = whole axis)."),
    memory_gb: Optional[float] = typer.Option(None, "--memory-gb", help="Memory the transport solves may use, GiB (default: what the machine has available)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Most transport worker processes (default: $OMP_NUM_THREADS if set, else by free cores and memory)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars over the descriptors and the transport solves (stderr)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
) -> None:
    """Print volume fraction, S2, surface area, percolation, TPB and tortuosity per phase."""
    from microlad.cli._threads import check_threads
    from microlad.evaluate import format_properties
    from microlad.evaluate import properties as compute
    from microlad.evaluate.properties import check_transport_memory, phase_counts
    from microlad.io import check_output_file, read_image

    if not np.isfinite(voxel_size) or voxel_size <= 0:
        raise InputError(f"--voxel-size must be a positive number, got {voxel_size}")
    if memory_gb is not None and not (np.isfinite(memory_gb) and memory_gb > 0):
        raise InputError(f"--memory-gb must be a positive number, got {memory_gb}")
    check_threads(threads)
    if json_out is not None:
        check_output_file(json_out, overwrite=overwrite)
    seg = read_image(path, key=key, thresholds=thresholds or None)
    labels = seg.labels
    box = None
    if subvolume is not None:
        box = parse_subvolume(subvolume, labels.shape)
        labels = np.ascontiguousarray(labels[box])
    half = min(labels.shape) // 2
    if cutoff is not None and not 0 < cutoff <= half:
        raise InputError(f"--cutoff must be in 1..{half} for shape {labels.shape}, got {cutoff}")
    limit = int(memory_gb * 2**30) if memory_gb is not None else None
    if not no_transport:  # before any descriptor work
        check_transport_memory(phase_counts(labels), limit, shape=labels.shape)
    workers = None
    if threads is not None or _omp_threads() is not None:
        from microlad.cli._threads import resolve_threads

        workers = resolve_threads(threads)
    report = compute(
        labels,
        grey_values=seg.grey_values,
        voxel_size=voxel_size,
        cutoff=cutoff,
        periodic=not non_periodic,
        transport=not no_transport,
        workers=workers,
        memory_limit=limit,
        progress=progress,
    )
    head: dict = {"source": str(path)}
    if box is not None:
        head["subvolume"] = [[s.start, s.stop] for s in box]
    report = {**head, **report}
    typer.echo(format_properties(report))
    if json_out is not None:
        from microlad.io import write_json

        write_json(json_out, report, overwrite=overwrite)
        typer.echo(f"wrote {json_out}")


def _omp_threads() -> int | None:
    import os

    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else None
