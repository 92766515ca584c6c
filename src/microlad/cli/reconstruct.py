"""``microlad reconstruct``: 3D volumes from a trained 2D model (L-MPDD + refinement).

Under ``torchrun --nproc_per_node=N -m microlad reconstruct ... -n 100`` the volumes are
sharded across ranks: rank r makes volumes i ≡ r (mod N), each with seed ``seed + i``
and file ``volume_{i:03d}.tif``, so seeds and file names never collide.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import typer

from microlad.defaults import GRAINS_START, RECONSTRUCT_MATCH_LATENT_MEAN, RECONSTRUCT_REFINE, RECONSTRUCT_SMOOTH, RECONSTRUCT_STEPS
from microlad.cli._common import GRAIN_PHASE_HELP, GRAIN_ROUGHNESS_HELP, INIT_HELP, INIT_START_HELP
from microlad.errors import InputError


def reconstruct(
    model_dir: str = typer.Argument(..., help="Model directory written by `microlad train`, or a bundled model name (e.g. sofc-anode)."),
    shape: Tuple[int, int, int] = typer.Option(..., "--shape", help="Volume size D H W in voxels (multiples of the VAE factor).", show_default=False),
    n: int = typer.Option(1, "-n", "--n", help="Number of volumes."),
    steps: int = typer.Option(RECONSTRUCT_STEPS, "--steps", help="Sampler steps (each slices along one axis: z, y, x, z, ...)."),
    refine: int = typer.Option(RECONSTRUCT_REFINE, "--refine", help="Three-axis refinement passes (encode → decode every voxel slice along z, y, x)."),
    seed: int = typer.Option(0, "--seed", help="Seed of volume 0; volume i uses seed + i."),
    sampler: str = typer.Option("ddim", "--sampler", help="ddim (deterministic, few-step), dpm2m (DPM-Solver++(2M): deterministic, second order) or ancestral (DDPM; also accepted as ddpm)."),
    average_axes: bool = typer.Option(False, "--average-axes", help="Average the three orientations' predictions at every step (3x cost)."),
    slice_coupling: bool = typer.Option(True, "--slice-coupling/--no-slice-coupling", help="Couple slices across the slicing axis so correlation is isotropic (--no-slice-coupling: the paper's plain L-MPDD)."),
    coupling_stop: Optional[float] = typer.Option(None, "--coupling-stop", help="Couple slices only at timesteps t >= F·T, F in [0, 1] (default: the value calibrated for the model at training, else 0 = every step).", show_default=False),
    match_latent_mean: bool = typer.Option(RECONSTRUCT_MATCH_LATENT_MEAN, "--match-latent-mean/--no-match-latent-mean", help="Shift every L-MPDD step's clean estimate, per latent channel, to the 2D prior's mean at that step (undoes L-MPDD's drift against minority phases; --no-match-latent-mean: L-MPDD without it)."),
    periodic: bool = typer.Option(False, "--periodic", help="Periodic boundaries (volume wraps around)."),
    match_vf: Optional[bool] = typer.Option(None, "--match-vf/--no-match-vf", help="Move phase decision thresholds to the training images' volume fractions (default; --no-match-vf: keep L-MPDD's own, biased against minority phases).", show_default=False),
    vf: Optional[List[float]] = typer.Option(None, "--vf", help="Target volume fraction per phase (repeat once per phase, each in (0, 1), summing to 1); matches to these instead of the training fractions; not with --no-match-vf."),
    polish: int = typer.Option(0, "--polish", help="Opt-in: at most N label-polish iterations moving interface voxels toward the training S2 and slice perimeter stored in the model (0: off; fractions held, no phase split; it can narrow pore throats: check transport in coarse rocks)."),
    init: str = typer.Option("noise", "--init", help=INIT_HELP),
    init_start: float = typer.Option(GRAINS_START, "--init-start", help=INIT_START_HELP),
    grain_roughness: str = typer.Option("auto", "--grain-roughness", help=GRAIN_ROUGHNESS_HELP),
    grain_phase: Optional[int] = typer.Option(None, "--grain-phase", help=GRAIN_PHASE_HELP, show_default=False),
    smooth: bool = typer.Option(RECONSTRUCT_SMOOTH, "--smooth/--no-smooth", help="Blur the probabilities before labelling so the slices have the training images' boundary length per area (removes specks; --no-smooth: label the refined probabilities as they are)."),
    memory_mb: int = typer.Option(1024, "--memory-mb", help="Activation memory per batched network call, MiB."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    out: Path = typer.Option(Path("reconstructions"), "--out", help="Output folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing volume files."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    report: bool = typer.Option(False, "--report", help="Also evaluate the volumes against the model's training statistics: OUT/metrics.json and OUT/report.html."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: $OMP_NUM_THREADS if set, else free cores - 1; 1 for volumes up to 32^3)."),
) -> None:
    """Generate 3D volumes whose slices match the training images' statistics."""
    from microlad.cli._common import check_fractions, check_positive, grain_start_options, load_sharded, start_volume_command
    from microlad.cli._threads import check_threads
    from microlad.io import write_volume

    check_positive("-n", n)
    check_positive("--memory-mb", memory_mb, 16)
    check_positive("--polish", polish, 0)
    check_positive("--steps", steps)
    check_positive("--refine", refine, 0)
    check_threads(threads)
    from microlad.diffusion import canonical_sampler

    sampler = canonical_sampler(sampler)  # one-line InputError naming the accepted names
    if vf and match_vf is False:
        raise InputError("--vf sets the fractions to match; it cannot be combined with --no-match-vf")
    requested = roughness = grain_start_options(init, init_start, grain_roughness)
    if coupling_stop is not None and not 0.0 <= coupling_stop <= 1.0:
        raise InputError(f"--coupling-stop must be in [0, 1], got {coupling_stop}")
    path = start_volume_command(model_dir, shape, out, threads)

    import torch

    from microlad.reconstruct import reconstruct as run
    from microlad.reconstruct import training_fractions

    job = load_sharded(path, shape, n, device)
    model, dims, mine, rank, world, t_load = job.model, job.dims, job.mine, job.rank, job.world, job.load_seconds
    if vf:
        vf = check_fractions(vf, model.vae.config.n_phases)
    paths = {i: out / f"volume_{i:03d}.tif" for i in mine}
    if not overwrite:
        for p in paths.values():
            if p.exists() or p.with_suffix(".json").exists():
                raise InputError(f"{p}: already exists (pass --overwrite to replace it)")
    if report:
        from microlad.cli.evaluate import check_report_outputs

        check_report_outputs(out, overwrite)
    torch.manual_seed(seed)
    # --match-vf (default) matches when the model stores training fractions (every trained model does)
    target = list(vf) if vf else (training_fractions(model) if match_vf is not False else None)
    match = target if target is not None else False  # also False when the model stores no fractions
    stop = model.coupling_stop if coupling_stop is None else coupling_stop
    written = []
    if init == "grains" and roughness == "auto":
        typer.echo("calibrating the grain roughness on trial reconstructions (once per run) ...")
    for i in mine:
        rec = run(
            model, dims, n=1, seed=seed + i, steps=steps, sampler=sampler, refine=refine,  # type: ignore[arg-type]
            average_axes=average_axes, slice_coupling=slice_coupling, coupling_stop=stop, periodic=periodic,
            memory_budget=memory_mb << 20, progress=progress, match_vf=match, smooth=smooth, match_latent_mean=match_latent_mean, polish=polish,
            init=None if init == "noise" else init, init_start=init_start, grain_phase=grain_phase, grain_roughness=roughness,
        )[0]
        if "grain_calibration" in rec.timings:
            typer.echo(f"grain roughness A = {rec.grain_roughness:.2f} voxels (calibrated in {rec.timings['grain_calibration']:.0f} s)")
        if rec.grain_roughness is not None:  # calibrated once ("auto"), then the same A for every volume
            roughness = rec.grain_roughness
        meta = {
            "model": str(model_dir),
            "seed": rec.seed,
            "index": i,
            "command": "microlad reconstruct",
            "config": {"shape": list(dims), "steps": steps, "sampler": sampler, "refine": refine,
                       "average_axes": average_axes, "slice_coupling": slice_coupling, "coupling_stop": stop, "match_latent_mean": match_latent_mean, "periodic": periodic, "device": str(device),
                       "match_vf": match, "smooth": smooth, "smoothing_sigma": [round(float(v), 4) for v in rec.smoothing_sigma],
                       "polish": polish, **({"polish_stats": rec.polish} if rec.polish else {}),
                       "init": init, **({"init_start": init_start, "grain_phase": grain_phase, "grain_roughness": requested,
                                                 "grain_roughness_used": round(float(rec.grain_roughness), 4)} if init == "grains" else {})},
            "timings_s": {k: round(v, 3) for k, v in rec.timings.items()} | {"model_load": round(t_load, 3)},
            "volume_fraction": _vf_by_axis(rec.labels, model.vae.config.n_phases),
        }
        written.append(write_volume(paths[i], rec.labels, grey_values=tuple(model.grey_values), metadata=meta, overwrite=overwrite))
        got = meta["volume_fraction"]["total"]
        typer.echo(f"volume {i:03d} (seed {rec.seed}): {rec.timings['total']:.1f} s, VF " + " ".join(f"{p}:{v:.3f}" for p, v in got.items()) + f" -> {paths[i]}")
    who = f"rank {rank}/{world}: " if world > 1 else ""
    typer.echo(f"{who}wrote {len(written)} volume(s) with JSON sidecars to {out}/")
    if report:
        from microlad.cli.evaluate import report_reconstructions

        report_reconstructions(written, model=model, model_name=model_dir, out=out, overwrite=overwrite, world=world)


def _vf_by_axis(labels: np.ndarray, n_phases: int) -> dict:
    """Per-phase VF overall and, per axis, the mean and std of the slice VFs normal to it."""
    from microlad.descriptors import volume_fraction

    res = {"total": {str(p): round(float(v), 6) for p, v in enumerate(volume_fraction(labels, n_phases=n_phases))}}
    for a, name in enumerate("zyx"):
        counts = np.stack([(labels == p).mean(axis=tuple(j for j in range(3) if j != a)) for p in range(n_phases)])
        res[name] = {str(p): {"mean": round(float(c.mean()), 6), "std": round(float(c.std()), 6)} for p, c in enumerate(counts)}
    return res
