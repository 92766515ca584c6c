"""torch descriptors: same numbers as numpy on one-hot input, finite gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import microlad.descriptors as d
import microlad.descriptors.torch as dt
from microlad.errors import InputError, ShapeError


def onehot(labels: np.ndarray, n_phases: int, dtype=torch.float64) -> torch.Tensor:
    """(P, *spatial) one-hot tensor of a label array."""
    t = torch.nn.functional.one_hot(torch.as_tensor(labels.astype(np.int64)), n_phases)
    return t.movedim(-1, 0).to(dtype)


def test_volume_fraction_shapes(sofc, leopard):
    x = onehot(sofc[:64, :64], 3)
    np.testing.assert_allclose(dt.volume_fraction(x).numpy(), d.volume_fraction(sofc[:64, :64]), atol=1e-12)
    batch = torch.stack([x, x.flip(-1)])  # (B, P, H, W) is ambiguous without spatial_dims
    with pytest.raises(ShapeError):
        dt.volume_fraction(batch)
    assert dt.volume_fraction(batch, spatial_dims=2).shape == (2, 3)
    vol = onehot(leopard[:20, :20, :20], 2)
    np.testing.assert_allclose(
        dt.volume_fraction(vol, spatial_dims=3).numpy(), d.volume_fraction(leopard[:20, :20, :20]), atol=1e-12
    )
    assert dt.volume_fraction(vol[None]).shape == (1, 2)
    with pytest.raises(InputError):
        dt.volume_fraction(np.zeros((2, 4, 4)))


@pytest.mark.parametrize("periodic", [True, False])
def test_s2_matches_numpy_on_onehot(leopard, sofc, periodic):
    vol = leopard[:32, :40, :48]
    x = onehot(vol, 2, torch.float32)
    for axis in range(3):
        ours = dt.s2_slices(x, phase=1, axis=axis, periodic=periodic).numpy()
        np.testing.assert_allclose(ours, d.s2_slices(vol, phase=1, axis=axis, periodic=periodic), atol=2e-6)
        ours = dt.s2_axis(x[1], axis=axis, periodic=periodic).numpy()
        np.testing.assert_allclose(ours, d.s2_axis(vol, phase=1, axis=axis, periodic=periodic), atol=2e-6)
    imgs = sofc[:128, :128].reshape(2, 64, 2, 64).transpose(0, 2, 1, 3).reshape(4, 64, 64)
    batch = torch.stack([onehot(im, 3) for im in imgs])  # (B, P, H, W)
    curves = dt.s2_radial(batch, phase=2, periodic=periodic, cutoff=20)
    assert curves.shape == (4, 21)
    for im, curve in zip(imgs, curves):
        np.testing.assert_allclose(curve.numpy(), d.s2_radial(im, phase=2, periodic=periodic, cutoff=20), atol=1e-12)
    np.testing.assert_allclose(
        curves.mean(0).numpy(), d.s2_radial(imgs, phase=2, periodic=periodic, cutoff=20), atol=1e-12
    )
    axis_curves = dt.s2_axis(batch, phase=0, axis=1, spatial_dims=2, periodic=periodic)
    np.testing.assert_allclose(axis_curves[3].numpy(), d.s2_axis(imgs[3], phase=0, axis=1, periodic=periodic), atol=1e-12)


def test_ssa_matches_numpy(leopard, berea, sofc, carbonate):
    vol = leopard[:48, :48, :48]
    x = onehot(vol, 2)
    for phase in (0, 1):
        ours = float(dt.specific_surface_area(x, phase=phase, spatial_dims=3, voxel_size=2.25))
        assert ours == pytest.approx(d.specific_surface_area(vol, phase=phase, method="gradient", voxel_size=2.25), rel=1e-9)
    # Cross-calibration: torch estimator vs marching cubes / squares on real data.
    for labels, phase, nph in [(leopard, 1, 2), (berea[:64, :64, :64], 0, 2), (sofc[:256, :256], 1, 3), (carbonate, 1, 2)]:
        x = onehot(labels, nph, torch.float32)
        sd = labels.ndim
        ours = float(dt.specific_surface_area(x, phase=phase, spatial_dims=sd))
        assert ours == pytest.approx(d.specific_surface_area(labels, phase=phase), rel=0.05)
    batch = onehot(sofc[:64, :128], 3).reshape(3, 64, 2, 64).permute(2, 0, 1, 3)  # (B=2, P, H, W)
    assert dt.specific_surface_area(batch, phase=0, spatial_dims=2).shape == (2,)


def test_gradients_are_finite():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 12, 12, 12, generator=gen, dtype=torch.float64, requires_grad=True)
    probs = logits.softmax(dim=1)
    loss = (
        dt.volume_fraction(probs).sum()
        + dt.s2_slices(probs, phase=1, axis=0).sum()
        + dt.s2_slices(probs, phase=2, axis=2, periodic=False).sum()
        + dt.s2_axis(probs, phase=0, axis=1, periodic=False).sum()
        + dt.specific_surface_area(probs, phase=1).sum()
        + dt.s2_error(dt.s2_radial(probs[:, :, 0], phase=1), np.full(7, 0.1)).sum()
    )
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # Hard masks (|grad u| = 0 almost everywhere) still give finite gradients.
    hard = onehot(np.zeros((6, 6, 6), np.uint8), 2).requires_grad_(True)
    dt.specific_surface_area(hard, phase=0, spatial_dims=3).backward()
    assert torch.isfinite(hard.grad).all()


def test_gradcheck_small():
    gen = torch.Generator().manual_seed(1)
    field = torch.rand(2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: dt.s2_radial(f, periodic=False), (field,))
    assert torch.autograd.gradcheck(lambda f: dt.s2_axis(f, axis=1, spatial_dims=2), (field,))
    assert torch.autograd.gradcheck(lambda f: dt.specific_surface_area(f, spatial_dims=2), (field,))


def test_straight_through_onehot():
    gen = torch.Generator().manual_seed(2)
    probs = torch.rand(2, 3, 5, 5, generator=gen).softmax(dim=1).requires_grad_(True)
    hard = dt.straight_through_onehot(probs)
    expected = torch.nn.functional.one_hot(probs.argmax(dim=1), 3).movedim(-1, 1).float()
    assert torch.equal(hard, expected)
    weights = torch.rand(hard.shape, generator=gen)
    (hard * weights).sum().backward()
    assert torch.equal(probs.grad, weights)  # identity in the backward pass
    assert torch.equal(dt.straight_through_onehot(probs[0], dim=0), expected[0])


def test_s2_error_matches_numpy():
    ref = np.array([0.4, 0.3, 0.25])
    gen = torch.tensor([[0.42, 0.31, 0.2], [0.4, 0.3, 0.25]], dtype=torch.float64, requires_grad=True)
    np.testing.assert_allclose(dt.s2_error(gen, ref).detach().numpy(), d.s2_error(gen.detach().numpy(), ref), rtol=1e-12)
    assert dt.s2_error(gen, ref)[1] == 0.0
    with pytest.raises(ShapeError):
        dt.s2_error(gen[:, :2], ref)
