"""The DDPM noise schedule: β_t, α_t, ᾱ_t and the maps between (x0, ε, v, x_t).

Notation (Ho et al. 2020, arXiv 2006.11239; METHOD.md §3): α_t = 1 − β_t,
ᾱ_t = Π_{s≤t} α_s, forward process x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε (DDPM Eq. 4).
Timesteps are 0-based: t ∈ [0, T), t = 0 is the least noisy level.
All schedule math is done in float64 and cast to float32 once.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch

from microlad.errors import InputError, ShapeError

__all__ = ["DDPMSchedule", "BETA_SCHEDULES", "PREDICTION_TYPES"]

BETA_SCHEDULES = ("linear", "cosine")
PREDICTION_TYPES = ("epsilon", "v")
_COSINE_S = 0.008  # Nichol & Dhariwal 2021, Eq. 17 offset
_COSINE_MAX_BETA = 0.999  # ibid., clipping that keeps β_T < 1


def _linear_betas(n: int, beta_start: float, beta_end: float) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, n, dtype=torch.float64)


def _cosine_betas(n: int) -> torch.Tensor:
    """β_t from ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T + s)/(1 + s))·π/2) (Nichol & Dhariwal 2021, Eq. 17)."""
    steps = torch.arange(n + 1, dtype=torch.float64) / n
    f = torch.cos((steps + _COSINE_S) / (1 + _COSINE_S) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=_COSINE_MAX_BETA)


class DDPMSchedule:
    """Discrete DDPM noise schedule (a configured object, not an ``nn.Module``).

    Parameters
    ----------
    num_train_timesteps
        T, the number of diffusion steps the denoiser is trained on.
    beta_schedule
        ``"cosine"`` (default; Nichol & Dhariwal 2021, arXiv 2102.09672, Eq. 17, β clipped
        at 0.999) or ``"linear"`` (reference MicroLad / DDPM: β from ``beta_start`` to
        ``beta_end``; ``beta_start``/``beta_end`` are ignored for cosine).
    beta_start, beta_end
        Linear-schedule endpoints (reference values 1e-4, 2e-2).
    prediction_type
        What the denoiser outputs: ``"v"`` (default; v = √ᾱ·ε − √(1−ᾱ)·x0, Salimans & Ho
        2022, arXiv 2202.00512) or ``"epsilon"`` (reference).

    Notes
    -----
    Defaults (ours): the cosine schedule spends fewer steps at near-clean noise levels than
    the linear one and ends at a (near) zero SNR, ᾱ_{T−1} ≈ 2e-9, so sampling from pure
    N(0, I) matches training (Lin et al. 2024, arXiv 2305.08891). With ᾱ_t → 0 an ε-predictor
    cannot give x0 (x0 = (x_t − √(1−ᾱ)ε)/√ᾱ divides by ~0), whereas v-prediction
    gives x0 = √ᾱ·x_t − √(1−ᾱ)·v at every level — the property few-step DDIM relies on,
    because its first steps jump straight from the x0 estimate at high noise.
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "cosine",
        beta_start: float = 1e-4,
        beta_end: float = 2e-2,
        prediction_type: str = "v",
    ) -> None:
        if not isinstance(num_train_timesteps, int) or num_train_timesteps < 2:
            raise InputError(f"num_train_timesteps must be an integer >= 2, got {num_train_timesteps!r}")
        if beta_schedule not in BETA_SCHEDULES:
            raise InputError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}")
        if prediction_type not in PREDICTION_TYPES:
            raise InputError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        beta_start, beta_end = float(beta_start), float(beta_end)
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise InputError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        self.num_train_timesteps = num_train_timesteps
        self.beta_schedule = beta_schedule
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.prediction_type = prediction_type

        if beta_schedule == "linear":
            betas = _linear_betas(num_train_timesteps, beta_start, beta_end)
        else:
            betas = _cosine_betas(num_train_timesteps)
        acp = torch.cumprod(1.0 - betas, dim=0)
        # float64 masters (used by the samplers for per-step scalar coefficients)
        self.betas_f64 = betas
        self.alphas_cumprod_f64 = acp
        # float32 tables, cast once
        self.betas = betas.to(torch.float32)
        self.alphas = (1.0 - betas).to(torch.float32)
        self.alphas_cumprod = acp.to(torch.float32)
        self.sqrt_alphas_cumprod = acp.sqrt().to(torch.float32)
        self.sqrt_one_minus_alphas_cumprod = (1.0 - acp).sqrt().to(torch.float32)
        self._device_tables: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    # -- config -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (round-trips through :meth:`from_dict`)."""
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": self.beta_schedule,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "prediction_type": self.prediction_type,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DDPMSchedule:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`~microlad.errors.InputError`."""
        if not isinstance(data, Mapping):
            raise InputError(f"DDPMSchedule.from_dict expects a mapping, got {type(data).__name__}")
        known = {"num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown DDPMSchedule keys {unknown}; known keys are {sorted(known)}")
        return cls(**dict(data))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"DDPMSchedule({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DDPMSchedule) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    # -- coefficient lookup -----------------------------------------------------------------
    def _coefficients(self, t: int | torch.Tensor, like: torch.Tensor) -> tuple[Any, Any]:
        """(√ᾱ_t, √(1−ᾱ_t)) as Python floats (scalar t) or tensors broadcastable to ``like``."""
        T = self.num_train_timesteps
        if isinstance(t, numbers.Integral) or (isinstance(t, torch.Tensor) and t.ndim == 0 and not t.is_floating_point()):
            ti = int(t)
            if not 0 <= ti < T:
                raise InputError(f"timestep must be in [0, {T}), got {ti}")
            a = float(self.alphas_cumprod_f64[ti])
            return math.sqrt(a), math.sqrt(1.0 - a)
        if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.ndim != 1 or t.shape[0] != like.shape[0]:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ShapeError(f"timesteps must be an int or an integer tensor of shape ({like.shape[0]},), got {shape}")
        key = (like.device, like.dtype)
        if key not in self._device_tables:
            self._device_tables[key] = (
                self.sqrt_alphas_cumprod.to(device=like.device, dtype=like.dtype),
                self.sqrt_one_minus_alphas_cumprod.to(device=like.device, dtype=like.dtype),
            )
        sa, s1a = self._device_tables[key]
        idx = t.to(like.device).long()
        shape = (-1,) + (1,) * (like.ndim - 1)
        return sa[idx].reshape(shape), s1a[idx].reshape(shape)

    # -- forward process and parametrisations -------------------------------------------------
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε (DDPM Eq. 4); ``t`` is an int or a (B,) integer tensor."""
        sa, s1a = self._coefficients(t, x0)
        return sa * x0 + s1a * noise

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """What the denoiser should output at x_t: ε, or v = √ᾱ_t·ε − √(1−ᾱ_t)·x0."""
        if self.prediction_type == "epsilon":
            return noise
        sa, s1a = self._coefficients(t, x0)
        return sa * noise - s1a * x0

    target = training_target  # name used in docs/ARCHITECTURE.md

    def predict_x0_eps(
        self, sample: torch.Tensor, model_output: torch.Tensor, t: int | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean-sample and noise estimates (x̂0, ε̂) from x_t and the denoiser output.

        ε-prediction: x̂0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t (DDPM Eq. 15).
        v-prediction: x̂0 = √ᾱ_t·x_t − √(1−ᾱ_t)·v̂, ε̂ = √(1−ᾱ_t)·x_t + √ᾱ_t·v̂.
        """
        if sample.shape != model_output.shape:
            raise ShapeError(f"sample {tuple(sample.shape)} and model output {tuple(model_output.shape)} differ in shape")
        sa, s1a = self._coefficients(t, sample)
        if self.prediction_type == "epsilon":
            eps = model_output
            x0 = (sample - s1a * eps) / sa
        else:
            x0 = sa * sample - s1a * model_output
            eps = s1a * sample + sa * model_output
        return x0, eps

    def output_for_x0(self, sample: torch.Tensor, x0: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """The denoiser output whose clean estimate at (x_t = ``sample``, t) is ``x0``.

        Inverse of :meth:`predict_x0_eps` in its first result: ε = (x_t − √ᾱ_t·x0)/√(1−ᾱ_t),
        then ε itself or v = √ᾱ_t·ε − √(1−ᾱ_t)·x0. Lets code that edits x̂0 (slice coupling,
        guidance) hand the edit to any sampler ``step`` unchanged.
        """
        if sample.shape != x0.shape:
            raise ShapeError(f"sample {tuple(sample.shape)} and x0 {tuple(x0.shape)} differ in shape")
        sa, s1a = self._coefficients(t, sample)
        eps = (sample - sa * x0) / s1a
        return self.training_target(x0, eps, t)
