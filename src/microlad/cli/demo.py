"""``microlad demo``: the main job end to end, offline, on the bundled default model.

2D-trained model → 3D volume (L-MPDD + refinement) → descriptor report with tortuosity
→ fidelity of the volume's slices against the training images' statistics → files and a
figure. Falls back to a synthetic example if no bundled model is installed.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for the demo's files."),
    model: str = typer.Option("sofc-anode", "--model", help="Bundled model name or model directory."),
    size: int = typer.Option(64, "--size", help="Edge of the cubic volume in voxels (multiple of 4)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files from an earlier demo."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: $OMP_NUM_THREADS if set, else free cores - 1; 1 up to 32^3)."),
) -> None:
    """Reconstruct a 3D volume from the bundled 2D-trained model and report its statistics."""
    from microlad.bundled import DEFAULT_MODEL, bundled_models
    from microlad.cli._common import model_path
    from microlad.cli._threads import apply_torch_threads, check_threads
    from microlad.defaults import RECONSTRUCT_REFINE, RECONSTRUCT_STEPS
    from microlad.errors import InputError
    from microlad.io import check_output_dir

    check_threads(threads)
    check_output_dir(out)
    if model == DEFAULT_MODEL and DEFAULT_MODEL not in bundled_models():
        _synthetic_demo(out, seed, overwrite)
        return
    if size < 16 or size % 4:
        raise InputError(f"--size must be a multiple of 4 and at least 16, got {size}")
    for name in ("volume_000.tif", "volume_000.json", "properties.json", "demo.png"):
        if (out / name).exists() and not overwrite:
            raise InputError(f"{out / name}: already exists (pass --overwrite to replace it)")
    path = model_path(model)
    apply_torch_threads(threads, small=size <= 32)
    import torch

    from microlad.evaluate import format_properties, properties
    from microlad.io import write_json, write_volume
    from microlad.model import load_model

    torch.manual_seed(seed)
    m = load_model(path)
    src = (path / "SOURCE.md").read_text().splitlines()[0].lstrip("# ") if (path / "SOURCE.md").exists() else str(path)
    typer.echo(f"model: {model} ({m.n_phases} phases, trained on 2D {m.patch_size}x{m.patch_size} patches) — {src}")
    passes = f"{RECONSTRUCT_REFINE} refinement pass" + ("" if RECONSTRUCT_REFINE == 1 else "es")
    typer.echo(f"reconstructing one {size}^3 volume (L-MPDD, DDIM {RECONSTRUCT_STEPS} steps, {passes}, seed {seed}) ...")
    t0 = time.perf_counter()
    rec = m.reconstruct((size, size, size), n=1, seed=seed, steps=RECONSTRUCT_STEPS, refine=RECONSTRUCT_REFINE, match_vf=True, progress=True)[0]
    elapsed = time.perf_counter() - t0
    labels = rec.labels
    vol = write_volume(out / "volume_000.tif", labels, grey_values=tuple(m.grey_values), overwrite=overwrite,
                       metadata={"model": str(model), "seed": seed, "command": "microlad demo", "timings_s": rec.timings,
                                 "config": {"shape": [size] * 3, "steps": RECONSTRUCT_STEPS, "refine": RECONSTRUCT_REFINE, "match_vf": True}})
    typer.echo(f"done in {elapsed:.1f} s\n")
    report = properties(labels, grey_values=m.grey_values)
    report["fidelity"] = _fidelity(labels, m)
    typer.echo(format_properties(report))
    typer.echo("\nslices vs training images (S2 error = |A_gen - A_ref| / A_ref, A = sum of S2 up to r = %d):" % report["fidelity"]["cutoff"])
    typer.echo(f"{'phase':>5} {'VF train':>9} {'VF 3D':>7} {'S2 err z':>9} {'S2 err y':>9} {'S2 err x':>9}")
    for p, f in report["fidelity"]["phases"].items():
        typer.echo(f"{p:>5} {f['vf_train']:>9.3f} {f['vf_volume']:>7.3f} " + " ".join(f"{100 * f['s2_error'][a]:>8.1f}%" for a in "zyx"))
    js = write_json(out / "properties.json", report, overwrite=overwrite)
    png = _figure(labels, report, m, out / "demo.png")
    typer.echo(f"\nwrote {vol} (+ {vol.with_suffix('.json').name}), {js} and {png}")


def _fidelity(labels: np.ndarray, m) -> dict:
    """Slice S2 of the volume along each axis vs the S2 stored from the training patches."""
    from microlad.descriptors import s2_error, s2_slices, volume_fraction
    from microlad.reconstruct import training_fractions

    stats = m.training_stats
    vf_train = training_fractions(m)
    ref = np.asarray(stats.s2_radial_mean, dtype=float)
    c = min(ref.shape[-1] - 1, min(labels.shape) // 2)
    vf = volume_fraction(labels, n_phases=m.n_phases)
    phases = {}
    for p in range(m.n_phases):
        err = {a: float(s2_error(s2_slices(labels, phase=p, axis=i, cutoff=c, periodic=False), ref[p, : c + 1])) for i, a in enumerate("zyx")}
        phases[str(p)] = {"vf_train": vf_train[p], "vf_volume": float(vf[p]), "s2_error": err}
    return {"cutoff": c, "phases": phases, "max_s2_error": max(max(v["s2_error"].values()) for v in phases.values())}


def _figure(labels: np.ndarray, report: dict, m, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from microlad.io import atomic_path

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    mid = [s // 2 for s in labels.shape]
    for ax, (title, img) in zip(axes, [("z slice (YX)", labels[mid[0]]), ("y slice (ZX)", labels[:, mid[1]]), ("x slice (ZY)", labels[:, :, mid[2]])]):
        ax.imshow(img, cmap="viridis", vmin=0, vmax=m.n_phases - 1, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    ref = np.asarray(m.training_stats.s2_radial_mean)
    c = report["fidelity"]["cutoff"]
    from microlad.descriptors import s2_slices

    for p in range(m.n_phases):
        line = axes[3].plot(ref[p, : c + 1], lw=2, label=f"phase {p} train")[0]
        for i, ls in enumerate([":", "--", "-."]):
            axes[3].plot(s2_slices(labels, phase=p, axis=i, cutoff=c, periodic=False), ls, color=line.get_color(), lw=1)
    axes[3].set_xlabel("r [voxels]")
    axes[3].set_ylabel("S2(r)")
    axes[3].set_title("S2: training (thick) vs slices z/y/x")
    axes[3].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def _synthetic_demo(out: Path, seed: int, overwrite: bool) -> None:
    from microlad.evaluate import format_properties, properties
    from microlad.io import write_json, write_volume
    from microlad.synthetic import random_field_labels

    typer.echo("demo: no bundled model installed; using a generated 64^3 two-phase random-field volume instead")
    labels = random_field_labels((64, 64, 64), fractions=(0.6, 0.4), correlation_length=3.0, seed=seed)
    vol = write_volume(out / "example_volume.tif", labels, metadata={"seed": seed, "command": "microlad demo"}, overwrite=overwrite)
    report = properties(labels)
    typer.echo(format_properties(report))
    js = write_json(out / "example_properties.json", report, overwrite=overwrite)
    typer.echo(f"wrote {vol}, {vol.with_suffix('.json')} and {js}")
