"""Training hyper-parameters and defaults."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from microlad.errors import InputError

__all__ = [
    "TrainOptions",
    "DEFAULT_PATCH",
    "DEFAULT_VAE_STEPS",
    "DEFAULT_LDM_STEPS",
    "DEFAULT_BATCH",
    "DEFAULT_CHECKPOINT_EVERY",
    "lr_at",
]

#: Defaults sized so that ``microlad train`` on one 1024² micrograph finishes in well under
#: half an hour on a small CPU with the default VAE/U-Net (per-step times: BENCHMARKS.md,
#: "Design measurements").
DEFAULT_PATCH = 64
DEFAULT_VAE_STEPS = 800
DEFAULT_LDM_STEPS = 2500
DEFAULT_BATCH = 16
DEFAULT_CHECKPOINT_EVERY = 100


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Hyper-parameters of :func:`microlad.training.train` beyond its keyword arguments.

    Parameters
    ----------
    vae_lr, ldm_lr
        Peak Adam learning rates of stage 1 (VAE) and stage 2 (latent DDPM).
    lr_schedule
        ``"cosine"`` (linear warm-up, then cosine decay to ``min_lr_ratio`` · peak) or
        ``"constant"`` (warm-up, then constant).
    warmup_steps
        Linear warm-up length (capped at a tenth of the stage's steps).
    min_lr_ratio
        Final learning rate of the cosine schedule relative to the peak.
    beta
        KL weight β of the VAE loss (KL per latent element vs cross-entropy per pixel).
    phase_balance
        Weight the cross-entropy by inverse phase fractions (:func:`phase_class_weights`).
    grad_clip
        Clip the global gradient norm (0 disables).
    ema_decay
        Decay of the exponential moving average of the U-Net weights (the EMA is what the
        saved model samples with); warmed up as ``min(decay, (1+n)/(10+n))``.
    ldm_batch
        Global batch of stage 2 (default: twice the ``batch`` argument; a U-Net step on
        16×16 latents costs about half a VAE step on 64×64 patches).
    latents
        Stage 2 trains on the encoder ``"mean"`` or on posterior ``"sample"``\\ s.
    latent_bank
        Number of augmented patches encoded once before stage 2 and then drawn from (fast
        on CPU); 0 encodes fresh patches every step.
    stats_patches
        Random patches used to measure the latent shift/scale, and the most tiles the
        training statistics are measured on (all of them when there are fewer).
    heldout_patches, heldout_seed
        Size and seed of the fixed evaluation set for the VAE report (drawn without
        augmentation; with one input image it overlaps the training data).
    log_every
        Steps between loss lines on the ``microlad.training`` logger.
    vae_rounds
        The most rounds of VAE training. A round is ``vae_steps`` steps with its own warm-up
        and cosine cycle. After each round the VAE round trip (encode → decode → argmax) of
        the ``heldout_patches`` is measured. Another round follows only while some phase's
        slice perimeter density in the round trip differs from the patches' by more than
        ``vae_perimeter_tol``, and only if the last round reduced that worst error. Images
        whose finest features are near the latent cell (4 pixels) need the extra rounds;
        most images stop after the first. ``1`` trains exactly ``vae_steps`` steps.
    vae_perimeter_tol
        Largest relative perimeter loss of the VAE round trip, per phase, accepted without
        another round (0.03: issue #11's fidelity tolerance for slice perimeter).
    calibrate_coupling
        After training, choose the L-MPDD slice-coupling window for this model from its
        training S2 (:mod:`microlad.reconstruct.calibration`; 20 small reconstructions,
        about a minute for a 64² patch model on a CPU) and store it in ``config.json``.
    calibrate_prior
        After training, choose the 2D prior's sampler and steps (DDIM or DPM-Solver++(2M),
        25 or 50 steps) whose samples match the training images' slice perimeter and
        small-r S2 best, and store it in ``config.json`` (``sample_2d`` uses it;
        :func:`microlad.reconstruct.calibration.calibrate_prior_sampler`; 4 × 128 samples,
        about two minutes for a 64² patch model on a CPU).
    """

    vae_lr: float = 1e-3
    ldm_lr: float = 4e-4
    lr_schedule: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    beta: float = 1e-3
    phase_balance: bool = True
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ldm_batch: int | None = None
    latents: str = "mean"
    latent_bank: int = 4096
    stats_patches: int = 256
    heldout_patches: int = 128
    heldout_seed: int = 20250101
    log_every: int = 50
    vae_rounds: int = 4
    vae_perimeter_tol: float = 0.03
    calibrate_coupling: bool = True
    calibrate_prior: bool = True

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("cosine", "constant"):
            raise InputError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if self.latents not in ("mean", "sample"):
            raise InputError(f"latents must be 'mean' or 'sample', got {self.latents!r}")
        for name in ("vae_lr", "ldm_lr"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        for name in ("warmup_steps", "latent_bank", "grad_clip"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.vae_perimeter_tol >= 0:
            raise InputError(f"vae_perimeter_tol must be >= 0, got {self.vae_perimeter_tol!r}")
        for name in ("stats_patches", "heldout_patches", "log_every", "vae_rounds"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.ldm_batch is not None and self.ldm_batch < 1:
            raise InputError(f"ldm_batch must be >= 1, got {self.ldm_batch!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown TrainOptions keys {unknown}")
        return cls(**dict(data))


def lr_at(step: int, total: int, peak: float, opts: TrainOptions) -> float:
    """Learning rate at 0-based ``step`` of ``total``: linear warm-up, then cosine or constant.

    A pure function of the step, so resuming needs no scheduler state.
    """
    warm = min(opts.warmup_steps, total // 10)
    if step < warm:
        return peak * (step + 1) / warm
    if opts.lr_schedule == "constant":
        return peak
    progress = (step - warm) / max(1, total - warm)
    return peak * (opts.min_lr_ratio + (1.0 - opts.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
