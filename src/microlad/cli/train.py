"""``microlad train``: fit the VAE and the latent diffusion model on segmented images.

Runs the same under ``torchrun --nproc_per_node=N -m microlad train ...`` (DDP; rank 0
writes the model and prints the summary).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, List, Optional, Sequence

import typer

from microlad.errors import InputError
from microlad.training._options import (
    DEFAULT_BATCH,
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_LDM_STEPS,
    DEFAULT_PATCH,
    DEFAULT_VAE_STEPS,
)

_CONFIG_KEYS = ("vae_config", "unet_config", "schedule", "options")


def _read_config(path: Path, n_phases: int) -> dict[str, Any]:
    """Parse the ``--config`` JSON into config objects (n_phases / channels filled in)."""
    from microlad.diffusion import DDPMSchedule
    from microlad.models import UNetConfig, VAEConfig
    from microlad.training import TrainOptions

    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or set(raw) - set(_CONFIG_KEYS):
        extra = sorted(set(raw) - set(_CONFIG_KEYS)) if isinstance(raw, dict) else raw
        raise InputError(f"{path}: unknown keys {extra}; allowed: {', '.join(_CONFIG_KEYS)}")
    out: dict[str, Any] = {}
    if "vae_config" in raw:
        out["vae_config"] = VAEConfig.from_dict({"n_phases": n_phases, **raw["vae_config"]})
    if "unet_config" in raw:
        channels = out["vae_config"].latent_channels if "vae_config" in out else VAEConfig(n_phases=n_phases).latent_channels
        out["unet_config"] = UNetConfig.from_dict({"in_channels": channels, **raw["unet_config"]})
    if "schedule" in raw:
        out["schedule"] = DDPMSchedule.from_dict(raw["schedule"])
    if "options" in raw:
        out["options"] = TrainOptions.from_dict(raw["options"])
    return out


def _resume_note(out: Path) -> str:
    """Where ``--resume`` continues from (the checkpoint's stage and step counters), or
    that there is nothing to resume yet."""
    from microlad.training._checkpoint import STATE_JSON, STATE_TENSORS, has_train_state

    if not has_train_state(out):
        return f"resume: no checkpoint in {out} yet; starting a fresh run"
    state: dict[str, Any] = {}
    try:  # the copy in the safetensors header is authoritative; the JSON is a fallback
        from safetensors import safe_open

        with safe_open(str(out / STATE_TENSORS), framework="pt") as f:
            state = json.loads((f.metadata() or {}).get("microlad_train_state", "{}"))
    except Exception:  # noqa: BLE001 - a damaged checkpoint: training reports it properly
        try:
            state = json.loads((out / STATE_JSON).read_text())
        except (OSError, ValueError):
            state = {}
    run = state.get("run", {})
    if not state:
        return f"resume: checkpoint in {out}"
    return (f"resume: from {out / STATE_TENSORS} (stage {state.get('stage', '?')}, VAE step {state.get('vae_step', '?')}/"
            f"{run.get('vae_steps', '?')}, LDM step {state.get('ldm_step', '?')}/{run.get('ldm_steps', '?')})")


def _num(value: float | None) -> float:
    return float("nan") if value is None else value


def _fmt(values: Sequence[Any] | None) -> str:
    if not values:
        return "n/a"
    return "[" + ", ".join("n/a" if v is None else f"{v:.3f}" for v in values) + "]"


def train(
    images: List[Path] = typer.Argument(..., help="Segmented 2D images or 3D volumes (.tif, .png, .npy, .npz); 3D volumes give slices along all axes.", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write.", show_default=False),
    patch: Optional[int] = typer.Option(None, "--patch", help=f"Training patch size in pixels (default {DEFAULT_PATCH})."),
    vae_steps: Optional[int] = typer.Option(None, "--vae-steps", help=f"VAE training steps per round (default {DEFAULT_VAE_STEPS})."),
    vae_rounds: Optional[int] = typer.Option(
        None, "--vae-rounds",
        help="Most VAE rounds of --vae-steps each (default 4). Another round follows only while the held-out "
             "round trip loses more than 3 %% of some phase's slice perimeter and the last round reduced that loss; "
             "1 trains exactly --vae-steps."),
    ldm_steps: Optional[int] = typer.Option(None, "--ldm-steps", help=f"Latent diffusion training steps (default {DEFAULT_LDM_STEPS})."),
    batch: Optional[int] = typer.Option(None, "--batch", help=f"Global batch size, split over torchrun processes (default {DEFAULT_BATCH})."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 0)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in a non-empty --out."),
    no_augment: bool = typer.Option(False, "--no-augment", help="No rotations/reflections of patches (anisotropic materials)."),
    key: Optional[str] = typer.Option(None, "--key", help="Array name inside .npz inputs."),
    checkpoint_every: int = typer.Option(DEFAULT_CHECKPOINT_EVERY, "--checkpoint-every", help="Steps between checkpoints."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON with any of vae_config, unet_config, schedule, options (advanced)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: $OMP_NUM_THREADS if set, else free cores - 1)."),
) -> None:
    """Train a MicroLad model (categorical VAE + latent DDPM) on 2D micrographs."""
    from microlad.cli._common import check_positive
    from microlad.cli._threads import apply_torch_threads, check_threads
    from microlad.io import check_output_dir

    check_threads(threads)
    for name, value in (("--patch", patch), ("--vae-steps", vae_steps), ("--vae-rounds", vae_rounds), ("--ldm-steps", ldm_steps),
                        ("--batch", batch)):
        if value is not None:
            check_positive(name, value)
    check_positive("--checkpoint-every", checkpoint_every)
    if resume and overwrite:
        raise InputError("--resume continues the run in --out and --overwrite replaces it; pass one of them")
    check_output_dir(out)
    if config is not None and not config.is_file():
        raise InputError(f"{config}: no such config file")
    apply_torch_threads(threads)
    from microlad.data import as_label_images
    from microlad.io import read_image
    from microlad.reconstruct import training_fractions
    from microlad.training import TrainOptions
    from microlad.training import train as run

    segs = [read_image(p, key=key) for p in images]
    labels = as_label_images(segs)  # phase-count check before anything else
    extra = _read_config(config, labels.n_phases) if config is not None else {}
    if vae_rounds is not None:
        extra["options"] = dataclasses.replace(extra.get("options") or TrainOptions(), vae_rounds=vae_rounds)
    if resume and int(os.environ.get("RANK", "0")) == 0:
        typer.echo(_resume_note(out))
    model = run(
        segs, out, patch=patch, vae_steps=vae_steps, ldm_steps=ldm_steps, batch=batch, seed=seed,
        device=device, resume=resume, overwrite=overwrite, checkpoint_every=checkpoint_every,
        progress=progress, augment=False if no_augment else None, **extra,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return
    from microlad.metadata import ReconstructionScore, TrainingReport

    rep = model.training_stats.report or TrainingReport()
    vr = rep.vae_reconstruction or ReconstructionScore()
    losses = rep.final_losses or {}
    times = rep.time_s or {}
    steps = rep.steps or {}
    vae_l, ldm_l = losses.get("vae", {}), losses.get("ldm", {})
    typer.echo(f"model: {out} (config.json, vae.safetensors, unet_ema.safetensors; checkpoint train_state.safetensors/.json)")
    # whole-image fractions (what `reconstruct` matches); the patch mean over-weights image centres
    typer.echo(f"inputs: {', '.join(str(p) for p in images)}; {labels.n_phases} phases, volume fractions {_fmt(training_fractions(model))}")
    typer.echo(
        f"VAE: {steps.get('vae', 0)} steps, final loss {vae_l.get('loss', float('nan')):.4f} "
        f"(CE {vae_l.get('ce', float('nan')):.4f}, KL {vae_l.get('kl', float('nan')):.4f}); "
        f"held-out accuracy per phase {_fmt(vr.accuracy)}, pixel accuracy {_num(vr.pixel_accuracy):.4f}, "
        f"S2 error {_fmt(vr.s2_error)}"
    )
    if rep.vae_rounds:
        saved_opts = (model.config.training or {}).get("options", {})
        worst = ", ".join("n/a" if r.get("worst") is None else f"{100 * r['worst']:.1f} %" for r in rep.vae_rounds)
        typer.echo(f"VAE rounds: {len(rep.vae_rounds)} (largest perimeter loss of the held-out round trip after each: {worst}; "
                   f"tolerance {100 * saved_opts.get('vae_perimeter_tol', TrainOptions().vae_perimeter_tol):g} %)")
    typer.echo(f"LDM: {steps.get('ldm', 0)} steps, final loss {ldm_l.get('loss', float('nan')):.4f}")
    cal = (model.config.reconstruct or {}).get("coupling_calibration")
    if cal:
        errs = ", ".join(f"{k}: {100 * v:.1f} %" for k, v in cal["scores"].items())
        from microlad.reconstruct.calibration import describe_window

        typer.echo(f"coupling: {describe_window(model.coupling_stop)} (S2 error per window start F {errs}; {cal['seconds']:.0f} s)")
    pcal = (model.config.prior_sampler or {}).get("calibration")
    if pcal:
        sampler, steps = model.prior_sampler
        scores = ", ".join(f"{k} {v:.2f}" for k, v in pcal["scores"].items())
        typer.echo(f"2D prior sampler: {sampler}, {steps} steps (score per candidate, 1 = at the tolerance: {scores}; "
                   f"{pcal['seconds']:.0f} s)")
    typer.echo(
        f"time: VAE {times.get('vae', 0):.0f} s, statistics {times.get('stats', 0):.0f} s, "
        f"LDM {times.get('ldm', 0):.0f} s, total {times.get('total', 0):.0f} s on {rep.device or '?'}"
        + (f" x {rep.world_size} processes" if (rep.world_size or 1) > 1 else "")
    )
