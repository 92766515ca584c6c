"""``microlad evaluate``: volumes against a reference → metrics.json, report.html, verdict."""
from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np
import typer

from microlad.errors import InputError, ShapeError

OUTPUTS = ("metrics.json", "report.html")


def evaluate(
    volumes: List[Path] = typer.Argument(..., help="Label volumes to evaluate (.tif/.npy/.npz), all one shape."),
    reference: Optional[List[Path]] = typer.Option(None, "--reference", help="Reference 2D image(s) or one 3D volume (repeat for more images)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model directory or bundled name: its training statistics (without --reference), patch size and VAE round trip."),
    out: Path = typer.Option(Path("evaluation"), "--out", help="Folder for metrics.json and report.html."),
    voxel_size: float = typer.Option(1.0, "--voxel-size", help="Voxel edge length; lengths are reported in --unit."),
    unit: str = typer.Option("um", "--unit", help="Name of the length unit of --voxel-size (used only when it is not 1)."),
    no_transport: bool = typer.Option(False, "--no-transport", help="Skip the diffusion solves (tortuosity, D_eff)."),
    n_patches: int = typer.Option(64, "--patches", help="Reference patches (2D) or sub-volumes (3D: 8 at most) for the spread."),
    seed: int = typer.Option(0, "--seed", help="Seed of the reference patch positions."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier metrics.json / report.html in --out."),
) -> None:
    """Compare volumes with a reference image, volume or model: metrics, report and verdict."""
    if not reference and not model:
        raise InputError("give --reference IMAGE_OR_VOLUME or --model MODEL (or both)")
    run_evaluation(volumes, reference=reference or [], model_name=model, voxel_size=voxel_size, unit=unit,
                                transport=not no_transport, n_patches=n_patches, seed=seed, out=out, overwrite=overwrite)


def run_evaluation(
    volume_paths: Sequence[Path],
    *,
    reference: Sequence[Path] = (),
    model_name: str | None = None,
    model: Any = None,
    voxel_size: float = 1.0,
    unit: str = "um",
    transport: bool = True,
    n_patches: int = 64,
    seed: int = 0,
    out: Path = Path("evaluation"),
    overwrite: bool = False,
    command: str | None = None,
    table: bool = True,
) -> tuple[Any, list[np.ndarray]]:
    """Read, evaluate, write ``out/metrics.json`` and ``out/report.html``, print the verdict.

    ``model`` (an already loaded model) avoids reloading ``model_name``; ``table=False``
    prints only the summary and verdict lines. Used by ``microlad evaluate``,
    ``reconstruct --report``, ``generate --report`` and ``demo``.
    """
    from microlad.evaluate.evaluation import evaluate_volumes, format_verdict
    from microlad.evaluate.metrics import MetricOptions
    from microlad.evaluate.reference import (
        check_subvolume_shape,
        reference_from_images,
        reference_from_model,
        reference_from_volume,
        training_stats,
    )
    from microlad.evaluate.report import write_report
    from microlad.io import read_image, write_json

    t_start = time.perf_counter()
    if voxel_size <= 0:
        raise InputError(f"--voxel-size must be positive, got {voxel_size}")
    if n_patches < 1:
        raise InputError(f"--patches must be at least 1, got {n_patches}")
    for name in OUTPUTS:
        if (out / name).exists() and not overwrite:
            raise InputError(f"{out / name}: already exists (pass --overwrite to replace it)")
    vols = [read_image(p).labels for p in volume_paths]
    for p, v in zip(volume_paths, vols):
        if v.ndim != 3:
            raise ShapeError(f"{p}: expected a 3D volume, got shape {v.shape}")
    shape = vols[0].shape
    for p, v in zip(volume_paths, vols):
        if v.shape != shape:
            raise ShapeError(f"{p}: shape {v.shape} differs from {volume_paths[0]}'s {shape}; evaluate one shape at a time")
    if min(shape) < 4:
        raise ShapeError(f"volumes must be at least 4 voxels along every axis, got {shape}")
    refs = [read_image(p).labels for p in reference]
    three_d = [p for p, r in zip(reference, refs) if r.ndim == 3]
    if three_d and len(refs) > 1:
        raise InputError("give either 2D reference images or exactly one 3D reference volume, not a mix or several volumes")
    if model is None and model_name:
        from microlad.bundled import resolve_model
        from microlad.model import load_model

        model = load_model(resolve_model(model_name))
    n_phases = max([int(v.max()) + 1 for v in vols + refs] + ([model.n_phases] if model is not None else []))
    if model is not None and n_phases != model.n_phases:
        raise InputError(f"the volumes or references hold {n_phases} phases, the model {model.n_phases}")
    cutoff = min(shape) // 2
    patch = None
    if refs and not three_d:
        patch = min([model.patch_size if model is not None else min(shape)] + [min(r.shape) for r in refs])
        cutoff = min(cutoff, patch // 2)
    elif not refs:
        cutoff = min(cutoff, int(training_stats(model).s2_cutoff or cutoff))
    opts = MetricOptions(cutoff=cutoff, n_phases=n_phases, voxel_size=float(voxel_size), transport=transport)
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    if three_d:
        check_subvolume_shape(refs[0].shape, shape)  # before the progress bar: a clean one-line error
        with tqdm(total=min(8, n_patches), desc="reference sub-volumes", unit="volume", leave=False) as bar:
            ref = reference_from_volume(refs[0], shape=shape, opts=opts, n_sub=min(8, n_patches), seed=seed,
                                        sources=[str(three_d[0])], progress=bar.update)
    elif refs:
        ref = reference_from_images(refs, opts=opts, patch=patch, volume_shape=shape, n_patches=n_patches, seed=seed,
                                    sources=[str(p) for p in reference])
    else:
        ref = reference_from_model(model, opts=opts, volume_shape=shape, name=str(model_name))
    if model is not None and ref.kind != "model":
        ref = _with_model_facts(ref, model, opts, shape)
    t_ref = time.perf_counter() - t0
    meta = _metadata(volume_paths, model_name, command, seed)
    length_unit = "voxel" if voxel_size == 1.0 else unit
    ev = evaluate_volumes(vols, ref, opts=opts, names=[Path(p).name for p in volume_paths], model=model, progress=True,
                          metadata=meta, length_unit=length_unit)
    ev.timings["reference"] = t_ref
    out.mkdir(parents=True, exist_ok=True)
    ev.timings["total (before the report)"] = time.perf_counter() - t_start
    js = write_json(out / "metrics.json", ev.to_dict(), overwrite=True)
    page = write_report(out / "report.html", ev, vols)
    verdict = format_verdict(ev).splitlines()
    typer.echo("\n".join(verdict if table else [verdict[0], verdict[-1]]))
    typer.echo(f"wrote {js} and {page}")
    return ev, vols


def _with_model_facts(ref, model, opts, shape):
    """An image / volume reference plus the model's held-out VAE accuracy."""
    from dataclasses import replace

    from microlad.evaluate.reference import reference_from_model

    try:
        extra = reference_from_model(model, opts=opts, volume_shape=shape).extra
    except InputError:
        return ref
    return replace(ref, extra={**ref.extra, **extra})


def _metadata(paths: Sequence[Path], model_name: str | None, command: str | None, seed: int) -> dict[str, Any]:
    """Command, versions and what the volumes' JSON sidecars say (model, seeds)."""
    import scipy
    import skimage

    from microlad._version import __version__

    seeds, models = [], set()
    for p in paths:
        side = Path(p).with_suffix(".json")
        try:
            info = json.loads(side.read_text()) if side.exists() else {}
        except (OSError, ValueError):
            info = {}
        if "seed" in info:
            seeds.append(info["seed"])
        if "model" in info:
            models.add(str(info["model"]))
    meta = {
        "command": command or ("microlad " + shlex.join(sys.argv[1:])),
        "model": model_name or (", ".join(sorted(models)) if models else "-"),
        "volume seeds (sidecars)": ", ".join(map(str, seeds)) if seeds else "-",
        "reference patch seed": seed,
        "microlad": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-image": skimage.__version__,
    }
    if "torch" in sys.modules:
        meta["torch"] = sys.modules["torch"].__version__
    return meta


def check_report_outputs(out: Path, overwrite: bool) -> None:
    """Raise before any work if ``--report`` would overwrite an earlier report in ``out``."""
    for name in OUTPUTS:
        if (out / name).exists() and not overwrite:
            raise InputError(f"{out / name}: already exists (pass --overwrite to replace it)")


def report_reconstructions(paths: Sequence[Path], *, model: Any, model_name: str, out: Path, overwrite: bool, world: int = 1) -> None:
    """``reconstruct --report``: evaluate the volumes just written against the model's
    training statistics (``out/metrics.json``, ``out/report.html``). Under torchrun each
    rank holds only its share of the volumes, so the report is left to ``microlad evaluate``."""
    if world > 1:
        typer.echo(f"--report: skipped with {world} ranks; run `microlad evaluate {out}/volume_*.tif --model {model_name} --out {out}`")
        return
    if not paths:
        return
    run_evaluation(list(paths), model=model, model_name=model_name, out=out, overwrite=overwrite,
                   command="microlad " + shlex.join(sys.argv[1:]))
