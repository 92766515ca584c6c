"""Tests for microlad.diffusion: schedule algebra and one contract suite for every sampler."""
from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest
import torch

from microlad.diffusion import (
    SAMPLER_NAMES, AncestralSampler, DDIMSampler, DDPMSchedule, DPMSolverMultistepSampler, canonical_sampler, make_sampler,
    make_timesteps,
)
from microlad.errors import InputError, ShapeError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


SCHEDULES = {
    "cosine-v": lambda: DDPMSchedule(200, "cosine", prediction_type="v"),
    "linear-eps": lambda: DDPMSchedule(200, "linear", prediction_type="epsilon"),
    "linear-v": lambda: DDPMSchedule(200, "linear", prediction_type="v"),
}
SAMPLERS: dict[str, Callable[[DDPMSchedule], DDIMSampler | AncestralSampler]] = {
    "ddim-20": lambda s: DDIMSampler(s, num_steps=20),
    "ddim-1": lambda s: DDIMSampler(s, num_steps=1),
    "ddim-eta1": lambda s: DDIMSampler(s, num_steps=20, eta=1.0),
    "ddim-linspace": lambda s: DDIMSampler(s, num_steps=7, spacing="linspace"),
    "ancestral-full": lambda s: AncestralSampler(s),
    "ancestral-25": lambda s: AncestralSampler(s, num_steps=25),
    "dpm2m-20": lambda s: DPMSolverMultistepSampler(s, num_steps=20),
    "dpm2m-1": lambda s: DPMSolverMultistepSampler(s, num_steps=1),
    "dpm2m-linspace": lambda s: DPMSolverMultistepSampler(s, num_steps=7, spacing="linspace"),
}
STOCHASTIC = {"ddim-eta1", "ancestral-full", "ancestral-25"}


def oracle_output(schedule: DDPMSchedule, x_t: torch.Tensor, t: int, x0: torch.Tensor) -> torch.Tensor:
    """What a perfect denoiser outputs at x_t if the clean sample is x0."""
    a = float(schedule.alphas_cumprod_f64[t])
    eps = (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)
    return eps if schedule.prediction_type == "epsilon" else math.sqrt(a) * eps - math.sqrt(1 - a) * x0


def run(sampler, x: torch.Tensor, denoise_x0: Callable[[torch.Tensor, int], torch.Tensor], generator=None) -> torch.Tensor:
    for i, t in enumerate(sampler.timesteps.tolist()):
        out = oracle_output(sampler.schedule, x, t, denoise_x0(x, t))
        x = sampler.step(out, i, x, generator=generator)
    return x


# -- schedule --------------------------------------------------------------------------------
def test_schedule_tables() -> None:
    lin = DDPMSchedule(1000, "linear", prediction_type="epsilon")
    assert lin.betas.dtype == lin.alphas_cumprod.dtype == torch.float32
    assert lin.alphas_cumprod_f64.dtype == torch.float64
    assert math.isclose(float(lin.betas_f64[0]), 1e-4) and math.isclose(float(lin.betas_f64[-1]), 2e-2)
    cos = DDPMSchedule()
    assert (cos.beta_schedule, cos.prediction_type, cos.num_train_timesteps) == ("cosine", "v", 1000)
    for s in (lin, cos):
        acp = s.alphas_cumprod_f64
        assert (acp[1:] < acp[:-1]).all() and 0 < acp[-1] < acp[0] < 1
    assert cos.alphas_cumprod_f64[-1] < 1e-6 < lin.alphas_cumprod_f64[-1]


