"""The one place guidance reads a model's training statistics.

Everything guidance needs from training (the S2 target curves, the training volume
fractions) goes through :func:`training_reference`, on top of the typed
:class:`~microlad.metadata.TrainingStats` contract.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microlad.errors import InputError
from microlad.metadata import TrainingStats

__all__ = ["TrainingReference", "training_reference", "image_s2"]


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


def image_s2(path, grey_values, cutoff: int) -> np.ndarray:
    """Target S2 curves (P, K) of a segmented image or volume file, on the model's phases.

    The file's grey values must be among the model's ``grey_values`` (phase ``i`` of the
    model is grey value ``grey_values[i]``); a phase absent from the file gets S2 = 0.
    The estimator is the one the training statistics use: non-periodic radial S2 of 2D
    images (:func:`microlad.descriptors.s2_radial`), for a (Z, Y, X) volume averaged over
    the slices normal to z, y and x. ``cutoff`` (pixels) is capped at half the smallest
    slice side; K = cutoff + 1.
    """
    from microlad.descriptors import s2_radial, s2_slices
    from microlad.io import read_image

    seg = read_image(path)
    model_grey = [float(g) for g in grey_values]
    for g in seg.grey_values:
        if float(g) not in model_grey:
            raise InputError(
                f"{path}: grey value {g:g} is not one of the model's phases (grey values {', '.join(f'{v:g}' for v in model_grey)})"
            )
    lookup = np.array([model_grey.index(float(g)) for g in seg.grey_values], dtype=np.uint8)
    labels = lookup[seg.labels]  # the file's phase i -> the model's phase with the same grey value
    cut = min(int(cutoff), min(labels.shape) // 2)
    if labels.ndim == 2:
        return np.stack([s2_radial(labels, phase=p, cutoff=cut, periodic=False) for p in range(len(model_grey))])
    return np.stack([
        np.mean([s2_slices(labels, phase=p, axis=a, cutoff=cut, periodic=False) for a in range(3)], axis=0)
        for p in range(len(model_grey))
    ])
