"""Checks shared by the commands, run before any work (one-line errors, exit 2)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from microlad.errors import CheckpointError, InputError

CHECKPOINT_FILES = ("train_state.json", "train_state.safetensors")


def model_path(name_or_dir: str) -> Path:
    """A model directory (or bundled model name) that holds a finished model.

    A directory with a training checkpoint but no ``config.json`` is a run that was
    stopped before it finished: the error says how to finish it.
    """
    from microlad.bundled import resolve_model

    path = resolve_model(name_or_dir)
    if path.is_dir() and not (path / "config.json").is_file() and any((path / f).is_file() for f in CHECKPOINT_FILES):
        raise CheckpointError(
            f"{path}: training did not finish (a checkpoint but no config.json); finish it with "
            f"`microlad train IMAGES... --out {path} --resume`"
        )
    return path


def check_fractions(vf: Sequence[float], n_phases: int, *, tol: float = 1e-3) -> list[float]:
    """``--vf``: one fraction per phase, each in (0, 1), summing to 1 (within ``tol``)."""
    values = [float(v) for v in vf]
    if len(values) != n_phases:
        raise InputError(f"--vf needs one value per phase ({n_phases}), got {len(values)}: {values}")
    if not all(math.isfinite(v) and 0.0 < v < 1.0 for v in values):
        raise InputError(f"--vf values must lie strictly between 0 and 1, got {values}")
    total = sum(values)
    if abs(total - 1.0) > tol:
        raise InputError(f"--vf values must sum to 1, got {values} (sum {total:g})")
    return values


def check_positive(name: str, value: int, minimum: int = 1) -> None:
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")


def start_volume_command(model_dir: str, shape: Sequence[int], out: Path, threads: int | None) -> Path:
    """The checks every volume-writing command (reconstruct, generate) makes before any work:
    positive sides, a creatable ``out``, a finished model; then the thread policy. Returns the
    model directory."""
    from microlad.cli._threads import apply_torch_threads
    from microlad.io import check_output_dir

    if min(shape) < 1:
        raise InputError(f"--shape sides must be positive, got {tuple(shape)}")
    check_output_dir(out)
    path = model_path(model_dir)
    apply_torch_threads(threads, small=math.prod(int(s) for s in shape) <= 32**3)
    return path


@dataclass(frozen=True)
class ShardedModel:
    """A loaded model and this process's share of ``n`` volumes under torchrun
    (RANK / WORLD_SIZE; rank r makes volumes i ≡ r mod WORLD_SIZE)."""

    model: Any
    dims: tuple[int, int, int]
    mine: list[int]
    rank: int
    world: int
    load_seconds: float


def load_sharded(path: Path, shape: Sequence[int], n: int, device: str) -> ShardedModel:
    import os
    import time

    from microlad.device import resolve_device
    from microlad.model import load_model
    from microlad.reconstruct import check_shape

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    t0 = time.perf_counter()
    model = load_model(path, device=resolve_device(device))
    t_load = time.perf_counter() - t0
    dims = check_shape(shape, model.vae.config.downsample_factor)
    return ShardedModel(model, dims, [i for i in range(n) if i % world == rank], rank, world, t_load)


# help of the grain-start options, shared by reconstruct and generate
INIT_HELP = "Start of L-MPDD: noise (default) or grains: a pack of overlapping (rough) grains built from the training fraction and slice perimeter (two-phase granular media: sandstones, sintered powders), noised to --init-start and denoised from there; keeps much of the pack's connected pore space (Berea 128³: see BENCHMARKS.md, 'A grain-pack start')."
INIT_START_HELP = "With --init grains: noise level F in (0, 1] (fraction of the training timesteps) the pack is noised to; lower keeps more of its connectivity, higher gives slices closer to the training images'."
GRAIN_ROUGHNESS_HELP = "With --init grains: amplitude A in voxels of a random perturbation of the grains' surfaces (0: smooth spheres), or auto (default): the smallest A at which trial reconstructions (cubes of the volume's smallest side, at most 128³; up to 4 of them) have slices as rough as the training images' before the smoothing; calibrated once per run (Berea 128³: about 3 min at 1 thread)."
GRAIN_PHASE_HELP = "With --init grains: the phase that forms the grains (default: the phase with the larger training fraction)."


def grain_start_options(init: str, init_start: float, grain_roughness: str) -> float | str:
    """Check --init (noise or grains), --init-start and --grain-roughness ("auto" or a finite
    number >= 0) with one-line errors; returns the roughness as the API takes it."""
    if init not in ("noise", "grains"):
        raise InputError(f"--init must be noise or grains, got {init!r}")
    if init == "grains" and not 0.0 < init_start <= 1.0:
        raise InputError(f"--init-start must be in (0, 1], got {init_start}")
    if grain_roughness.strip().lower() == "auto":
        return "auto"
    try:
        a = float(grain_roughness)
    except ValueError:
        raise InputError(f"--grain-roughness must be auto or a number >= 0, got {grain_roughness!r}") from None
    if not 0 <= a < float("inf"):
        raise InputError(f"--grain-roughness must be a finite number >= 0, got {grain_roughness}")
    return a
