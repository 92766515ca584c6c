"""``microlad demo``: the whole method end to end, offline, on a bundled model.

2D-trained model → (1) a 3D volume reconstructed with L-MPDD + refinement → (2) a volume
generated with SDS guidance toward a larger volume fraction of the minority phase and a 3D
transport target (1.5× the reconstructed volume's effective diffusivity of that phase along
x) → (3) both evaluated against the model's training statistics (``metrics.json`` and a
self-contained ``report.html`` each) → a side-by-side summary, where every file went, and
how long each part took. Falls back to a synthetic example if no bundled model is installed.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

VF_SHIFT = 0.08
"""How far the guided volume's fraction of the steered phase (the training images' minority
phase, e.g. the pores of a rock) is moved above the training fraction."""
DEFF_FACTOR = 1.5
"""Guided D_eff target along x, relative to the reconstructed volume's."""


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for the demo's files."),
    model: str = typer.Option("sofc-anode", "--model", help="Bundled model name or model directory."),
    size: int = typer.Option(64, "--size", help="Edge of the cubic volumes in voxels (multiple of 4)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (both volumes start from the same L-MPDD sample)."),
    guidance_steps: Optional[int] = typer.Option(None, "--guidance-steps", help="SDS steps of the guided volume (default: microlad generate's)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files from an earlier demo."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: $OMP_NUM_THREADS if set, else free cores - 1; 1 up to 32^3)."),
) -> None:
    """Reconstruct a 3D volume from a bundled 2D-trained model, steer a second one toward new targets, and report both."""
    from microlad.bundled import DEFAULT_MODEL, bundled_models
    from microlad.cli._common import check_positive, model_path
    from microlad.cli._threads import apply_torch_threads, check_threads
    from microlad.cli.evaluate import OUTPUTS
    from microlad.cli.generate import guided_outputs
    from microlad.defaults import GUIDANCE_STEPS
    from microlad.errors import InputError
    from microlad.io import check_output_dir

    check_threads(threads)
    check_output_dir(out)
    if model == DEFAULT_MODEL and DEFAULT_MODEL not in bundled_models():
        _synthetic_demo(out, seed, overwrite)
        return
    if size < 16 or size % 4:
        raise InputError(f"--size must be a multiple of 4 and at least 16, got {size}")
    steps = GUIDANCE_STEPS if guidance_steps is None else guidance_steps
    check_positive("--guidance-steps", steps)
    rec_dir, gen_dir = out / "reconstructed", out / "guided"
    planned = [rec_dir / "volume_000.tif", rec_dir / "volume_000.json", *guided_outputs(gen_dir / "volume_000.tif"),
               *(d / name for d in (rec_dir, gen_dir) for name in OUTPUTS)]
    for p in planned:
        if p.exists() and not overwrite:
            raise InputError(f"{p}: already exists (pass --overwrite to replace it)")
    path = model_path(model)
    apply_torch_threads(threads, small=size <= 32)
    _run(model, path, out, rec_dir, gen_dir, size, seed, steps, overwrite)


