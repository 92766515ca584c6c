"""Reverse-process samplers: one ``step`` of DDIM or of DDPM ancestral sampling.

A sampler owns a descending list of timesteps ``τ_0 > τ_1 > … > τ_{n−1}`` and maps the
sample at ``τ_i`` plus the denoiser output there to the sample at ``τ_{i+1}`` (after the
last step: the clean sample, ᾱ = 1). The loop that calls the denoiser lives with the caller:

    x = torch.randn(shape, generator=g)
    for i, t in enumerate(sampler.timesteps):
        x = sampler.step(unet(x, sampler.timestep_tensor(i, len(x))), i, x, generator=g)

Per-step coefficients are computed in float64 from the schedule's float64 ᾱ table.
"""
from __future__ import annotations

import math
import operator

import torch

from microlad.diffusion._schedule import DDPMSchedule
from microlad.errors import InputError, ShapeError

__all__ = [
    "DDIMSampler", "AncestralSampler", "DPMSolverMultistepSampler", "canonical_sampler", "make_sampler", "make_timesteps",
    "SAMPLER_ALIASES", "SAMPLER_NAMES", "TIMESTEP_SPACINGS",
]

TIMESTEP_SPACINGS = ("trailing", "linspace")


def make_timesteps(num_train_timesteps: int, num_steps: int, spacing: str = "trailing") -> torch.Tensor:
    """Descending, unique int64 timesteps in [0, T) that always start at T − 1.

    ``"trailing"``: τ_i = round(T − i·T/n) − 1 (Lin et al. 2024, arXiv 2305.08891, Table 2),
    e.g. T = 1000, n = 50 → 999, 979, …, 19; ``"linspace"``: round(linspace(T − 1, 0, n)),
    which also visits t = 0. Both start at the pure-noise end, unlike the "leading" spacing
    of the original DDIM code (which never sees t = T − 1).
    """
    T = num_train_timesteps
    if not isinstance(num_steps, int) or not 1 <= num_steps <= T:
        raise InputError(f"num_steps must be an integer in [1, {T}], got {num_steps!r}")
    if spacing == "trailing":
        ts = torch.round(torch.arange(T, 0, -T / num_steps, dtype=torch.float64)[:num_steps]) - 1
    elif spacing == "linspace":
        ts = torch.round(torch.linspace(T - 1, 0, num_steps, dtype=torch.float64))
    else:
        raise InputError(f"spacing must be one of {TIMESTEP_SPACINGS}, got {spacing!r}")
    return ts.to(torch.int64)


