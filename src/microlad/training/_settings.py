"""The settings of one training run, merged from the caller's request and a checkpoint."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from microlad.diffusion import DDPMSchedule
from microlad.errors import InputError
from microlad.models import UNetConfig, VAEConfig
from microlad.training._options import (
    DEFAULT_BATCH,
    DEFAULT_LDM_STEPS,
    DEFAULT_PATCH,
    DEFAULT_VAE_STEPS,
    TrainOptions,
)

__all__ = ["RunSettings"]

T = TypeVar("T")

#: The scalar settings and their defaults, in checkpoint order.
SCALAR_DEFAULTS: dict[str, Any] = dict(patch=DEFAULT_PATCH, vae_steps=DEFAULT_VAE_STEPS, ldm_steps=DEFAULT_LDM_STEPS,
                                       batch=DEFAULT_BATCH, seed=0, augment=True)


def _flag(key: str, value: Any) -> str:
    """How the user spelled the setting (CLI flag, or keyword for ``augment``)."""
    return f"augment={value}" if key == "augment" else f"--{key.replace('_', '-')} {value}"


def _merge_scalar(key: str, requested: Any, saved: Mapping[str, Any]) -> Any:
    if key in saved and requested is not None and requested != saved[key]:
        raise InputError(f"{_flag(key, requested)} differs from the checkpoint's {key}={saved[key]}; omit it or pass the same value to resume")
    return saved.get(key, SCALAR_DEFAULTS[key]) if requested is None else requested


def _merge_object(key: str, requested: T | None, saved: Mapping[str, Any] | None,
                  from_dict: Callable[[Mapping[str, Any]], T], default: Callable[[], T]) -> T:
    """The checkpoint's object wins; a different explicit one is an error; else requested or default."""
    if saved is not None:
        saved_obj = from_dict(saved)
        if requested is not None and requested.to_dict() != saved_obj.to_dict():  # type: ignore[attr-defined]
            raise InputError(f"{key} differs from the checkpoint's; omit it or pass the same to resume")
        return saved_obj
    return requested if requested is not None else default()


@dataclass(frozen=True)
class RunSettings:
    """Everything that fixes a training run's result: patch side (pixels), steps of each
    stage, global batch, seed, dihedral augmentation, the two architectures, the noise
    schedule and the :class:`TrainOptions`.

    A resumed run takes every setting from its checkpoint (:meth:`merge`), so it ends
    with the weights an uninterrupted run would have.
    """

    patch: int
    vae_steps: int
    ldm_steps: int
    batch: int
    seed: int
    augment: bool
    vae_config: VAEConfig
    unet_config: UNetConfig
    schedule: DDPMSchedule
    options: TrainOptions

    @classmethod
    def merge(cls, requested: Mapping[str, Any], saved: Mapping[str, Any] | None, n_phases: int) -> RunSettings:
        """Settings from ``requested`` (``None`` values: not given) and a checkpoint's ``"run"``.

        On resume (``saved`` given) the checkpoint's values win and an explicit different
        value is an :class:`~microlad.errors.InputError`; otherwise unset values get their
        defaults (``VAEConfig(n_phases)``, ``UNetConfig(in_channels=latent channels)``,
        ``DDPMSchedule()``, ``TrainOptions()``).
        """
        saved = saved or {}
        scalars = {key: _merge_scalar(key, requested.get(key), saved) for key in SCALAR_DEFAULTS}
        for key in ("patch", "batch"):
            if not isinstance(scalars[key], int) or scalars[key] < 1:
                raise InputError(f"{key} must be a positive integer, got {scalars[key]!r}")
        for key in ("vae_steps", "ldm_steps", "seed"):
            if not isinstance(scalars[key], int) or scalars[key] < 0:
                raise InputError(f"{key} must be a non-negative integer, got {scalars[key]!r}")
        vae_cfg = _merge_object("vae_config", requested.get("vae_config"), saved.get("vae_config"),
                                VAEConfig.from_dict, lambda: VAEConfig(n_phases=n_phases))
        if vae_cfg.n_phases != n_phases:
            raise InputError(f"vae_config.n_phases={vae_cfg.n_phases} but the images have {n_phases} phases")
        c = vae_cfg.latent_channels
        unet_cfg = _merge_object("unet_config", requested.get("unet_config"), saved.get("unet_config"),
                                 UNetConfig.from_dict, lambda: UNetConfig(in_channels=c))
        if unet_cfg.in_channels != c:
            raise InputError(f"unet_config.in_channels={unet_cfg.in_channels} but the VAE has {c} latent channels")
        saved_options = saved.get("options")
        if saved_options is not None and "vae_rounds" not in saved_options:
            saved_options = {**saved_options, "vae_rounds": 1}  # runs from before VAE rounds had one
        options = _merge_object("options", requested.get("options"), saved_options, TrainOptions.from_dict, TrainOptions)
        schedule = requested.get("schedule")
        if schedule is not None and not isinstance(schedule, DDPMSchedule):
            raise InputError(f"schedule must be a microlad.diffusion.DDPMSchedule, got {type(schedule).__name__}")
        schedule = _merge_object("schedule", schedule, saved.get("schedule"), DDPMSchedule.from_dict, DDPMSchedule)
        multiple = vae_cfg.downsample_factor * unet_cfg.size_multiple
        if scalars["patch"] % multiple:
            raise InputError(f"patch {scalars['patch']} must be a multiple of {multiple} (VAE factor x U-Net size multiple)")
        return cls(**scalars, vae_config=vae_cfg, unet_config=unet_cfg, schedule=schedule, options=options)

    def scalars(self) -> dict[str, Any]:
        """The scalar settings (patch, steps, batch, seed, augment) as a dict."""
        return {key: getattr(self, key) for key in SCALAR_DEFAULTS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict, the checkpoint's ``"run"`` entry (read back by :meth:`merge`)."""
        return {**self.scalars(), "vae_config": self.vae_config.to_dict(), "unet_config": self.unet_config.to_dict(),
                "schedule": self.schedule.to_dict(), "options": self.options.to_dict()}
