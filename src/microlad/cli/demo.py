"""``microlad demo``: the main job end to end, offline, on a bundled default."""
from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for the demo's files."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files from an earlier demo."),
) -> None:
    """Run the demo: make a synthetic two-phase volume and report its properties.

    (The full 2D → 3D reconstruction demo arrives with the reconstruction issue; until
    then the demo exercises I/O, descriptors and transport on a generated example.)
    """
    from microlad.evaluate import format_properties, properties
    from microlad.io import write_json, write_volume
    from microlad.synthetic import random_field_labels

    typer.echo("demo: generated example (no trained model bundled yet): a 64^3 two-phase random-field volume")
    labels = random_field_labels((64, 64, 64), fractions=(0.6, 0.4), correlation_length=3.0, seed=seed)
    vol = write_volume(out / "example_volume.tif", labels, metadata={"seed": seed, "command": "microlad demo"}, overwrite=overwrite)
    report = properties(labels)
    typer.echo(format_properties(report))
    js = write_json(out / "example_properties.json", report, overwrite=overwrite)
    typer.echo(f"wrote {vol}, {vol.with_suffix('.json')} and {js}")
