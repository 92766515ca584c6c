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
