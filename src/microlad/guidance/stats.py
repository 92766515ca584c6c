"""The one place guidance reads a model's training statistics.

Everything guidance needs from training (the S2 target curves, the training volume
fractions) goes through :func:`training_reference`, on top of the typed
:class:`~microlad.metadata.TrainingStats` contract.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microlad.metadata import TrainingStats

__all__ = ["TrainingReference", "training_reference"]


@dataclass(frozen=True)
class TrainingReference:
    """What the model stores about its training images.

    s2 : (P, K) mean radial S2 of the training patches (lag 0..K-1 pixels), or None.
    s2_periodic : whether that S2 is the periodic (FFT wrap-around) one.
    volume_fraction : (P,) training volume fractions (pixel-weighted over the images when
        stored, else the patch mean), or None.
    """

    s2: np.ndarray | None
    s2_periodic: bool
    volume_fraction: np.ndarray | None


def training_reference(model) -> TrainingReference:
    """Read :class:`TrainingReference` from ``model.training_stats`` (missing entries: None)."""
    stats = TrainingStats.from_dict(getattr(model, "training_stats", None))
    vf = stats.fractions()
    return TrainingReference(
        s2=None if stats.s2_radial_mean is None else np.asarray(stats.s2_radial_mean, dtype=np.float64),
        s2_periodic=bool(stats.s2_periodic),
        volume_fraction=None if vf is None else np.asarray(vf, dtype=np.float64),
    )