def test_schedule_dict_roundtrip_and_validation() -> None:
    s = DDPMSchedule(500, "linear", beta_start=2e-4, beta_end=1e-2, prediction_type="epsilon")
    s2 = DDPMSchedule.from_dict(json.loads(json.dumps(s.to_dict())))
    assert s2 == s and torch.equal(s2.alphas_cumprod, s.alphas_cumprod)
    for bad in (dict(num_train_timesteps=1), dict(beta_schedule="sigmoid"), dict(prediction_type="x0"),
                dict(beta_start=0.1, beta_end=0.01)):
        with pytest.raises(InputError):
            DDPMSchedule(**bad)
    with pytest.raises(InputError, match="unknown"):
        DDPMSchedule.from_dict({"clip_sample": True})


@pytest.mark.parametrize("name", SCHEDULES)
def test_parametrisations_invert(name: str) -> None:
    s = SCHEDULES[name]()
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, 2, 3, 3, generator=g)
    t = torch.tensor([0, 50, 120, 180])
    xt = s.add_noise(x0, eps, t)
    assert torch.allclose(xt[1], s.add_noise(x0[1:2], eps[1:2], 50)[0], atol=1e-6)  # int t == tensor t
    x0_hat, eps_hat = s.predict_x0_eps(xt, s.training_target(x0, eps, t), t)
    assert torch.allclose(x0_hat, x0, atol=1e-4) and torch.allclose(eps_hat, eps, atol=1e-4)
    assert s.target is not None and torch.equal(s.target(x0, eps, t), s.training_target(x0, eps, t))
    with pytest.raises(InputError):
        s.add_noise(x0, eps, 200)
    with pytest.raises(ShapeError):
        s.add_noise(x0, eps, torch.tensor([1, 2]))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v"])
def test_output_for_x0_is_the_target_of_the_forward_process(prediction_type: str) -> None:
    sched = DDPMSchedule(prediction_type=prediction_type)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    for t in (0, 500, 990):
        xt = sched.add_noise(x0, noise, t)
        # x_t made from (x0, ε): the output that implies x0 is the training target of (x0, ε)
        torch.testing.assert_close(sched.output_for_x0(xt, x0, t), sched.training_target(x0, noise, t), atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(sched.predict_x0_eps(xt, sched.output_for_x0(xt, x0, t), t)[0], x0, atol=2e-4, rtol=1e-4)
    with pytest.raises(ShapeError):
        sched.output_for_x0(xt, x0[:1], 3)


def test_one_set_of_sampler_names_with_the_old_spelling_accepted() -> None:
    assert SAMPLER_NAMES == ("ddim", "ancestral", "dpm2m")
    assert [canonical_sampler(n) for n in ("ddim", "ancestral", "ddpm", "dpm++2m")] == ["ddim", "ancestral", "ancestral", "dpm2m"]
    sched = DDPMSchedule(100)
    assert isinstance(make_sampler(sched, "ddpm", 10), AncestralSampler)
    assert isinstance(make_sampler(sched, "ddim", 10), DDIMSampler)
    assert isinstance(make_sampler(sched, "dpm2m", 10), DPMSolverMultistepSampler)
    assert len(make_sampler(sched, "dpm2m", None)) == 25
    with pytest.raises(InputError, match="'ddim', 'ancestral'"):
        canonical_sampler("euler")


def test_make_timesteps() -> None:
    assert make_timesteps(1000, 50)[:2].tolist() == [999, 979] and make_timesteps(1000, 50)[-1] == 19
    assert make_timesteps(10, 10).tolist() == list(range(9, -1, -1))
    assert make_timesteps(1000, 7, "linspace").tolist()[-1] == 0
    for n in (1, 3, 7, 333, 999, 1000):
        ts = make_timesteps(1000, n)
        assert ts.dtype == torch.int64 and len(ts) == n and len(ts.unique()) == n
    for bad in (0, 1001):
        with pytest.raises(InputError):
            make_timesteps(1000, bad)


# -- the shared sampler contract -------------------------------------------------------------
@pytest.fixture(params=list(SAMPLERS))
def sampler_name(request) -> str:
    return request.param


@pytest.fixture(params=list(SCHEDULES))
def schedule(request) -> DDPMSchedule:
    return SCHEDULES[request.param]()


def test_sampler_timesteps(sampler_name: str, schedule: DDPMSchedule) -> None:
    s = SAMPLERS[sampler_name](schedule)
    ts = s.timesteps
    assert ts.dtype == torch.int64 and ts.ndim == 1 and len(s) == len(ts)
    assert (ts[1:] < ts[:-1]).all() and ts[0] == schedule.num_train_timesteps - 1 and ts.min() >= 0
    assert s.timestep_tensor(len(s) - 1, 3).tolist() == [int(ts[-1])] * 3


def test_sampler_recovers_x0_with_oracle(sampler_name: str, schedule: DDPMSchedule) -> None:
    """A denoiser that knows x0 exactly must lead every sampler back to x0."""
    s = SAMPLERS[sampler_name](schedule)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 3, 4, 5, generator=g)
    x = torch.randn(x0.shape, generator=g)
    out = run(s, x, lambda _x, _t: x0, generator=g)
    assert out.shape == x0.shape and out.dtype == x0.dtype
    assert torch.allclose(out, x0, atol=2e-4)


