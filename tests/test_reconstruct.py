"""L-MPDD, decoding and refinement with tiny random-weight models (wiring, not quality)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from microlad.errors import ShapeError
from microlad.metadata import TrainingStats
from microlad.reconstruct import (
    axis_schedule,
    decode_volume,
    interpolate_along,
    reconstruct,
    refine_volume,
    sample_latent_volume,
    to_slices,
)


@pytest.fixture(scope="module")
def tiny_model():
    from microlad.diffusion import DDPMSchedule
    from microlad.models import CategoricalVAE, UNet2D, UNetConfig, VAEConfig

    torch.manual_seed(0)
    vae = CategoricalVAE(VAEConfig(n_phases=3, base_channels=8, norm_groups=4)).eval()
    unet = UNet2D(UNetConfig(in_channels=4, base_channels=16, channel_multipliers=(1, 2), norm_groups=4, attention_heads=2)).eval()

    class M:  # the attributes reconstruct() reads from a MicroladModel
        pass

    m = M()
    m.vae, m.unet, m.schedule, m.grey_values = vae, unet, DDPMSchedule(), (0.0, 1.0, 2.0)
    m.training_stats = TrainingStats()
    m.coupling_stop = 0.0
    return m


def test_interpolation_is_cell_centred_linear():
    lat = torch.arange(3, dtype=torch.float32).view(1, 3, 1, 1).expand(2, 3, 2, 2).contiguous()
    up = interpolate_along(lat, 0, 4)
    assert up.shape == (2, 12, 2, 2)
    # voxel k sits at latent coordinate (k + 0.5)/4 - 0.5, clamped to [0, 2]
    expected = np.clip((np.arange(12) + 0.5) / 4 - 0.5, 0, 2)
    np.testing.assert_allclose(up[0, :, 0, 0].numpy(), expected, atol=1e-6)
    # other axes untouched
    lat2 = torch.randn(4, 2, 3, 5)
    assert torch.equal(interpolate_along(lat2, 2, 1), lat2)
    up2 = interpolate_along(lat2, 2, 2)
    assert up2.shape == (4, 2, 3, 10)
    per = interpolate_along(lat, 0, 4, periodic=True)[0, :, 0, 0].numpy()
    # periodic: the first voxel interpolates between the last and first latent cells
    assert per[0] == pytest.approx(0.375 * 2 + 0.625 * 0)


def test_lmpdd_feeds_the_unet_slices_along_z_y_x_in_turn(tiny_model):
    seen = []

    class Spy(torch.nn.Module):
        config = tiny_model.unet.config

        def forward(self, x, t):
            seen.append(tuple(x.shape))
            return torch.zeros_like(x)

    shape = (4, 2, 4, 6)  # C, d, h, w: all different
    sample_latent_volume(Spy(), tiny_model.schedule, shape, steps=5, progress=False, generator=torch.Generator().manual_seed(0))
    # U-Net size multiple is 2: sides are padded up to even (2, 4, 6 already are)
    assert seen == [(2, 4, 4, 6), (4, 4, 6, 2), (6, 4, 2, 4), (2, 4, 4, 6), (4, 4, 6, 2)]  # y-slices are (X, Z)


def test_lmpdd_with_an_oracle_denoiser_recovers_the_clean_volume(tiny_model):
    """An exact ε-oracle in every slicing orientation must lead DDIM to the target x0."""
    sched = tiny_model.schedule
    x0 = torch.randn(4, 4, 6, 8)
    axes = iter(axis_schedule(100))

    class Oracle(torch.nn.Module):
        config = tiny_model.unet.config

        def forward(self, x, t):
            a = next(axes)
            x0s = to_slices(x0, a)
            ab = sched.alphas_cumprod[int(t[0])].float()
            eps = (x - ab.sqrt() * x0s) / (1 - ab).sqrt()
            return sched.training_target(x0s, eps, t)

    # slice coupling off: it reshapes x̂0 on purpose, this checks the axis bookkeeping alone
    z = sample_latent_volume(Oracle(), sched, tuple(x0.shape), steps=10, slice_coupling=False, progress=False,
                             generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(z, x0, atol=1e-3, rtol=1e-3)


def test_lmpdd_on_step_sees_every_step_and_can_stop_early(tiny_model):
    """on_step gets (i, t, axis, z, x̂0) at every step, in order, with the z/y/x axis schedule;
    a hook that never stops leaves the result bit-identical; stopping at the last step returns
    that step's clean estimate, which is what DDIM's last step returns; with an exact oracle
    the clean estimate of an early step is already the target volume."""
    unet, sched, shape = tiny_model.unet.eval(), tiny_model.schedule, (4, 2, 4, 6)
    run = lambda **kw: sample_latent_volume(unet, sched, shape, steps=5, progress=False,
                                            generator=torch.Generator().manual_seed(3), **kw)
    calls = []
    with torch.inference_mode():
        plain = run()
        watched = run(on_step=lambda i, t, axis, z, x0: calls.append((i, t, axis, tuple(z.shape), tuple(x0.shape))))
        stopped_last = run(on_step=lambda i, t, axis, z, x0: i == 4)
    assert torch.equal(watched, plain)
    assert [c[0] for c in calls] == list(range(5)) and [c[2] for c in calls] == list(axis_schedule(5))
    assert [c[1] for c in calls] == sorted((c[1] for c in calls), reverse=True) and calls[0][1] == sched.num_train_timesteps - 1
    assert all(c[3] == c[4] == shape for c in calls)
    torch.testing.assert_close(stopped_last, plain, atol=1e-5, rtol=1e-5)

    x0 = torch.randn(shape)
    axes = iter(axis_schedule(100))

    class Oracle(torch.nn.Module):
        config = tiny_model.unet.config

        def forward(self, x, t):
            x0s = to_slices(x0, next(axes))
            ab = sched.alphas_cumprod[int(t[0])].float()
            return sched.training_target(x0s, (x - ab.sqrt() * x0s) / (1 - ab).sqrt(), t)

    early = sample_latent_volume(Oracle(), sched, shape, steps=10, slice_coupling=False, progress=False,
                                 generator=torch.Generator().manual_seed(1), on_step=lambda i, t, axis, z, x_0: i == 2)
    torch.testing.assert_close(early, x0, atol=1e-3, rtol=1e-3)


def test_decode_volume_matches_direct_slice_decoding(tiny_model):
    vae = tiny_model.vae
    lat = torch.randn(4, 2, 3, 4)
    probs = decode_volume(vae, lat)
    assert probs.shape == (3, 8, 12, 16)
    torch.testing.assert_close(probs.sum(0), torch.ones(8, 12, 16))
    with torch.no_grad():
        # independent recomputation of voxel (z=5, y=7, x=9) from its three decoded slices
        zs = F.interpolate(lat.permute(0, 2, 3, 1).reshape(1, -1, 2), scale_factor=4, mode="linear").reshape(4, 3, 4, 8).permute(0, 3, 1, 2)
        pz = torch.softmax(vae.decode(zs[:, 5][None]), 1)[0, :, 7, 9]
        ys = F.interpolate(lat.permute(0, 1, 3, 2).reshape(1, -1, 3), scale_factor=4, mode="linear").reshape(4, 2, 4, 12).permute(0, 1, 3, 2)
        py = torch.softmax(vae.decode(ys[:, :, 7].transpose(1, 2)[None]), 1)[0, :, 9, 5]  # y-slices laid out (X, Z)
        xs = F.interpolate(lat.reshape(1, -1, 4), scale_factor=4, mode="linear").reshape(4, 2, 3, 16)
        px = torch.softmax(vae.decode(xs[..., 9][None]), 1)[0, :, 5, 7]
    torch.testing.assert_close(probs[:, 5, 7, 9], (pz + py + px) / 3, atol=1e-5, rtol=1e-4)


def test_decoding_and_refinement_treat_the_axes_alike(tiny_model):
    """Relabelling the axes cyclically (z → y → x → z) commutes with decoding and refinement."""
    vae = tiny_model.vae
    lat = torch.randn(4, 2, 3, 4)
    relabel = lambda v: v.permute(0, 3, 1, 2)  # noqa: E731  new (z, y, x) = old (x, z, y)
    probs = decode_volume(vae, lat)
    torch.testing.assert_close(decode_volume(vae, relabel(lat)), relabel(probs), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(refine_volume(vae, relabel(probs), 1), relabel(refine_volume(vae, probs, 1)), atol=1e-6, rtol=1e-5)


def test_chunked_and_unchunked_decoding_agree(tiny_model):
    vae = tiny_model.vae
    lat = torch.randn(4, 4, 4, 4)
    big = decode_volume(vae, lat)
    small = decode_volume(vae, lat, memory_budget=1)  # one slice per call
    torch.testing.assert_close(big, small, atol=1e-5, rtol=1e-5)
    r_big = refine_volume(vae, big, 1)
    r_small = refine_volume(vae, big, 1, memory_budget=1)
    torch.testing.assert_close(r_big, r_small, atol=1e-5, rtol=1e-5)


def test_slice_options_object_and_keywords_are_the_same_settings(tiny_model):
    from microlad.reconstruct import SliceOptions

    vae = tiny_model.vae
    lat = torch.randn(4, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    opts = SliceOptions(periodic=True, memory_budget=1)
    assert torch.equal(decode_volume(vae, lat, opts), decode_volume(vae, lat, periodic=True, memory_budget=1))
    assert not torch.allclose(decode_volume(vae, lat, opts), decode_volume(vae, lat))  # periodic borders differ
    assert SliceOptions.merge(opts, progress=True) == SliceOptions(periodic=True, memory_budget=1, progress=True)
    assert SliceOptions.merge(None) == SliceOptions()
    with pytest.raises(TypeError, match="perodic"):
        decode_volume(vae, lat, perodic=True)  # a typo is an error, not a silently ignored setting
    from microlad.errors import InputError

    with pytest.raises(InputError, match="memory_budget"):
        SliceOptions(memory_budget=0)


@pytest.mark.parametrize("shape", [(16, 16, 16), (8, 16, 24), (12, 8, 20)])
def test_reconstruct_any_shape_and_same_seed_same_volume(tiny_model, shape):
    a = reconstruct(tiny_model, shape, n=2, seed=3, steps=4, refine=1, progress=False, return_probabilities=True)
    b = reconstruct(tiny_model, shape, n=1, seed=4, steps=4, refine=1, progress=False)
    assert [r.seed for r in a] == [3, 4]
    assert a[0].labels.shape == shape and a[0].labels.dtype == np.uint8
    assert a[0].probabilities.shape == (3, *shape)
    np.testing.assert_array_equal(a[1].labels, b[0].labels)  # volume i uses seed + i
    assert not np.array_equal(a[0].labels, a[1].labels) or a[0].labels.max() == a[0].labels.min()


def test_periodic_and_ancestral_and_averaged_options_run(tiny_model):
    for kw in ({"periodic": True}, {"sampler": "ancestral"}, {"average_axes": True}):
        r = reconstruct(tiny_model, (8, 12, 16), steps=3, refine=1, progress=False, **kw)[0]
        assert r.labels.shape == (8, 12, 16)
    r1 = reconstruct(tiny_model, (8, 8, 8), steps=3, sampler="ancestral", seed=5, progress=False)[0]
    r2 = reconstruct(tiny_model, (8, 8, 8), steps=3, sampler="ddpm", seed=5, progress=False)[0]  # the old spelling
    np.testing.assert_array_equal(r1.labels, r2.labels)
    from microlad.errors import InputError

    with pytest.raises(InputError, match="sampler must be one of"):
        reconstruct(tiny_model, (8, 8, 8), steps=3, sampler="euler", progress=False)


@pytest.mark.parametrize("bad", [(16, 16), (16, 16, 18), (0, 16, 16), (16, 16, 2)])
def test_wrong_shape_is_a_clear_error(tiny_model, bad):
    with pytest.raises(ShapeError, match="shape|multiple"):
        reconstruct(tiny_model, bad, progress=False)


def test_match_fractions_hits_the_target_and_moves_only_near_ties():
    from microlad.reconstruct.decode import match_fractions

    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 24, 24, 24, generator=g) * 2, 0)
    target = torch.tensor([0.5, 0.3, 0.2])
    out = match_fractions(probs, target)
    lab = out.argmax(0)
    frac = torch.bincount(lab.reshape(-1), minlength=3).float() / lab.numel()
    torch.testing.assert_close(frac, target, atol=1.5e-3, rtol=0)
    torch.testing.assert_close(out.sum(0), torch.ones(24, 24, 24))
    # voxels whose phase changed were close calls: their original top-2 margin is small
    before = probs.argmax(0)
    changed = lab != before
    top2 = probs.topk(2, dim=0).values
    margin = (top2[0] - top2[1])
    assert changed.any() and margin[changed].mean() < margin[~changed].mean()


def test_reconstruct_match_vf(tiny_model):
    target = [0.5, 0.3, 0.2]
    free = reconstruct(tiny_model, (16, 16, 16), steps=3, refine=1, progress=False)[0]
    r = reconstruct(tiny_model, (16, 16, 16), steps=3, refine=1, progress=False, match_vf=target)[0]
    frac = np.bincount(r.labels.ravel(), minlength=3) / r.labels.size
    frac_free = np.bincount(free.labels.ravel(), minlength=3) / free.labels.size
    assert np.abs(frac_free - target).max() > 0.05  # the random model is far off
    np.testing.assert_allclose(frac, target, atol=3e-3)
    from microlad.errors import InputError

    with pytest.raises(InputError, match="3 positive numbers"):
        reconstruct(tiny_model, (16, 16, 16), steps=1, progress=False, match_vf=[0.5, 0.5])
    with pytest.raises(InputError, match="training volume fractions"):
        reconstruct(tiny_model, (16, 16, 16), steps=1, progress=False, match_vf=True)


def test_reconstruct_matches_stored_image_fractions_by_default(tiny_model):
    free = reconstruct(tiny_model, (16, 16, 16), steps=3, refine=1, progress=False)[0]  # no stats stored: no matching
    target = [0.2, 0.5, 0.3]
    tiny_model.training_stats = TrainingStats(volume_fraction=(0.6, 0.2, 0.2), image_volume_fraction=tuple(target))
    try:
        auto = reconstruct(tiny_model, (16, 16, 16), steps=3, refine=1, progress=False)[0]
        off = reconstruct(tiny_model, (16, 16, 16), steps=3, refine=1, progress=False, match_vf=False)[0]
        tiny_model.training_stats = TrainingStats(volume_fraction=(0.6, 0.2, 0.2))  # older models: patch mean
        old = reconstruct(tiny_model, (16, 16, 16), steps=3, refine=1, progress=False, match_vf=True)[0]
    finally:
        tiny_model.training_stats = TrainingStats()
    frac = np.bincount(auto.labels.ravel(), minlength=3) / auto.labels.size
    np.testing.assert_allclose(frac, target, atol=3e-3)  # the image fractions win over the patch mean
    np.testing.assert_array_equal(off.labels, free.labels)
    np.testing.assert_allclose(np.bincount(old.labels.ravel(), minlength=3) / old.labels.size, [0.6, 0.2, 0.2], atol=3e-3)


def test_match_fractions_large_shift_picks_the_most_likely_voxels():
    from microlad.reconstruct.decode import match_fractions

    # a minority phase whose probabilities mostly sit far below 1/2, spread over decades:
    # matching 0.3 needs a threshold near p1 ≈ 0.03, far from the argmax's 0.5 (the Berea
    # pore phase looks like this; a fixed decaying step stalled at 0.292 here)
    g = torch.Generator().manual_seed(0)
    n = 40 ** 3
    p1 = torch.where(torch.rand(n, generator=g) < 0.12, 0.6 + 0.4 * torch.rand(n, generator=g), 10 ** (-6 + 5 * torch.rand(n, generator=g)))
    probs = torch.stack([1 - p1, p1]).reshape(2, 40, 40, 40)
    lab = match_fractions(probs, torch.tensor([0.7, 0.3])).argmax(0).reshape(-1)
    assert abs(lab.float().mean().item() - 0.3) < 2e-3
    assert p1[lab == 1].min() >= p1[lab == 0].max()  # a threshold on p1: the closest calls flipped


def test_match_fractions_on_a_subsample_matches_the_whole_volume():
    from microlad.reconstruct.decode import match_fractions

    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(3 * torch.randn(3, 128, 128, 128, generator=g), dim=0)  # 2.1 M voxels > the 1 M fitted
    lab = match_fractions(probs, torch.tensor([0.5, 0.3, 0.2])).argmax(0)
    frac = torch.bincount(lab.reshape(-1), minlength=3).double() / lab.numel()
    torch.testing.assert_close(frac, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), atol=2e-3, rtol=0)


def test_slice_coupling_is_on_by_default_and_can_be_turned_off(tiny_model):
    kw = dict(steps=4, refine=0, progress=False, return_probabilities=True, match_vf=False)
    on = reconstruct(tiny_model, (16, 16, 16), seed=2, **kw)[0]
    on2 = reconstruct(tiny_model, (16, 16, 16), seed=2, slice_coupling=True, **kw)[0]
    off = reconstruct(tiny_model, (16, 16, 16), seed=2, slice_coupling=False, **kw)[0]
    np.testing.assert_array_equal(on.probabilities, on2.probabilities)
    assert not np.allclose(on.probabilities, off.probabilities)
