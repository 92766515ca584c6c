"""``microlad models``: the bundled models (or one model directory) with their phases,
training images and training statistics."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer


def models(
    model: Optional[str] = typer.Argument(None, help="A model directory or bundled name to describe (default: list the bundled models)."),
) -> None:
    """List the bundled models (phases, training images, statistics), or describe one model."""
    from microlad.bundled import ASSETS, bundled_models, resolve_model

    if model is not None:
        typer.echo(describe_model(resolve_model(model), name=model))
        return
    names = bundled_models()
    if not names:
        typer.echo("no bundled models in this installation")
        return
    typer.echo(f"{len(names)} bundled model(s); pass the name wherever a command takes MODEL:\n")
    typer.echo("\n\n".join(describe_model(ASSETS / name, name=name) for name in names))


def describe_model(directory: Path, *, name: str) -> str:
    """A few lines on the model in ``directory``: phases, training data, statistics, provenance."""
    from microlad.model import load_model

    m = load_model(directory)
    stats = m.training_stats
    report = stats.report
    head = f"{name}: {m.n_phases} phases, trained on {m.patch_size}x{m.patch_size} patches"
    title = _source_title(directory)
    lines = [head + (f" — {title}" if title else "")]
    if report is not None and report.inputs:
        lines.append("  training images: " + ", ".join(Path(p).name for p in report.inputs))
    if report is not None and report.steps:
        steps = ", ".join(f"{k.upper()} {v}" for k, v in report.steps.items())
        total = (report.time_s or {}).get("total")
        lines.append(f"  training: {steps} steps" + (f", {total / 60:.1f} min on {report.device}" if total else ""))
    vf = stats.fractions() or (None,) * m.n_phases
    ssa = stats.specific_surface_area or (None,) * m.n_phases
    lines.append("  phase   grey  VF (training)  SSA [1/px]")
    for p in range(m.n_phases):
        lines.append(f"  {p:5d} {m.grey_values[p]:6g}  {_fmt(vf[p], 13, 4)}  {_fmt(ssa[p], 10, 5)}")
    score = report.vae_reconstruction if report is not None else None
    if score is not None and score.pixel_accuracy is not None:
        per = score.perimeter_error
        loss = ("; round-trip slice perimeter per phase " + ", ".join("n/a" if e is None else f"{100 * e:+.1f} %" for e in per)
                if per else "")
        rounds = f" after {len(report.vae_rounds)} VAE round(s)" if report.vae_rounds else ""
        lines.append(f"  VAE held-out pixel accuracy {score.pixel_accuracy:.4f}{loss}{rounds}")
    if (m.config.reconstruct or {}).get("coupling_stop") is not None:
        from microlad.reconstruct.calibration import describe_window

        lines.append(f"  L-MPDD slice coupling: {describe_window(m.coupling_stop)} (calibrated on the training S2)")
    if (m.config.prior_sampler or {}).get("sampler") is not None:
        sampler, steps = m.prior_sampler
        lines.append(f"  2D prior sampler: {sampler}, {steps} steps (calibrated on the training perimeter and S2)")
    licence = _source_licence(directory)
    if licence:
        lines.append(f"  weights licence: {licence}")
    lines.append(f"  directory: {directory}")
    return "\n".join(lines)


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def _source_title(directory: Path) -> str | None:
    """The heading of SOURCE.md after the model name (``# name: title``), if any."""
    source = directory / "SOURCE.md"
    if not source.is_file():
        return None
    first = source.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
    return first.split(":", 1)[1].strip() if ":" in first else first


def _source_licence(directory: Path) -> str | None:
    """The text after '**Licence of the weights**:' in SOURCE.md (to the end of its line)."""
    source = directory / "SOURCE.md"
    if not source.is_file():
        return None
    match = re.search(r"\*\*Licence of the weights\*\*:\s*([^\n]+)", source.read_text(encoding="utf-8"))
    return match.group(1).strip().rstrip(".") if match else None
