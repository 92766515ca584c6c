"""Tests for microlad.models: shapes, configs, parameter budgets and the VAE loss."""
from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

from microlad.errors import InputError, ShapeError
from microlad.models import (
    CategoricalVAE,
    UNet2D,
    UNetConfig,
    VAEConfig,
    count_parameters,
    kl_per_element,
    phase_class_weights,
    vae_loss,
)

TINY_VAE = dict(base_channels=8, norm_groups=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY_UNET = dict(in_channels=4, base_channels=16, channel_multipliers=(1, 2), norm_groups=4, attention_heads=2)


def onehot(labels: torch.Tensor, p: int) -> torch.Tensor:
    return F.one_hot(labels.long(), p).permute(0, 3, 1, 2).float()


def stripes(batch: int, size: int, *, period: int = 8, seed: int = 0) -> torch.Tensor:
    """Two-phase vertical stripes with random phase offsets, one-hot (B, 2, size, size)."""
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, period, (batch, 1, 1), generator=g)
    x = torch.arange(size).view(1, 1, size).expand(batch, size, size)
    labels = ((x + offsets) % period < period // 2).long()
    return onehot(labels, 2)


# -- VAE -----------------------------------------------------------------------------------
@pytest.mark.parametrize("p,f,size", [(2, 4, (8, 8)), (3, 4, (16, 24)), (3, 2, (12, 6)), (4, 8, (16, 32))])
def test_vae_shapes(p: int, f: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    vae = CategoricalVAE(VAEConfig(n_phases=p, downsample_factor=f, latent_channels=3, **TINY_VAE))
    x = onehot(torch.randint(0, p, (2, *size)), p)
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (2, 3, size[0] // f, size[1] // f)
    logits = vae.decode(mean)
    assert logits.shape == (2, p, *size)
    out = vae(x, generator=torch.Generator().manual_seed(0))
    assert out.logits.shape == x.shape and out.z.shape == mean.shape


def test_vae_rejects_bad_inputs() -> None:
    vae = CategoricalVAE(VAEConfig(n_phases=2, **TINY_VAE))
    with pytest.raises(ShapeError, match="divisible"):
        vae.encode(torch.zeros(1, 2, 10, 8))
    with pytest.raises(ShapeError, match=r"\(B, 2, H, W\)"):
        vae.encode(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ShapeError):
        vae.decode(torch.zeros(1, 5, 2, 2))


def test_vae_latent_normalization_roundtrip() -> None:
    vae = CategoricalVAE(VAEConfig(n_phases=2, **TINY_VAE))
    z = torch.randn(2, 4, 3, 5)
    assert torch.equal(vae.normalize(z), z)  # defaults 0 / 1
    vae.set_latent_stats(torch.tensor([0.5, -1.0, 0.0, 2.0]), torch.tensor([2.0, 0.5, 1.0, 4.0]))
    u = vae.normalize(z)
    assert torch.allclose(u[:, 1], (z[:, 1] + 1.0) / 0.5)
    assert torch.allclose(vae.denormalize(u), z, atol=1e-6)
    assert "latent_shift" in vae.state_dict() and "latent_scale" in vae.state_dict()
    with pytest.raises(InputError):
        vae.set_latent_stats(torch.zeros(4), torch.tensor([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ShapeError):
        vae.set_latent_stats(torch.zeros(3), torch.ones(3))


def test_vae_config_roundtrip_and_validation() -> None:
    cfg = VAEConfig(n_phases=3)
    assert cfg.channel_multipliers == (1, 2, 6) and cfg.levels == 3
    data = json.loads(json.dumps(cfg.to_dict()))
    assert VAEConfig.from_dict(data) == cfg
    assert VAEConfig(n_phases=2, downsample_factor=8).channel_multipliers == (1, 2, 4, 6)
    with pytest.raises(InputError, match="power of two"):
        VAEConfig(n_phases=2, downsample_factor=3)
    with pytest.raises(InputError, match="channel_multipliers"):
        VAEConfig(n_phases=2, channel_multipliers=(1, 2))
    with pytest.raises(InputError, match="n_phases"):
        VAEConfig(n_phases=1)
    with pytest.raises(InputError, match="unknown"):
        VAEConfig.from_dict({**data, "attention": True})


def test_default_parameter_budgets() -> None:
    vae = CategoricalVAE(VAEConfig(n_phases=3))
    unet = UNet2D(UNetConfig())
    assert 300_000 <= count_parameters(vae) <= 2_000_000
    assert 1_000_000 <= count_parameters(unet) <= 3_000_000


# -- U-Net ---------------------------------------------------------------------------------
@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("hw", [(16, 16), (16, 32), (32, 32), (2, 6)])
def test_unet_shapes_any_size(hw: tuple[int, int], attention: bool) -> None:
    unet = UNet2D(UNetConfig(**{**TINY_UNET, "attention": attention}))
    x = torch.randn(3, 4, *hw)
    y = unet(x, torch.tensor([0, 10, 999]))
    assert y.shape == x.shape


def test_unet_three_levels_and_validation() -> None:
    unet = UNet2D(UNetConfig(in_channels=2, base_channels=8, channel_multipliers=(1, 2, 2), norm_groups=4, attention_heads=2))
    assert unet.config.size_multiple == 4
    assert unet(torch.randn(1, 2, 8, 12), torch.tensor([5])).shape == (1, 2, 8, 12)
    assert unet(torch.randn(2, 2, 4, 4), torch.tensor(7)).shape == (2, 2, 4, 4)  # scalar t broadcasts
    with pytest.raises(ShapeError, match="divisible by 4"):
        unet(torch.randn(1, 2, 6, 8), torch.tensor([0]))
    with pytest.raises(ShapeError, match="timesteps"):
        unet(torch.randn(1, 2, 8, 8), torch.tensor([0.5]))
    with pytest.raises(ShapeError):
        unet(torch.randn(1, 3, 8, 8), torch.tensor([0]))
    with pytest.raises(InputError, match="unknown"):
        UNetConfig.from_dict({"width": 3})
    cfg = UNetConfig()
    assert UNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_unet_is_time_conditioned() -> None:
    torch.manual_seed(0)
    unet = UNet2D(UNetConfig(**TINY_UNET))
    x = torch.randn(1, 4, 8, 8).expand(2, -1, -1, -1)
    assert torch.count_nonzero(unet(x, torch.tensor([3, 900]))) == 0  # zero-initialised output conv
    for p in unet.parameters():  # leave the identity initialisation
        torch.nn.init.normal_(p, std=0.05)
    y = unet(x, torch.tensor([3, 900]))
    assert not torch.allclose(y[0], y[1])


# -- losses --------------------------------------------------------------------------------
def test_phase_class_weights_known_answer() -> None:
    w = phase_class_weights(torch.tensor([0.75, 0.25]))
    assert torch.allclose(w, torch.tensor([2 / 3, 2.0]))
    assert torch.allclose(phase_class_weights(torch.tensor([30, 30, 30])), torch.ones(3))
    f = torch.tensor([0.6, 0.3, 0.1])
    assert torch.isclose((phase_class_weights(f) * f).sum(), torch.tensor(1.0))
    assert torch.isfinite(phase_class_weights(torch.tensor([1.0, 0.0]))).all()
    with pytest.raises(InputError):
        phase_class_weights(torch.tensor([0.0, 0.0]))


def test_vae_loss_parts() -> None:
    target = onehot(torch.randint(0, 3, (2, 8, 8)), 3)
    mean, logvar = torch.zeros(2, 4, 2, 2), torch.zeros(2, 4, 2, 2)
    assert kl_per_element(mean, logvar) == 0
    assert torch.isclose(kl_per_element(torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)), torch.tensor(0.5))
    uniform = torch.zeros(2, 3, 8, 8)
    parts = vae_loss(uniform, target, mean, logvar, beta=0.1)
    assert torch.isclose(parts.recon, torch.log(torch.tensor(3.0)))
    assert torch.equal(parts.total, parts.recon + 0.1 * parts.kl)
    w = torch.tensor([1.0, 2.0, 0.5])
    weighted = vae_loss(uniform, target, mean, logvar, beta=0.0, class_weights=w)
    expected = torch.log(torch.tensor(3.0)) * (target * w[:, None, None]).sum(1).mean()
    assert torch.isclose(weighted.recon, expected)
    with pytest.raises(ShapeError):
        vae_loss(uniform, target[:, :2], mean, logvar, beta=0.1)


def test_vae_learns_stripes() -> None:
    torch.manual_seed(0)
    vae = CategoricalVAE(VAEConfig(n_phases=2, **TINY_VAE))
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    x = stripes(16, 16)
    w = phase_class_weights(x.mean(dim=(0, 2, 3)))
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(50):
        out = vae(x, generator=gen)
        parts = vae_loss(out.logits, x, out.mean, out.logvar, beta=1e-3, class_weights=w)
        opt.zero_grad()
        parts.total.backward()
        opt.step()
        losses.append(parts.recon.item())
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]
    with torch.no_grad():
        acc = (vae(x, sample_posterior=False).logits.argmax(1) == x.argmax(1)).float().mean()
    assert acc > 0.8
