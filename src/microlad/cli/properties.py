"""``microlad properties``: descriptor report of a segmented image or volume."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from microlad.errors import InputError


def properties(
    path: Path = typer.Argument(..., help="Segmented image or volume: .tif/.tiff, .png, .npy, .npz."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON to this file."),
    key: Optional[str] = typer.Option(None, "--key", help="Array name inside an .npz (default: the first)."),
    thresholds: Optional[List[float]] = typer.Option(None, "--threshold", help="Grey threshold for unsegmented images (repeat for more phases)."),
    voxel_size: float = typer.Option(1.0, "--voxel-size", help="Voxel edge length (surface areas per this unit)."),
    cutoff: Optional[int] = typer.Option(None, "--cutoff", help="Largest S2 distance in voxels (default: half the smallest side)."),
    non_periodic: bool = typer.Option(False, "--non-periodic", help="Non-periodic S2 (overlap-normalised) instead of periodic."),
    no_transport: bool = typer.Option(False, "--no-transport", help="Skip the diffusion solves (tortuosity, D_eff)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
) -> None:
    """Print volume fraction, S2, surface area, percolation, TPB and tortuosity per phase."""
    from microlad.evaluate import format_properties
    from microlad.evaluate import properties as compute
    from microlad.io import read_image, write_json

    if voxel_size <= 0:
        raise InputError(f"--voxel-size must be positive, got {voxel_size}")
    if json_out is not None and json_out.exists() and not overwrite:
        raise InputError(f"{json_out}: already exists (pass --overwrite to replace it)")
    seg = read_image(path, key=key, thresholds=thresholds or None)
    if cutoff is not None and not 0 < cutoff <= min(seg.labels.shape) // 2:
        raise InputError(f"--cutoff must be in 1..{min(seg.labels.shape) // 2} for shape {seg.labels.shape}, got {cutoff}")
    report = compute(
        seg.labels,
        grey_values=seg.grey_values,
        voxel_size=voxel_size,
        cutoff=cutoff,
        periodic=not non_periodic,
        transport=not no_transport,
    )
    report = {"source": str(path), **report}
    typer.echo(format_properties(report))
    if json_out is not None:
        write_json(json_out, report, overwrite=overwrite)
        typer.echo(f"wrote {json_out}")