KINDS = {"ddim": lambda s, n: DDIMSampler(s, num_steps=n), "ancestral": lambda s, n: AncestralSampler(s, num_steps=n)}


@pytest.mark.parametrize("kind", KINDS)
def test_sampler_gaussian_known_answer(kind: str) -> None:
    """x0 ~ N(0, s²) has the exact denoiser E[x0 | x_t] = √ᾱ s² / (ᾱ s² + 1 − ᾱ) · x_t.
    With all T steps the samples have standard deviation s; fewer steps shrink it (the
    known discretisation bias of posterior-mean samplers), less so with more steps."""
    schedule = DDPMSchedule(1000)
    std = 0.5

    def posterior_mean(x: torch.Tensor, t: int) -> torch.Tensor:
        a = float(schedule.alphas_cumprod_f64[t])
        return math.sqrt(a) * std**2 / (a * std**2 + 1 - a) * x

    errors = {}
    for n in (10, 50, 1000):
        g = torch.Generator().manual_seed(2)
        x = torch.randn(20_000, generator=g, dtype=torch.float64)
        out = run(KINDS[kind](schedule, n), x, posterior_mean, generator=g)
        errors[n] = abs(out.std().item() - std)
        assert abs(out.mean().item()) < 0.02
    assert errors[1000] < 0.015
    assert errors[1000] < errors[50] < errors[10]