def _run(model_name: str, path: Path, out: Path, rec_dir: Path, gen_dir: Path, size: int, seed: int, steps: int,
         overwrite: bool) -> None:
    import torch

    from microlad.cli.evaluate import run_evaluation
    from microlad.cli.generate import write_guided
    from microlad.defaults import RECONSTRUCT_REFINE, RECONSTRUCT_STEPS
    from microlad.guidance import roundtrip_accuracy
    from microlad.io import write_volume
    from microlad.model import load_model
    from microlad.physics import solve_transport

    times: dict[str, float] = {}
    torch.manual_seed(seed)
    m = load_model(path)
    src = (path / "SOURCE.md").read_text().splitlines()[0].lstrip("# ") if (path / "SOURCE.md").exists() else str(path)
    typer.echo(f"model: {model_name} ({m.n_phases} phases, trained on 2D {m.patch_size}x{m.patch_size} patches) — {src}")
    shape = (size, size, size)

    typer.echo(f"\n[1/3] reconstructing one {size}^3 volume (L-MPDD, DDIM {RECONSTRUCT_STEPS} steps, "
               f"{RECONSTRUCT_REFINE} refinement pass(es), training volume fractions matched, seed {seed}) ...")
    t0 = time.perf_counter()
    rec = m.reconstruct(shape, n=1, seed=seed, steps=RECONSTRUCT_STEPS, refine=RECONSTRUCT_REFINE, match_vf=True, progress=True)[0]
    times["reconstruct"] = time.perf_counter() - t0
    rec_path = write_volume(rec_dir / "volume_000.tif", rec.labels, grey_values=tuple(m.grey_values), overwrite=overwrite,
                            metadata={"model": model_name, "seed": seed, "command": "microlad demo", "timings_s": rec.timings,
                                      "config": {"shape": list(shape), "steps": RECONSTRUCT_STEPS, "refine": RECONSTRUCT_REFINE, "match_vf": True}})
    typer.echo(f"      done in {times['reconstruct']:.1f} s -> {rec_path}")

    fractions = m.training_stats.fractions() or [float((rec.labels == q).mean()) for q in range(m.n_phases)]
    p = min(range(m.n_phases), key=lambda q: fractions[q])  # the minority phase
    vf_train = float(fractions[p])
    deff_rec = solve_transport(rec.labels, phase=p, axis=2).effective_diffusivity
    if deff_rec <= 0:  # the reconstruction does not percolate along x: ask for a small connected path instead
        deff_rec = 0.01
    targets = {f"vf:{p}": round(min(vf_train + VF_SHIFT, 0.95), 4), f"deff:{p}@x": round(min(DEFF_FACTOR * deff_rec, 1.0), 5)}
    spec = ", ".join(f"{k}={v}" for k, v in targets.items())
    typer.echo(f"\n[2/3] generating a guided {size}^3 volume from the same start (SDS, {steps} steps) toward {spec}\n"
               f"      (phase {p}: training VF {vf_train:.3f} + {VF_SHIFT}; D_eff along x {DEFF_FACTOR}x the reconstruction's "
               f"{deff_rec:.4f}) ...")
    t0 = time.perf_counter()
    res = m.generate(shape, targets, n=1, seed=seed, steps=steps, progress=True)[0]
    times["generate"] = time.perf_counter() - t0
    gen_path = write_guided(gen_dir / "volume_000.tif", res, m, model_name=model_name, overwrite=overwrite, command="microlad demo")
    typer.echo(f"      done in {times['generate']:.1f} s; {res.summary()} -> {gen_path}")

    typer.echo("\n[3/3] evaluating both volumes against the model's training statistics ...")
    evals = {}
    for name, vol, folder in (("reconstructed", rec_path, rec_dir), ("guided", gen_path, gen_dir)):
        t0 = time.perf_counter()
        typer.echo(f"{name}:")
        evals[name], _ = run_evaluation([vol], model=m, model_name=model_name, out=folder, overwrite=overwrite,
                                        command="microlad demo", table=False)
        times[f"evaluate {name}"] = time.perf_counter() - t0

    typer.echo("\nreconstructed vs guided (measured on the final labels):")
    typer.echo(f"{'quantity':<28} {'reconstructed':>14} {'guided':>10} {'target':>10}")
    deff_gen = solve_transport(res.labels, phase=p, axis=2).effective_diffusivity
    rows = [(f"VF phase {p}", float((rec.labels == p).mean()), float((res.labels == p).mean()), targets[f"vf:{p}"]),
            (f"D_eff phase {p} along x", deff_rec, deff_gen, targets[f"deff:{p}@x"])]
    for label, a, b, t in rows:
        typer.echo(f"{label:<28} {a:>14.4f} {b:>10.4f} {t:>10.4f}")
    s2 = [evals[k].s2_error for k in ("reconstructed", "guided")]
    typer.echo(f"{'S2 error (paper metric)':<28} {100 * s2[0]:>12.2f} % {100 * s2[1]:>8.2f} % {'-':>10}")
    realism = [roundtrip_accuracy(m.vae, lab)["mean"] for lab in (rec.labels, res.labels)]
    typer.echo(f"{'VAE round-trip accuracy':<28} {realism[0]:>14.4f} {realism[1]:>10.4f} {'-':>10}")
    total = sum(times.values())
    typer.echo("\ntime: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) + f"; total {total:.1f} s")
    typer.echo(f"wrote {rec_dir}/ (volume_000.tif + .json, metrics.json, report.html) and "
               f"{gen_dir}/ (volume_000.tif + .json + .steps.csv, metrics.json, report.html)")
    typer.echo(f"open {gen_dir / 'report.html'} and {rec_dir / 'report.html'} in a browser")


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
