"""Models shipped inside the package (trained on real, openly licensed micrographs).

Each lives in ``microlad/assets/models/NAME/`` with ``config.json``, weights as
``*.safetensors`` and ``SOURCE.md`` (training data provenance and licence).
"""
from __future__ import annotations

from pathlib import Path

from microlad.errors import CheckpointError

ASSETS = Path(__file__).resolve().parent / "assets" / "models"
DEFAULT_MODEL = "sofc-anode"


def bundled_models() -> list[str]:
    """Names of the bundled models."""
    if not ASSETS.is_dir():
        return []
    return sorted(p.name for p in ASSETS.iterdir() if (p / "config.json").is_file())


def resolve_model(name_or_dir: str | Path) -> Path:
    """A model directory path, or the directory of the bundled model with that name."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    if str(name_or_dir) in bundled_models():
        return ASSETS / str(name_or_dir)
    names = ", ".join(bundled_models()) or "none"
    raise CheckpointError(f"{name_or_dir}: no such model directory, and not a bundled model (bundled: {names})")