class _Sampler:
    """Shared bookkeeping: timesteps, ᾱ lookups, input checks, noise draws."""

    def __init__(self, schedule: DDPMSchedule, num_steps: int, spacing: str) -> None:
        if not isinstance(schedule, DDPMSchedule):
            raise InputError(f"sampler needs a DDPMSchedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self.num_steps = num_steps
        self.spacing = spacing
        self.timesteps = make_timesteps(schedule.num_train_timesteps, num_steps, spacing)
        self._t = [int(t) for t in self.timesteps]

    def __len__(self) -> int:
        return len(self._t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_steps={self.num_steps}, spacing={self.spacing!r}, schedule={self.schedule!r})"

    def timestep_tensor(self, i: int, batch_size: int, *, device: torch.device | str | None = None) -> torch.Tensor:
        """(batch_size,) int64 tensor filled with ``timesteps[i]`` — the denoiser's ``t`` input."""
        return torch.full((batch_size,), self._t[self._check_index(i)], dtype=torch.int64, device=device)

    def _check_index(self, i: int) -> int:
        try:
            idx = operator.index(i)
        except TypeError:
            raise InputError(f"step index must be an integer, got {type(i).__name__}") from None
        if not 0 <= idx < len(self._t):
            raise InputError(f"step index must be in [0, {len(self._t)}), got {idx}")
        return idx

    def _abar(self, i: int) -> tuple[int, float, float]:
        """(τ_i, ᾱ at τ_i, ᾱ at τ_{i+1}) with ᾱ = 1 after the last step."""
        t = self._t[i]
        acp = self.schedule.alphas_cumprod_f64
        a_prev = float(acp[self._t[i + 1]]) if i + 1 < len(self._t) else 1.0
        return t, float(acp[t]), a_prev

    @staticmethod
    def _noise(sample: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        device = generator.device if generator is not None else sample.device
        z = torch.randn(sample.shape, generator=generator, dtype=sample.dtype, device=device)
        return z.to(sample.device)

    @staticmethod
    def _check_shapes(model_output: torch.Tensor, sample: torch.Tensor) -> None:
        if model_output.shape != sample.shape:
            raise ShapeError(f"model output {tuple(model_output.shape)} and sample {tuple(sample.shape)} differ in shape")


class DDIMSampler(_Sampler):
    """DDIM (Song et al. 2021, arXiv 2010.02502); deterministic for ``eta = 0``.

    x_{τ_{i+1}} = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev − σ²)·ε̂ + σ·z          (DDIM Eq. 12)
    σ = η·√((1 − ᾱ_prev)/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_prev)               (DDIM Eq. 16)

    ``eta = 1`` gives the ancestral DDPM variance on the strided schedule.
    """

    def __init__(self, schedule: DDPMSchedule, num_steps: int = 50, eta: float = 0.0, *, spacing: str = "trailing") -> None:
        super().__init__(schedule, num_steps, spacing)
        eta = float(eta)
        if not 0.0 <= eta <= 1.0:
            raise InputError(f"eta must be in [0, 1], got {eta}")
        self.eta = eta

    def step(
        self, model_output: torch.Tensor, i: int, sample: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Sample at ``timesteps[i]`` → sample at ``timesteps[i+1]`` (clean sample after the last)."""
        self._check_shapes(model_output, sample)
        t, a_t, a_prev = self._abar(self._check_index(i))
        x0, eps = self.schedule.predict_x0_eps(sample, model_output, t)
        sigma = self.eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))
        dir_coef = math.sqrt(max(1.0 - a_prev - sigma**2, 0.0))
        prev = math.sqrt(a_prev) * x0 + dir_coef * eps
        if sigma > 0.0:
            prev = prev + sigma * self._noise(sample, generator)
        return prev


class AncestralSampler(_Sampler):
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), optionally strided.

    With α = ᾱ_t/ᾱ_prev and β = 1 − α the effective one-step coefficients between
    consecutive timesteps (β = β_t without striding):

    μ = √ᾱ_prev·β/(1 − ᾱ_t)·x̂0 + √α·(1 − ᾱ_prev)/(1 − ᾱ_t)·x_t     (DDPM Eq. 7, posterior mean)
      = (x_t − β/√(1 − ᾱ_t)·ε̂)/√α                                      (DDPM Eq. 11, METHOD §3)
    σ² = β̃ = (1 − ᾱ_prev)/(1 − ᾱ_t)·β                                  (DDPM Eq. 7, σ_t² = β̃_t)

    The x̂0 form is used (identical algebraically, and well conditioned when ᾱ_t → 0 under
    v-prediction). ``num_steps=None`` uses all T timesteps.
    """

    def __init__(self, schedule: DDPMSchedule, num_steps: int | None = None, *, spacing: str = "trailing") -> None:
        super().__init__(schedule, schedule.num_train_timesteps if num_steps is None else num_steps, spacing)

    def step(
        self, model_output: torch.Tensor, i: int, sample: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Sample at ``timesteps[i]`` → sample at ``timesteps[i+1]`` (clean sample after the last)."""
        self._check_shapes(model_output, sample)
        t, a_t, a_prev = self._abar(self._check_index(i))
        x0, _ = self.schedule.predict_x0_eps(sample, model_output, t)
        alpha = a_t / a_prev
        beta = 1.0 - alpha
        c_x0 = math.sqrt(a_prev) * beta / (1.0 - a_t)
        c_xt = math.sqrt(alpha) * (1.0 - a_prev) / (1.0 - a_t)
        mean = c_x0 * x0 + c_xt * sample
        var = (1.0 - a_prev) / (1.0 - a_t) * beta  # β̃; 0 on the last step (ᾱ_prev = 1)
        if var > 0.0:
            mean = mean + math.sqrt(var) * self._noise(sample, generator)
        return mean


class DPMSolverMultistepSampler(_Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095, Algorithm 2): a deterministic
    second-order multistep solver of the same probability-flow ODE that DDIM (η = 0) solves
    to first order, so it gets closer to the ODE's solution in few steps.

    With α = √ᾱ, σ = √(1 − ᾱ), λ = log(α/σ) and h = λ_{τ_{i+1}} − λ_{τ_i}:

    x_{τ_{i+1}} = (σ_{i+1}/σ_i)·x − α_{i+1}·(e^{−h} − 1)·D
    D = x̂0_i                                            (first step and last step)
    D = (1 + 1/(2r))·x̂0_i − 1/(2r)·x̂0_{i−1},  r = h_{i−1}/h   (the others)

    With D = x̂0_i the update is exactly DDIM's. The last step lands on ᾱ = 1 (σ = 0, h = ∞)
    and is taken to first order, which returns x̂0 (as diffusers' ``lower_order_final``).
    The sampler keeps the previous step's x̂0: a sampling loop must call ``step`` with
    i = 0, 1, 2, … in order, on one sample at a time (``step(…, 0, …)`` starts afresh).
    """

    def __init__(self, schedule: DDPMSchedule, num_steps: int = 25, *, spacing: str = "trailing") -> None:
        super().__init__(schedule, num_steps, spacing)
        self._prev: tuple[int, torch.Tensor, float] | None = None  # (i, x̂0, h) of the last step taken

    @staticmethod
    def _lambda(a: float) -> float:
        return 0.5 * (math.log(a) - math.log1p(-a)) if a < 1.0 else math.inf

    def step(
        self, model_output: torch.Tensor, i: int, sample: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Sample at ``timesteps[i]`` → sample at ``timesteps[i+1]`` (clean sample after the last).
        ``generator`` is accepted for the common interface and not used (no noise is drawn)."""
        self._check_shapes(model_output, sample)
        idx = self._check_index(i)
        t, a_t, a_prev = self._abar(idx)
        x0, _ = self.schedule.predict_x0_eps(sample, model_output, t)
        prev = self._prev if idx > 0 else None
        if idx > 0 and (prev is None or prev[0] != idx - 1 or prev[1].shape != x0.shape):
            raise InputError(f"DPM-Solver++(2M) step {idx} must follow step {idx - 1} on the same sample")
        self._prev = None
        if a_prev >= 1.0:  # last step: first order, the clean estimate
            return x0
        h = self._lambda(a_prev) - self._lambda(a_t)
        d = x0
        if prev is not None:
            r = prev[2] / h
            d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * prev[1]
        self._prev = (idx, x0, h)
        ratio = math.sqrt((1.0 - a_prev) / (1.0 - a_t))
        return ratio * sample - math.sqrt(a_prev) * math.expm1(-h) * d


SAMPLER_NAMES = ("ddim", "ancestral", "dpm2m")
"""The sampler names: ``"ddim"`` (deterministic for η = 0), ``"ancestral"`` (DDPM) and
``"dpm2m"`` (DPM-Solver++(2M), deterministic, second order)."""

SAMPLER_ALIASES = {"ddpm": "ancestral", "dpm++2m": "dpm2m", "dpmpp2m": "dpm2m"}
"""Other spellings accepted at the API and CLI boundary, and the name each stands for."""


def canonical_sampler(name: str) -> str:
    """The :data:`SAMPLER_NAMES` entry ``name`` stands for (aliases resolved); raises
    :class:`~microlad.errors.InputError` for an unknown name."""
    canonical = SAMPLER_ALIASES.get(name, name)
    if canonical not in SAMPLER_NAMES:
        alias = ", ".join(f"{a!r} = {c!r}" for a, c in SAMPLER_ALIASES.items())
        raise InputError(f"sampler must be one of {', '.join(map(repr, SAMPLER_NAMES))} ({alias}), got {name!r}")
    return canonical


def make_sampler(
    schedule: DDPMSchedule, name: str, steps: int | None = 50, *, eta: float = 0.0
) -> DDIMSampler | AncestralSampler | DPMSolverMultistepSampler:
    """The sampler called ``name`` (see :func:`canonical_sampler`) with ``steps`` steps
    (``None``: 50 for DDIM, 25 for DPM-Solver++(2M), all T for ancestral). ``eta`` applies
    to DDIM only."""
    name = canonical_sampler(name)
    if name == "ddim":
        return DDIMSampler(schedule, 50 if steps is None else steps, eta)
    if name == "dpm2m":
        return DPMSolverMultistepSampler(schedule, 25 if steps is None else steps)
    return AncestralSampler(schedule, steps)
