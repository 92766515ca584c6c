"""The typed contract of a model directory's metadata (``config.json``).

Three frozen dataclasses replace the free-form dicts other modules used to read by key:

- :class:`TrainingStats`: per-phase statistics of the training data (stored under
  ``"training_stats"``), with the training :class:`TrainingReport` inside;
- :class:`ReconstructionScore`: how well the VAE reconstructs held-out patches;
- :class:`ModelConfig`: patch size, version and the training settings (``"config"``).

Each has ``to_dict()`` (JSON values, the layout of ``config.json``) and a tolerant
``from_dict()``: missing entries become ``None`` (model directories from older versions
still load), unknown entries are kept in ``extra`` and written back unchanged (newer
versions' entries survive a load/save round trip). Sequences become tuples, so a loaded
contract cannot be changed in place; ``np.asarray`` turns them back into arrays.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from microlad.errors import InputError

__all__ = ["ModelConfig", "ReconstructionScore", "TrainingReport", "TrainingStats"]

T = TypeVar("T")
C = TypeVar("C", bound="_Contract")


def _frozen(value: Any) -> Any:
    """JSON-like value with lists (and numpy arrays) turned into (nested) tuples."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): _frozen(v) for k, v in value.items()}
    return value


def _thawed(value: Any) -> Any:
    """Inverse of :func:`_frozen` for JSON: tuples → lists, contracts → dicts."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    return value


def _from_dict(cls: type[T], data: Mapping[str, Any] | None, nested: Mapping[str, Any] | None = None) -> T:
    """Build contract ``cls`` from ``data``: known fields by name, the rest into ``extra``."""
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise InputError(f"{cls.__name__} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in names:
            build = (nested or {}).get(key)
            kwargs[key] = None if value is None else build(value) if build else _frozen(value)
    extra = {str(k): _frozen(v) for k, v in data.items() if k not in names}
    return cls(**kwargs, extra=extra)  # type: ignore[call-arg]


def _to_dict(obj: Any) -> dict[str, Any]:
    """Fields that are set (not ``None``), in field order, then the ``extra`` entries."""
    out = {f.name: _thawed(getattr(obj, f.name)) for f in dataclasses.fields(obj)
           if f.name != "extra" and getattr(obj, f.name) is not None}
    out.update({k: _thawed(v) for k, v in obj.extra.items() if k not in out})
    return out


class _Contract:
    """``from_dict`` / ``to_dict`` shared by the contracts (see the module docstring)."""

    extra: Mapping[str, Any]

    @classmethod
    def _nested(cls) -> dict[str, Callable[[Any], Any]]:
        """Builders of the fields that are contracts themselves."""
        return {}

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None) -> C:
        """Tolerant inverse of :meth:`to_dict`: missing entries → ``None``, unknown → ``extra``."""
        return _from_dict(cls, data, cls._nested())  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (the layout of ``config.json``); unset (``None``) fields are left out."""
        return _to_dict(self)


@dataclass(frozen=True)
class ReconstructionScore(_Contract):
    """VAE encode → decode (posterior mean, argmax) on held-out label patches.

    ``accuracy``: per phase, the fraction of the phase's pixels reconstructed as that
    phase (``None`` for a phase absent from the patches); ``pixel_accuracy``: over all
    pixels; ``vf_error``: per phase, mean over patches of |VF_rec − VF_true|;
    ``s2_error``: per phase, |A_rec − A_true| / A_true with A the sum of the
    patch-averaged non-periodic radial S2 (paper §7); ``perimeter_error``: per phase, the
    signed relative error of the slice perimeter density L_A of the reconstructions
    (absent in models from older versions).
    """

    n_patches: int | None = None
    accuracy: tuple[float | None, ...] | None = None
    pixel_accuracy: float | None = None
    vf_error: tuple[float, ...] | None = None
    s2_error: tuple[float | None, ...] | None = None
    perimeter_error: tuple[float | None, ...] | None = None
    heldout_seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingReport(_Contract):
    """What a training run did: held-out VAE score, last logged losses, times, settings.

    ``final_losses``: per stage (``"vae"``, ``"ldm"``) the mean loss parts of the last log
    interval; ``time_s``: seconds per stage (``"vae"``, ``"stats"``, ``"ldm"``) and
    ``"total"``; ``steps``: optimizer steps per stage (``"vae"``, ``"ldm"``);
    ``vae_rounds``: the held-out check after each VAE round (``steps``,
    ``pixel_accuracy``, ``perimeter_error`` per phase, ``worst`` = the largest |error|,
    ``extend``: whether another round followed; see ``TrainOptions.vae_rounds``).
    """

    vae_reconstruction: ReconstructionScore | None = None
    vae_rounds: tuple[Mapping[str, Any], ...] | None = None
    final_losses: Mapping[str, Mapping[str, float]] | None = None
    time_s: Mapping[str, float] | None = None
    steps: Mapping[str, int] | None = None
    batch: int | None = None
    world_size: int | None = None
    device: str | None = None
    seed: int | None = None
    augment: bool | None = None
    inputs: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def _nested(cls) -> dict[str, Callable[[Any], Any]]:
        return {"vae_reconstruction": ReconstructionScore.from_dict}


