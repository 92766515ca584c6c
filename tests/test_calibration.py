"""The per-model coupling window: what it changes in L-MPDD, how it is chosen, where it is stored."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from microlad.descriptors import s2_slices
from microlad.metadata import TrainingStats
from microlad.reconstruct import calibration, sample_latent_volume
from microlad.reconstruct.api import Reconstruction


@pytest.fixture(scope="module")
def nets():
    from microlad.diffusion import DDPMSchedule
    from microlad.models import CategoricalVAE, UNet2D, UNetConfig, VAEConfig

    torch.manual_seed(0)
    vae = CategoricalVAE(VAEConfig(n_phases=2, base_channels=8, norm_groups=4)).eval()
    unet = UNet2D(UNetConfig(in_channels=4, base_channels=16, channel_multipliers=(1, 2), norm_groups=4, attention_heads=2)).eval()
    return vae, unet, DDPMSchedule()


def _latent(nets, **kw):
    vae, unet, sched = nets
    return sample_latent_volume(unet, sched, (4, 6, 6, 6), steps=6, generator=torch.Generator().manual_seed(1), progress=False, **kw)


def test_window_bounds_reproduce_coupled_and_plain_lmpdd(nets):
    coupled, plain = _latent(nets), _latent(nets, slice_coupling=False)
    assert not torch.equal(coupled, plain)  # the coupling does act on this latent
    assert torch.equal(_latent(nets, coupling_stop=0.0), coupled)
    assert torch.equal(_latent(nets, coupling_stop=1.0), plain)  # no DDIM timestep reaches T
    middle = _latent(nets, coupling_stop=0.5)
    assert not torch.equal(middle, coupled) and not torch.equal(middle, plain)


def _blobs(seed: int, side: int = 32) -> np.ndarray:
    """Independent structure with a known S2: smoothed noise thresholded at 30 %."""
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(np.random.default_rng(seed).standard_normal((side,) * 3), 2.0, mode="wrap")
    return (f > np.quantile(f, 0.7)).astype(np.uint8)


def test_calibration_picks_the_window_whose_volumes_have_the_training_s2(monkeypatch):
    truth = [_blobs(s) for s in range(2)]
    cutoff = 16
    ref = [np.mean([s2_slices(v, phase=p, axis=a, cutoff=cutoff, periodic=False) for v in truth for a in range(3)], axis=0)
           for p in range(2)]
    rng = np.random.default_rng(5)
    calls = []

    def fake_reconstruct(model, shape, *, n, seed, coupling_stop, progress):
        calls.append((tuple(shape), n, seed, coupling_stop))
        if coupling_stop == 0.5:
            vols = truth
        else:  # same fractions, no spatial structure: S2 drops to VF^2 after r = 0
            vols = [rng.permutation(v.ravel()).reshape(v.shape) for v in truth]
        return [Reconstruction(labels=v, seed=seed + i) for i, v in enumerate(vols)]

    monkeypatch.setattr("microlad.reconstruct.api.reconstruct", fake_reconstruct)

    class Model:
        patch_size, size_multiple = 32, 8
        training_stats = TrainingStats(s2_radial_mean=[r.tolist() for r in ref], s2_cutoff=cutoff, s2_periodic=False)

    cal = calibration.calibrate_coupling_stop(Model(), n=2, seed=7)
    assert cal.coupling_stop == 0.5
    assert cal.scores[0.5] < 1e-9
    # a shuffled volume has S2(0) = φ and S2(r > 0) = φ² (no correlation), so its score is analytic
    phi = [float(np.mean([(v == p).mean() for v in truth])) for p in range(2)]
    expected = max(abs(f + cutoff * f * f - r.sum()) / r.sum() for f, r in zip(phi, ref))
    for k in (0.0, 0.25, 0.75, 1.0):
        assert cal.scores[k] == pytest.approx(expected, rel=0.05)
    assert [c[3] for c in calls] == list(calibration.COUPLING_STOP_CANDIDATES)
    assert {c[:3] for c in calls} == {((32, 32, 32), 2, 7)}  # paired: same seeds and size for every candidate
    doc = cal.to_dict()
    assert doc["coupling_stop"] == 0.5 and set(doc["coupling_calibration"]["scores"]) == {"0", "0.25", "0.5", "0.75", "1"}


def test_no_s2_statistics_means_no_calibration():
    class Model:
        patch_size, size_multiple = 32, 8
        training_stats = TrainingStats()

    assert calibration.calibrate_coupling_stop(Model()) is None


def test_stored_window_round_trips_and_is_the_reconstruct_default(nets, tmp_path):
    from microlad.model import MicroladModel, load_model

    vae, unet, sched = nets
    m = MicroladModel(vae, unet, sched, grey_values=(0.0, 1.0), patch_size=32, config={"reconstruct": {"coupling_stop": 1.0}})
    m.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.coupling_stop == 1.0
    kw = dict(n=1, seed=3, steps=6, progress=False, smooth=False, match_vf=False)
    default = back.reconstruct((16, 16, 16), **kw)[0].labels
    np.testing.assert_array_equal(default, back.reconstruct((16, 16, 16), slice_coupling=False, **kw)[0].labels)
    assert MicroladModel(vae, unet, sched, grey_values=(0.0, 1.0), patch_size=32).coupling_stop == 0.0
    with pytest.raises(Exception, match="coupling_stop must be in"):
        back.reconstruct((16, 16, 16), coupling_stop=1.5, **kw)


# -- the 2D prior's sampler -------------------------------------------------------------------
def _blobs_2d(seed: int, n: int = 16, side: int = 32) -> np.ndarray:
    """(n, side, side) smoothed noise thresholded at 40 %: a known, non-trivial S2 and perimeter."""
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(np.random.default_rng(seed).standard_normal((n, side, side)), (0, 1.5, 1.5), mode="wrap")
    return (f > np.quantile(f, 0.6)).astype(np.uint8)


def _reference_2d(labels: np.ndarray, cutoff: int = 8) -> np.ndarray:
    """(2, cutoff + 1) stack-averaged radial S2 (the training statistics' layout)."""
    from microlad.descriptors import s2_radial

    return np.stack([np.mean([s2_radial(lab, phase=p, cutoff=cutoff, periodic=False) for lab in labels], axis=0)
                     for p in range(2)])


def test_prior_score_is_zero_on_the_training_stats_and_analytic_on_shuffled_pixels():
    from microlad.descriptors import slice_perimeter_density

    truth = _blobs_2d(0)
    per = [slice_perimeter_density(truth, phase=p) for p in range(2)]
    s2 = _reference_2d(truth)
    score, e_l, e_s2 = calibration.prior_sampler_score(truth, per, s2)
    assert score == pytest.approx(0.0, abs=1e-9) and e_l == [0.0, 0.0] and e_s2 == pytest.approx([0.0, 0.0], abs=1e-12)
    # a pixel shuffle keeps each phase's fraction φ and removes all correlation: S2(r > 0) = φ²
    rng = np.random.default_rng(1)
    shuffled = np.stack([rng.permutation(lab.ravel()).reshape(lab.shape) for lab in truth])
    score, e_l, e_s2 = calibration.prior_sampler_score(shuffled, per, s2)
    for p in range(2):
        phi = s2[p, 0]  # ρ(r > 0) of the shuffle is 0: the deviation is −ρ_train(r) (1 − φ), analytic
        dev = -(s2[p, 1:] - phi * phi) / (phi - phi * phi) * (1 - phi)
        assert e_s2[p] == pytest.approx(dev[np.abs(dev).argmax()], abs=0.01)
        assert e_l[p] > 1.0  # speckle has far more boundary than blobs
    assert score == pytest.approx(max(max(abs(a) / 0.03, abs(b) / 0.02) for a, b in zip(e_l, e_s2)))
    # an absent phase (no boundary in the training statistics) is skipped, not divided by zero
    assert calibration.prior_sampler_score(truth, [per[0], 0.0], s2)[1][1] is None
    # the S2 part ignores the set's own phase fraction: a thicker copy of each blob pattern by
    # one pixel moves S2 at every r but keeps ρ's shape far closer than S2 itself
    from scipy.ndimage import binary_dilation

    fatter = np.stack([binary_dilation(lab == 1) for lab in truth]).astype(np.uint8)
    raw = (_reference_2d(fatter)[1] - s2[1]) / s2[1, 0]
    _, _, e = calibration.prior_sampler_score(fatter, per, s2)
    assert abs(e[1]) < 0.5 * np.abs(raw[1:]).max()


def test_prior_calibration_picks_the_sampler_whose_samples_match_and_pairs_the_seeds():
    from microlad.descriptors import slice_perimeter_density

    truth = _blobs_2d(3)
    s2 = _reference_2d(truth)
    per = [slice_perimeter_density(truth, phase=p) for p in range(2)]
    calls = []

    class Model:
        patch_size, size_multiple = 30, 8  # rounded up to 32
        training_stats = TrainingStats(s2_radial_mean=s2.tolist(), specific_surface_area=per, s2_cutoff=8)

        def sample_2d(self, n, *, size, steps, sampler, seed, progress):
            calls.append((n, size, seed, sampler, steps))
            if (sampler, steps) == ("dpm2m", 50):
                return truth
            return _blobs_2d(3 + steps)  # other blobs of the same kind: near, not equal

    cal = calibration.calibrate_prior_sampler(Model(), n=16, seed=4)
    assert (cal.sampler, cal.steps) == ("dpm2m", 50) and cal.scores["dpm2m:50"] == pytest.approx(0.0, abs=1e-9)
    assert all(v > 0 for k, v in cal.scores.items() if k != "dpm2m:50")
    assert [(c[3], c[4]) for c in calls] == list(calibration.PRIOR_SAMPLER_CANDIDATES)
    assert {c[:3] for c in calls} == {(16, 32, 4)}  # paired: the same seed, count and size for every candidate
    assert cal.fraction_error["dpm2m:50"] == pytest.approx([0.0, 0.0], abs=1e-12)
    doc = cal.to_dict()
    assert doc["sampler"] == "dpm2m" and doc["steps"] == 50 and set(doc["calibration"]["scores"]) == {
        "ddim:50", "ddim:25", "dpm2m:50", "dpm2m:25"}

    class Bare(Model):
        training_stats = TrainingStats()

    assert calibration.calibrate_prior_sampler(Bare()) is None


def test_stored_prior_sampler_round_trips_and_is_the_sample_2d_default(nets, tmp_path):
    from microlad.model import MicroladModel, load_model

    vae, unet, sched = nets
    plain = MicroladModel(vae, unet, sched, grey_values=(0.0, 1.0), patch_size=32)
    assert plain.prior_sampler == ("ddim", 50)
    np.testing.assert_array_equal(plain.sample_latents(2, size=16, seed=3),
                                  plain.sample_latents(2, size=16, seed=3, sampler="ddim", steps=50))
    m = MicroladModel(vae, unet, sched, grey_values=(0.0, 1.0), patch_size=32,
                      config={"prior_sampler": {"sampler": "dpm2m", "steps": 7}})
    m.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.prior_sampler == ("dpm2m", 7)
    default = back.sample_latents(2, size=16, seed=3)
    np.testing.assert_array_equal(default, back.sample_latents(2, size=16, seed=3, sampler="dpm2m", steps=7))
    assert not torch.equal(default, back.sample_latents(2, size=16, seed=3, sampler="ddim", steps=7))
    # steps alone keep the calibrated sampler; a sampler alone gets that sampler's default steps
    np.testing.assert_array_equal(back.sample_latents(2, size=16, seed=3, steps=5),
                                  back.sample_latents(2, size=16, seed=3, sampler="dpm2m", steps=5))
    np.testing.assert_array_equal(back.sample_latents(2, size=16, seed=3, sampler="ddim"),
                                  plain.sample_latents(2, size=16, seed=3))
