"""Prior-moment matching of L-MPDD clean estimates (microlad.reconstruct.moments)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from microlad.diffusion import DDPMSchedule
from microlad.metadata import TrainingStats
from microlad.reconstruct import reconstruct, sample_latent_volume
from microlad.reconstruct.moments import match_moments, prior_moments


def test_match_moments_sets_each_channels_mean_and_std_and_keeps_its_pattern():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 6)) * np.array([0.5, 2.0, 1.0])[:, None, None, None] + np.array([1.0, -2.0, 0.0])[:, None, None, None]
    mean, std = torch.tensor([0.1, 0.2, -0.3]), torch.tensor([0.9, 1.1, 0.7])
    out = match_moments(torch.from_numpy(x).float(), mean, std).double().numpy()
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3), ddof=1), std.numpy(), rtol=1e-5)
    for c in range(3):  # an affine map per channel: the spatial pattern is kept exactly
        assert np.corrcoef(out[c].ravel(), x[c].ravel())[0, 1] == pytest.approx(1.0, abs=1e-6)
    kept = match_moments(torch.from_numpy(x).float(), None, std).double().numpy()
    np.testing.assert_allclose(kept.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), atol=1e-5)
    np.testing.assert_allclose(kept.std(axis=(1, 2, 3), ddof=1), std.numpy(), rtol=1e-5)


class _Oracle(torch.nn.Module):
    """A denoiser whose clean estimate is always ``target`` (C, h, w) for every sample."""

    def __init__(self, sched, target):
        super().__init__()
        self.sched, self.target = sched, target
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        ab = self.sched.alphas_cumprod[int(t[0])].float()
        x0 = self.target.expand_as(x)
        return self.sched.training_target(x0, (x - ab.sqrt() * x0) / (1 - ab).sqrt(), t)


@pytest.mark.parametrize("sampler", ["ddim", "dpm2m"])
def test_prior_moments_are_those_of_the_2d_clean_estimates(sampler):
    sched = DDPMSchedule()
    target = torch.randn(4, 6, 6, generator=torch.Generator().manual_seed(1)) * torch.tensor([1.0, 0.5, 2.0, 1.5]).view(4, 1, 1)
    mean, std = prior_moments(_Oracle(sched, target), sched, 4, 6, sampler=sampler, steps=7, n=5)
    assert mean.shape == std.shape == (7, 4)
    pooled = np.tile(target.numpy()[None], (5, 1, 1, 1))  # the 5 samples' clean estimates, pooled per channel
    for i in range(7):
        np.testing.assert_allclose(mean[i].numpy(), pooled.mean(axis=(0, 2, 3)), atol=1e-4)
        np.testing.assert_allclose(std[i].numpy(), pooled.std(axis=(0, 2, 3), ddof=1), rtol=1e-4)


@pytest.fixture(scope="module")
def tiny_model():
    from microlad.models import CategoricalVAE, UNet2D, UNetConfig, VAEConfig

    torch.manual_seed(0)

    class M:  # the attributes reconstruct() reads from a MicroladModel
        pass

    m = M()
    m.vae = CategoricalVAE(VAEConfig(n_phases=2, base_channels=8, norm_groups=4)).eval()
    m.unet = UNet2D(UNetConfig(in_channels=4, base_channels=16, channel_multipliers=(1, 2), norm_groups=4, attention_heads=2)).eval()
    m.schedule, m.grey_values, m.training_stats, m.coupling_stop, m.patch_size = DDPMSchedule(), (0.0, 1.0), TrainingStats(), 0.0, 16
    return m


def test_lmpdd_with_moments_ends_at_the_priors_last_clean_estimate_moments(tiny_model):
    sched = tiny_model.schedule
    mean, std = prior_moments(tiny_model.unet, sched, 4, 4, steps=5)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    kw = dict(steps=5, progress=False, slice_coupling=False)
    z = sample_latent_volume(tiny_model.unet, sched, (4, 4, 4, 4), moments=(mean, std), generator=gen(), **kw)
    plain = sample_latent_volume(tiny_model.unet, sched, (4, 4, 4, 4), generator=gen(), **kw)
    # DDIM's last step lands on its clean estimate (ᾱ = 1 after it), which was matched
    np.testing.assert_allclose(z.mean(dim=(1, 2, 3)).numpy(), mean[-1].numpy(), atol=1e-4)
    np.testing.assert_allclose(z.std(dim=(1, 2, 3)).numpy(), std[-1].numpy(), rtol=1e-3)
    assert not torch.allclose(z, plain)
    with pytest.raises(ValueError, match="steps"):
        sample_latent_volume(tiny_model.unet, sched, (4, 4, 4, 4), moments=(mean, std), generator=gen(), steps=4, progress=False)


def test_reconstruct_matches_the_latent_mean_by_default_and_deterministically(tiny_model):
    kw = dict(steps=3, refine=0, progress=False, return_probabilities=True, match_vf=False, smooth=False)
    default = reconstruct(tiny_model, (16, 16, 16), seed=4, **kw)[0]
    off = reconstruct(tiny_model, (16, 16, 16), seed=4, match_latent_mean=False, **kw)[0]
    on = reconstruct(tiny_model, (16, 16, 16), seed=4, match_latent_mean=True, **kw)[0]
    on2 = reconstruct(tiny_model, (16, 16, 16), seed=4, match_latent_mean=True, **kw)[0]
    np.testing.assert_array_equal(default.probabilities, on.probabilities)
    np.testing.assert_array_equal(on.probabilities, on2.probabilities)
    assert not np.allclose(on.probabilities, off.probabilities)


def test_stored_moments_are_used_when_they_match_the_sampler_and_recomputed_otherwise(tiny_model, monkeypatch):
    import dataclasses

    from microlad.metadata import ModelConfig
    from microlad.reconstruct import api

    record = api.store_lmpdd_moments(tiny_model, "ddim", 3)
    computed = prior_moments(tiny_model.unet, tiny_model.schedule, 4, 4, steps=3)
    cfg = dataclasses.replace(ModelConfig(), latent_moments=record)
    tiny_model.config = cfg
    try:
        calls = []
        real = api.prior_moments
        monkeypatch.setattr(api, "prior_moments", lambda *a, **k: calls.append(1) or real(*a, **k))
        mean, std = api.lmpdd_moments(tiny_model, "ddim", 3)  # stored: nothing computed
        assert not calls
        torch.testing.assert_close(mean, computed[0], rtol=0, atol=0)
        torch.testing.assert_close(std, computed[1], rtol=0, atol=0)
        api.lmpdd_moments(tiny_model, "ddim", 4)  # other steps: computed
        api.lmpdd_moments(tiny_model, "dpm2m", 3)  # other sampler: computed
        assert len(calls) == 2
        tiny_model.config = dataclasses.replace(cfg, latent_moments={**record, "mean": [[0.0]]})  # malformed
        api.lmpdd_moments(tiny_model, "ddim", 3)
        assert len(calls) == 3
    finally:
        del tiny_model.config
