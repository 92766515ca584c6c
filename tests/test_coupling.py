"""Isotropic slice coupling: cross-slice correlation lifted to the in-plane one, nothing else."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from microlad.diffusion import DDPMSchedule
from microlad.reconstruct.coupling import coupled_output, couple_slices


def _lag1(x: np.ndarray, axis: int) -> float:
    """Independent reference: Pearson-style lag-1 correlation along ``axis`` of (C, d, h, w)."""
    x = x - x.mean(axis=(1, 2, 3), keepdims=True)
    n = x.shape[axis]
    a, b = np.take(x, range(n - 1), axis=axis), np.take(x, range(1, n), axis=axis)
    return float((a * b).mean() / (x * x).mean())


def _field(sigmas, shape=(4, 24, 32, 32), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([gaussian_filter(rng.standard_normal(shape[1:]), sigmas, mode="wrap") for _ in range(shape[0])])


def test_white_across_slices_is_lifted_to_the_in_plane_correlation():
    x = _field((0.0, 1.5, 1.5))  # correlated within z-slices, independent across them
    in_plane = (_lag1(x, 2) + _lag1(x, 3)) / 2
    assert _lag1(x, 1) < 0.1 < 0.8 < in_plane < 0.9
    out = couple_slices(torch.from_numpy(x).float(), axis=0).numpy()
    assert in_plane <= _lag1(out, 1) + 1e-6 < in_plane + 0.1  # smallest σ on the grid that reaches it
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3), ddof=1), x.std(axis=(1, 2, 3), ddof=1), rtol=1e-4)
    # only the slicing axis is filtered: within-slice correlation does not drop
    assert _lag1(out, 2) >= _lag1(x, 2) - 0.02


@pytest.mark.parametrize("axis", [1, 2])
def test_other_axes_and_already_correlated_volumes(axis):
    sig = [1.5, 1.5, 1.5]
    sig[axis] = 0.0
    x = torch.from_numpy(_field(tuple(sig))).float()
    out = couple_slices(x, axis=axis).numpy()
    assert _lag1(out, axis + 1) >= (sum(_lag1(x.numpy(), d) for d in (1, 2, 3) if d != axis + 1) / 2) - 1e-6
    smooth_across = torch.from_numpy(_field((4.0, 1.0, 1.0))).float()  # more correlated across than within
    assert couple_slices(smooth_across, axis=0) is smooth_across


def test_coupled_output_is_the_model_output_of_the_coupled_clean_estimate():
    sched = DDPMSchedule()
    x0 = torch.from_numpy(_field((0.0, 2.0, 2.0), shape=(4, 12, 16, 16))).float()
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    t = 400
    xt = sched.add_noise(x0, eps, t)
    out = coupled_output(sched, xt, sched.training_target(x0, eps, t), t, axis=0)
    got, _ = sched.predict_x0_eps(xt, out, t)
    torch.testing.assert_close(got, couple_slices(x0, axis=0), atol=1e-4, rtol=1e-4)