@pytest.mark.parametrize("schedule_name", ["cosine-v", "linear-eps"])
def test_dpm_solver_follows_the_probability_flow_more_closely_than_ddim(schedule_name: str) -> None:
    """For x0 ~ N(0, s²) the probability-flow ODE keeps x_t / √(ᾱ s² + 1 − ᾱ) fixed, so the
    exact deterministic sample from x_T is s · x_T / √(ᾱ_T s² + 1 − ᾱ_T). DDIM solves that
    ODE to first order, DPM-Solver++(2M) to second: at the same step count its samples must
    be several times closer to the exact map, and within 1 % of s at 50 steps."""
    base = SCHEDULES[schedule_name]()
    schedule = DDPMSchedule(1000, base.beta_schedule, prediction_type=base.prediction_type)
    std = 0.5

    def posterior_mean(x: torch.Tensor, t: int) -> torch.Tensor:
        a = float(schedule.alphas_cumprod_f64[t])
        return math.sqrt(a) * std**2 / (a * std**2 + 1 - a) * x

    x = torch.randn(20_000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a_T = float(schedule.alphas_cumprod_f64[-1])
    exact = std * x / math.sqrt(a_T * std**2 + 1 - a_T)
    for n in (10, 25, 50):
        ddim = (run(DDIMSampler(schedule, n), x, posterior_mean) - exact).abs().max().item()
        dpm = (run(DPMSolverMultistepSampler(schedule, n), x, posterior_mean) - exact).abs().max().item()
        assert dpm < ddim / (1.3 if n == 10 else 5), (n, dpm, ddim)
    assert dpm < 0.01 * std


def test_dpm_solver_needs_its_steps_in_order() -> None:
    """The multistep update uses the previous step's x̂0: a skipped or foreign step is an error,
    and step 0 starts afresh (a second sampling loop with the same sampler gives the same result)."""
    schedule = DDPMSchedule(100)
    s = DPMSolverMultistepSampler(schedule, 10)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    first = run(s, x, lambda y, t: 0.5 * y)
    assert torch.equal(run(s, x, lambda y, t: 0.5 * y), first)
    s.step(0.1 * x, 0, x)
    with pytest.raises(InputError, match="must follow step 2"):
        s.step(0.1 * x, 3, x)
    s.step(0.1 * x, 0, x)
    with pytest.raises(InputError, match="same sample"):
        s.step(0.1 * x[:1], 1, x[:1])


def test_ddim_eta1_equals_strided_ancestral() -> None:
    """DDIM with η = 1 is DDPM ancestral sampling on the strided schedule (DDIM §4.1)."""
    schedule = DDPMSchedule(100, "linear", prediction_type="epsilon")
    x = torch.randn(500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = run(DDIMSampler(schedule, 10, eta=1.0), x, lambda y, t: 0.5 * y, torch.Generator().manual_seed(4))
    b = run(AncestralSampler(schedule, 10), x, lambda y, t: 0.5 * y, torch.Generator().manual_seed(4))
    assert torch.allclose(a, b, atol=1e-10)


def test_sampler_determinism(sampler_name: str) -> None:
    schedule = DDPMSchedule(100)
    s = SAMPLERS[sampler_name](schedule)
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    model_out = 0.3 * x
    a = s.step(model_out, 0, x, generator=torch.Generator().manual_seed(5))
    b = s.step(model_out, 0, x, generator=torch.Generator().manual_seed(5))
    c = s.step(model_out, 0, x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert torch.equal(a, c) != (sampler_name in STOCHASTIC)


def test_sampler_rejects_bad_calls(sampler_name: str) -> None:
    s = SAMPLERS[sampler_name](DDPMSchedule(100))
    x = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ShapeError):
        s.step(torch.zeros(1, 2, 4, 5), 0, x)
    with pytest.raises(InputError):
        s.step(x, len(s), x)
    with pytest.raises(InputError):
        s.step(x, -1, x)


def test_sampler_constructor_validation() -> None:
    s = DDPMSchedule(100)
    with pytest.raises(InputError):
        DDIMSampler(s, num_steps=0)
    with pytest.raises(InputError):
        DDIMSampler(s, num_steps=10, eta=1.5)
    with pytest.raises(InputError):
        AncestralSampler(s, num_steps=101)
    with pytest.raises(InputError):
        DDIMSampler("not a schedule")  # type: ignore[arg-type]
    assert len(AncestralSampler(s)) == 100 and len(DDIMSampler(s)) == 50


def test_ancestral_matches_paper_update() -> None:
    """Unstrided ε-prediction: μ = (z_t − β_t/√(1−ᾱ_t)·ε̂)/√α_t and σ² = β̃_t (METHOD.md §3)."""
    s = DDPMSchedule(50, "linear", prediction_type="epsilon")
    smp = AncestralSampler(s)
    i = 10
    t = int(smp.timesteps[i])
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps = torch.randn(1000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    beta, alpha, abar = (float(v[t]) for v in (s.betas_f64, 1 - s.betas_f64, s.alphas_cumprod_f64))
    mu = (x - beta / math.sqrt(1 - abar) * eps) / math.sqrt(alpha)
    var = (1 - float(s.alphas_cumprod_f64[t - 1])) / (1 - abar) * beta
    noise = torch.randn(1000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = smp.step(eps, i, x, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(got, mu + math.sqrt(var) * noise, atol=1e-10)