@dataclass(frozen=True)
class TrainingStats(_Contract):
    """Per-phase statistics of the training data (P phases; S2 up to ``s2_cutoff`` pixels).

    Patch statistics (means and stds over ``n_patches`` ``patch``² crops: since
    2026-12-06 the non-overlapping tiles of the inputs, ``sampling == "tiles"``, which
    weight every pixel equally; before, random crops, which over-weight image centres):
    ``volume_fraction`` / ``volume_fraction_std`` (P,); ``s2_radial_mean`` /
    ``s2_radial_std`` (P, s2_cutoff + 1), the radial two-point function (non-periodic
    when ``s2_periodic`` is False, :func:`microlad.descriptors.s2_radial`);
    ``specific_surface_area`` / ``_std`` (P,) in 1/pixel ("mesh" estimator) and
    ``specific_surface_area_gradient`` (the estimator the differentiable descriptor uses).
    ``image_volume_fraction`` (P,): pixel-weighted over the whole input images (what
    reconstruction matches; the patch mean over-weights image centres; absent in
    models from older versions). ``latent_shift`` / ``latent_scale`` (C,): the VAE's
    latent normalisation. ``report``: the :class:`TrainingReport`.
    """

    n_patches: int | None = None
    patch: int | None = None
    sampling: str | None = None
    volume_fraction: tuple[float, ...] | None = None
    volume_fraction_std: tuple[float, ...] | None = None
    s2_cutoff: int | None = None
    s2_periodic: bool | None = None
    s2_radial_mean: tuple[tuple[float, ...], ...] | None = None
    s2_radial_std: tuple[tuple[float, ...], ...] | None = None
    specific_surface_area: tuple[float, ...] | None = None
    specific_surface_area_std: tuple[float, ...] | None = None
    specific_surface_area_gradient: tuple[float, ...] | None = None
    n_phases: int | None = None
    image_volume_fraction: tuple[float, ...] | None = None
    grey_values: tuple[float, ...] | None = None
    latent_shift: tuple[float, ...] | None = None
    latent_scale: tuple[float, ...] | None = None
    report: TrainingReport | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def _nested(cls) -> dict[str, Callable[[Any], Any]]:
        return {"report": TrainingReport.from_dict}

    def fractions(self) -> tuple[float, ...] | None:
        """The training phase fractions reconstruction matches: ``image_volume_fraction``,
        else (older models) the patch mean ``volume_fraction``, else ``None``."""
        vf = self.image_volume_fraction or self.volume_fraction
        return None if vf is None else tuple(float(v) for v in vf)


@dataclass(frozen=True)
class ModelConfig(_Contract):
    """``config.json``'s ``"config"``: training patch size (pixels), the microlad version
    that wrote the directory, the training settings (``training``: run settings,
    :class:`~microlad.training.TrainOptions` as a dict, world size, input names) and the
    reconstruction settings calibrated for this model (``reconstruct``: ``coupling_stop``
    and how it was chosen) and the 2D prior's sampler calibrated for it (``prior_sampler``:
    ``sampler``, ``steps`` and how they were chosen); both from
    :mod:`microlad.reconstruct.calibration`. ``latent_moments``: the 2D prior's per-step clean-
    estimate moments for L-MPDD's default sampler (:func:`microlad.reconstruct.moments.
    moments_to_dict`), stored so reconstruction need not recompute them."""

    patch_size: int | None = None
    microlad_version: str | None = None
    training: Mapping[str, Any] | None = None
    reconstruct: Mapping[str, Any] | None = None
    prior_sampler: Mapping[str, Any] | None = None
    latent_moments: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
