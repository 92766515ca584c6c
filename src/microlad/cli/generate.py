"""``microlad generate``: 3D volumes steered toward target descriptors and properties (SDS).

Targets are validated against the model before any work (one ``error:`` line, exit 2,
nothing written). Each volume i (seed ``seed + i``) is written as ``volume_{i:03d}.tif``
with a JSON sidecar (targets, achieved values, seed, weights, timings) and a per-step CSV
``volume_{i:03d}.steps.csv`` of every term. Under ``torchrun`` the volumes are sharded
over ranks as in ``microlad reconstruct``: rank r makes volumes i ≡ r (mod WORLD_SIZE).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import typer

from microlad.cli._common import GRAIN_PHASE_HELP, GRAIN_ROUGHNESS_HELP, INIT_HELP, INIT_START_HELP
from microlad.defaults import GRAINS_START, GUIDANCE_POLISH, GUIDANCE_STEPS, RECONSTRUCT_REFINE, RECONSTRUCT_SMOOTH, RECONSTRUCT_STEPS
from microlad.errors import InputError


def generate(
    model_dir: str = typer.Argument(..., help="Model directory written by `microlad train`, or a bundled model name (e.g. sofc-anode)."),
    shape: Tuple[int, int, int] = typer.Option(..., "--shape", help="Volume size D H W in voxels (multiples of the VAE factor).", show_default=False),
    target: List[str] = typer.Option(..., "--target", help="KIND[:PHASE][@AXIS]=VALUE, repeatable: vf:1=0.40, sa:0=0.08, s2=train (or s2=IMAGE_FILE), deff:0@x=0.05, tau:0@z=5.0, deff2d:0@x=0.1.", show_default=False),
    weight: Optional[List[str]] = typer.Option(None, "--weight", help="NAME=W, repeatable: a target name (vf:1), a kind (vf) or 'prior'; default 1."),
    steps: int = typer.Option(GUIDANCE_STEPS, "--steps", help="Guidance (optimisation) steps per volume."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Extend the run up to this many steps while a surface-area, D_eff or tau target misses its tolerance (default 2 x --steps; = --steps: never)."),
    n: int = typer.Option(1, "-n", "--n", help="Number of volumes."),
    seed: int = typer.Option(0, "--seed", help="Seed of volume 0; volume i uses seed + i."),
    lr: float = typer.Option(0.05, "--lr", help="Adam step size on the normalised latent."),
    property_every: int = typer.Option(5, "--property-every", help="Evaluate 3D transport targets every k steps."),
    calibrate_every: Optional[int] = typer.Option(None, "--calibrate-every", help="Re-measure the finished volume every k steps (default steps/3; 0: only at the start)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Measure a candidate result every k steps, between calibrations too (default steps/12 for s2, sa targets without a transport target; else as --calibrate-every)."),
    lmpdd_steps: int = typer.Option(RECONSTRUCT_STEPS, "--lmpdd-steps", help="DDIM steps of the starting L-MPDD sample."),
    refine: int = typer.Option(RECONSTRUCT_REFINE, "--refine", help="Three-axis refinement passes in the finish."),
    exact_vf: bool = typer.Option(True, "--exact-vf/--no-exact-vf", help="After the last step, move the decision thresholds so vf targets are met exactly (the sidecar keeps what guidance reached before, 'before_settle'); --no-exact-vf: leave them as guidance left them."),
    polish: int = typer.Option(GUIDANCE_POLISH, "--polish", help="With an s2 target (no sa/transport target): at most this many label-polish iterations moving interface voxels toward the S2 target (0: none)."),
    smooth: bool = typer.Option(RECONSTRUCT_SMOOTH, "--smooth/--no-smooth", help="Perimeter-calibrated smoothing in the finish, as reconstruct does (its width is set on the start volume and kept; never with a surface-area target)."),
    periodic: bool = typer.Option(False, "--periodic", help="Periodic boundaries (volume wraps around)."),
    memory_mb: int = typer.Option(1024, "--memory-mb", help="Activation memory per batched network call, MiB."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    out: Path = typer.Option(Path("generated"), "--out", help="Output folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing volume files."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars (with each target's current value)."),
    report: bool = typer.Option(False, "--report", help="Also evaluate the volumes against the model's training statistics: OUT/metrics.json and OUT/report.html."),
    init: str = typer.Option("noise", "--init", help="The start: as reconstruct's. " + INIT_HELP),
    init_start: float = typer.Option(GRAINS_START, "--init-start", help=INIT_START_HELP),
    grain_roughness: str = typer.Option("auto", "--grain-roughness", help=GRAIN_ROUGHNESS_HELP),
    grain_phase: Optional[int] = typer.Option(None, "--grain-phase", help=GRAIN_PHASE_HELP, show_default=False),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: $OMP_NUM_THREADS if set, else free cores - 1; 1 for volumes up to 32^3)."),
) -> None:
    """Generate 3D volumes steered toward targets while the 2D prior keeps slices realistic."""
    from microlad.cli._common import check_positive, grain_start_options, load_sharded, start_volume_command
    from microlad.cli._threads import check_threads

    check_positive("-n", n)
    check_positive("--steps", steps)
    check_positive("--lmpdd-steps", lmpdd_steps)
    if max_steps is not None and max_steps < steps:
        raise InputError(f"--max-steps ({max_steps}) must be at least --steps ({steps})")
    check_positive("--refine", refine, 0)
    check_positive("--property-every", property_every)
    check_positive("--polish", polish, 0)
    check_positive("--memory-mb", memory_mb, 16)
    check_threads(threads)
    roughness = grain_start_options(init, init_start, grain_roughness)
    path = start_volume_command(model_dir, shape, out, threads)

    from microlad.guidance import generate as run
    from microlad.guidance import prepare

    job = load_sharded(path, shape, n, device)
    model, dims, mine, rank, world, t_load = job.model, job.dims, job.mine, job.rank, job.world, job.load_seconds
    parsed, _ = prepare(model, target, weight)  # every target and weight checked before any work
    hint = free_fraction_hint(parsed)
    if hint and rank == 0:
        typer.echo(hint)
    paths = {i: out / f"volume_{i:03d}.tif" for i in mine}
    if not overwrite:
        for p in paths.values():
            for q in guided_outputs(p):
                if q.exists():
                    raise InputError(f"{q}: already exists (pass --overwrite to replace it)")
    if report:
        from microlad.cli.evaluate import check_report_outputs

        check_report_outputs(out, overwrite)

    def write(i: int, res) -> None:
        write_guided(paths[i], res, model, model_name=model_dir, index=i, device=device, overwrite=overwrite,
                     extra_timings={"model_load": round(t_load, 3)})
        fr = getattr(res, "phase_fractions", {})
        moved = (f"; VF {' '.join(f'{p}:{a:.3f}->{b:.3f}' for p, (a, b) in enumerate(zip(fr['start'], fr['final'])))}"
                 if fr.get("start") and fr.get("final") else "")
        typer.echo(f"volume {i:03d} (seed {res.seed}): {res.timings['total']:.1f} s; {res.summary()}{moved} -> {paths[i]}")

    run(
        model, dims, target, n=n, seed=seed, steps=steps, max_steps=max_steps, weights=weight, lr=lr, property_every=property_every,
        calibrate_every=calibrate_every, checkpoint_every=checkpoint_every, lmpdd_steps=lmpdd_steps, refine=refine, smooth=smooth, exact_vf=exact_vf, polish=polish, periodic=periodic,
        memory_budget=memory_mb << 20, progress=progress, indices=mine, on_volume=write,
        init=None if init == "noise" else init, init_start=init_start, grain_phase=grain_phase, grain_roughness=roughness,
    )
    who = f"rank {rank}/{world}: " if world > 1 else ""
    typer.echo(f"{who}wrote {len(mine)} volume(s) with JSON sidecars and per-step CSVs to {out}/")
    if report:
        from microlad.cli.evaluate import report_reconstructions

        report_reconstructions([paths[i] for i in mine], model=model, model_name=model_dir, out=out, overwrite=overwrite, world=world)


def guided_outputs(path: Path) -> tuple[Path, Path, Path]:
    """The files one guided volume writes: the TIFF, its JSON sidecar and the per-step CSV."""
    return path, path.with_suffix(".json"), path.with_suffix(".steps.csv")


def free_fraction_hint(targets) -> str:
    """A note when a transport target's phase has no ``vf`` target: guidance starts from an
    unmatched volume (L-MPDD shrinks minority phases), so that fraction is free to move
    (measured on Berea: τ alone ended at a pore fraction of 0.15 against the rock's 0.20)."""
    from microlad.guidance.targets import TRANSPORT_KINDS

    pinned = {t.phase for t in targets if t.kind == "vf"}
    free = sorted({t.phase for t in targets if t.kind in TRANSPORT_KINDS and t.phase not in pinned})
    if not free:
        return ""
    pins = " ".join(f"--target vf:{p}=FRACTION" for p in free)
    return (f"note: no vf target for phase(s) {', '.join(map(str, free))} of the transport target(s): their fractions "
            f"are free to move (printed as VF start->final); to keep a known porosity add {pins}")


def write_guided(path: Path, res, model, *, model_name: str, index: int = 0, device: str = "cpu", overwrite: bool = False,
                 command: str = "microlad generate", extra_timings: dict | None = None) -> Path:
    """Write a :class:`~microlad.guidance.GuidanceResult`: TIFF + JSON sidecar (targets, start and
    achieved values, seed, weights, timings) + per-step CSV of every term; atomic."""
    from microlad.guidance import log_csv
    from microlad.io import atomic_path, write_volume

    csv = path.with_suffix(".steps.csv")
    meta = {
        "model": str(model_name),
        "seed": res.seed,
        "index": index,
        "command": command,
        "config": {"shape": list(res.labels.shape), **res.config, "device": str(device),
                   "smoothing_sigma": [round(float(v), 4) for v in getattr(res, "smoothing_sigma", ())],
                   "steps_run": int(getattr(res, "steps_run", 0)), "selected_step": int(getattr(res, "selected_step", 0))},
        "targets": [t.to_dict() for t in res.terms],
        "phase_fractions": {k: [round(float(v), 5) for v in vals] for k, vals in getattr(res, "phase_fractions", {}).items()},
        "polish": dict(getattr(res, "polish", {})),
        "timings_s": {k: round(v, 3) for k, v in res.timings.items()} | (extra_timings or {}),
        "steps_csv": csv.name,
    }
    with atomic_path(csv, overwrite=overwrite) as tmp:
        tmp.write_text(log_csv(res.log))
    return write_volume(path, res.labels, grey_values=tuple(model.grey_values), metadata=meta, overwrite=overwrite)
