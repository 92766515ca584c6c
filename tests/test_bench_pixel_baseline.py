"""The pixel-space baseline of bench/ (pixel_baseline.py) and its perimeter metric (bench_pixel_baseline.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.measure import perimeter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_pixel_baseline as bpb  # noqa: E402
import pixel_baseline as pb  # noqa: E402
from microlad.data import onehot  # noqa: E402
from microlad.diffusion import DDPMSchedule  # noqa: E402
from microlad.models import UNetConfig  # noqa: E402


def _image(size: int = 64, seed: int = 0, sigma: float = 2.0) -> np.ndarray:
    """Three-phase blobby label image (noise smoothed over ``sigma`` px, thresholded at terciles)."""
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(np.random.default_rng(seed).standard_normal((size, size)), sigma)
    return np.digitize(f, np.quantile(f, [1 / 3, 2 / 3])).astype(np.uint8)


def test_perimeter_of_tiles_stacked_into_a_volume_matches_the_reference_exactly():
    img = _image(128)  # four 32² tiles ... stacked 8 times gives 32 z-slices of 32²
    tiles = img.reshape(4, 32, 4, 32).swapaxes(1, 2).reshape(16, 32, 32)
    vol = np.concatenate([tiles, tiles])  # (32, 32, 32): every z-slice is a tile, each tile twice
    fid = bpb.perimeter_fidelity([vol], img, 3)
    assert np.allclose(fid["signed"][:, 0], 0.0, atol=1e-12)
    # the density is skimage's perimeter per pixel of the tiles
    expected = np.mean([perimeter(t == 1) for t in tiles]) / 32**2
    assert fid["reference"][1] == pytest.approx(expected)
    # other axes slice across tiles, whose boundaries are not the image's: not zero
    assert np.abs(fid["signed"][:, 1:]).max() > 0.01


def test_perimeter_error_sees_finer_structure():
    coarse, fine = _image(64, 1, sigma=4.0), _image(64, 2, sigma=1.0)
    vol = np.stack([fine] * 64)  # slices normal to z: the fine pattern, many more interfaces
    fid = bpb.perimeter_fidelity([vol], coarse, 3)
    assert fid["signed"][:, 0].min() > 0.5
    assert bpb.perimeter_fidelity([vol], fine, 3)["signed"][:, 0] == pytest.approx(0.0, abs=1e-12)


def _tiny_config(p: int = 3) -> UNetConfig:
    return UNetConfig(in_channels=p, base_channels=8, channel_multipliers=(1, 2), num_res_blocks=1,
                      attention=True, attention_heads=2, norm_groups=4)


def test_training_for_a_cpu_budget_writes_safetensors_that_load_to_the_same_sampler(tmp_path):
    settings = pb.PixelTrainSettings(cpu_budget_s=0.5, batch=2, patch=16, warmup_steps=2, log_every=1)
    trained = pb.train_pixel(_image(64), tmp_path, settings, unet_config=_tiny_config())
    assert (tmp_path / "unet_ema.safetensors").is_file() and (tmp_path / "config.json").is_file()
    r = trained.report
    assert r["steps"] >= 1 and r["cpu_s"] >= 0.5 and r["wall_s"] > 0
    loaded = pb.load_pixel(tmp_path)
    for a, b in zip(trained.unet.state_dict().values(), loaded.unet.state_dict().values()):
        assert torch.equal(a, b)
    v1 = pb.sample_pixel_volume(loaded, (8, 8, 8), steps=3, seed=5)
    v2 = pb.sample_pixel_volume(loaded, (8, 8, 8), steps=3, seed=5)
    assert v1.shape == (8, 8, 8) and v1.dtype == torch.uint8 and int(v1.max()) <= 2
    assert torch.equal(v1, v2)


class _Oracle(torch.nn.Module):
    """A denoiser that knows the answer: its output's clean estimate is a fixed phase everywhere."""

    def __init__(self, schedule: DDPMSchedule, phase: int, p: int = 3) -> None:
        super().__init__()
        self.schedule, self.phase, self.p = schedule, phase, p
        self.config = _tiny_config(p)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x0 = onehot(torch.full((x.shape[0], *x.shape[2:]), self.phase, dtype=torch.uint8), self.p, dim=1) * 2 - 1
        return self.schedule.output_for_x0(x, x0, t)


@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
def test_multiplane_sampling_in_pixel_space_lands_on_the_denoisers_clean_estimate(sampler):
    schedule = DDPMSchedule()
    model = pb.PixelBaseline(_Oracle(schedule, phase=2), schedule, 3, {})
    vol = pb.sample_pixel_volume(model, (8, 12, 16), steps=6, sampler=sampler, seed=0)
    assert vol.shape == (8, 12, 16)
    assert torch.all(vol == 2)
