"""Perimeter-calibrated smoothing (microlad.reconstruct.smoothing) and the vectorised
marching-squares perimeter it measures with.

References: scikit-image's find_contours (the perimeter), scipy's gaussian_filter (the
blur), and a synthetic volume whose clean structure is known (the calibration).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import measure

from microlad.descriptors import slice_perimeter_density
from microlad.descriptors._surface import marching_squares_length
from microlad.reconstruct.decode import match_fractions
from microlad.reconstruct.smoothing import blur_probabilities, calibrate_sigma, perimeter_ratio, perimeter_ratios, smooth_to_perimeter
from microlad.synthetic import random_field_labels


def _find_contours_length(mask: np.ndarray) -> float:
    contours = measure.find_contours(mask.astype(np.float32), 0.5)
    return float(sum(np.sqrt((np.diff(c, axis=0) ** 2).sum(axis=1)).sum() for c in contours))


@pytest.mark.parametrize("density", [0.05, 0.3, 0.5, 0.9])
def test_marching_squares_length_equals_scikit_image_find_contours(density):
    rng = np.random.default_rng(int(density * 100))
    for shape in [(37, 53), (64, 64), (2, 9)]:
        mask = rng.random(shape) < density
        assert marching_squares_length(mask) == pytest.approx(_find_contours_length(mask), rel=1e-12, abs=1e-9)


def test_slice_perimeter_of_a_stack_equals_the_per_slice_scikit_image_lengths():
    vol = random_field_labels((12, 30, 41), fractions=(0.3, 0.4, 0.3), correlation_length=2.0, periodic=False, seed=3)
    for axis in range(3):
        for phase in range(3):
            stack = np.moveaxis(vol == phase, axis, 0)
            want = sum(_find_contours_length(s) for s in stack) / vol.size
            assert slice_perimeter_density(vol, phase=phase, axis=axis) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("periodic, mode", [(False, "nearest"), (True, "wrap")])
def test_blur_matches_scipy_gaussian_filter_and_keeps_phase_sums(periodic, mode):
    rng = np.random.default_rng(0)
    raw = rng.random((3, 14, 16, 18)).astype(np.float32)
    probs = torch.from_numpy(raw / raw.sum(0, keepdims=True))
    sigma = 0.8
    half = int(3 * sigma + 0.999)
    got = blur_probabilities(probs, sigma, periodic=periodic).numpy()
    for p in range(3):
        want = ndimage.gaussian_filter(probs[p].double().numpy(), sigma, mode=mode, radius=half)
        np.testing.assert_allclose(got[p], want, atol=1e-5)
    np.testing.assert_allclose(got.sum(0), 1.0, atol=1e-5)
    assert blur_probabilities(probs, 0.0) is probs


def _noisy_probabilities(clean: np.ndarray, flip: float, seed: int) -> torch.Tensor:
    """One-hot of ``clean`` with a fraction ``flip`` of voxels given random phases."""
    rng = np.random.default_rng(seed)
    noisy = clean.copy()
    where = rng.random(clean.shape) < flip
    noisy[where] = rng.integers(0, clean.max() + 1, size=int(where.sum()))
    onehot = np.eye(clean.max() + 1, dtype=np.float32)[noisy]  # (Z, Y, X, P)
    return torch.from_numpy(np.moveaxis(onehot, -1, 0).copy())


def test_calibration_restores_the_clean_structures_perimeter_from_speckled_probabilities():
    clean = random_field_labels((48, 48, 48), fractions=(0.35, 0.65), correlation_length=3.0, periodic=False, seed=1)
    reference = [slice_perimeter_density(clean, phase=p, axis=0) for p in range(2)]  # the "training images'" L_A
    probs = _noisy_probabilities(clean, 0.08, seed=2)
    target = torch.tensor([0.35, 0.65])
    label = lambda q: match_fractions(q, target)
    assert perimeter_ratio(label(probs).argmax(0).numpy().astype(np.uint8), reference) > 1.5  # speckled
    out, sigma = smooth_to_perimeter(probs, reference, label)
    labels = out.argmax(0).numpy().astype(np.uint8)
    assert sigma[0] == sigma[1] and 0.2 < sigma[0] < 3.0  # two phases: one interface, one width
    assert perimeter_ratio(labels, reference, slices_per_axis=48) == pytest.approx(1.0, abs=0.03)
    # and the result is the clean structure again, not just any structure with that perimeter
    assert (labels == clean).mean() > 0.93
    assert abs((labels == 0).mean() - 0.35) < 0.005


def test_calibration_leaves_a_structure_that_is_not_rougher_than_the_reference_alone():
    clean = random_field_labels((32, 32, 32), fractions=(0.5, 0.5), correlation_length=3.0, periodic=False, seed=4)
    probs = _noisy_probabilities(clean, 0.0, seed=0)
    rough_reference = [2.0 * slice_perimeter_density(clean, phase=p, axis=0) for p in range(2)]
    assert calibrate_sigma(probs, rough_reference, lambda q: q) == 0.0
    out, sigma = smooth_to_perimeter(probs, None)
    assert sigma == (0.0, 0.0) and out is probs


def test_default_reconstruction_has_the_training_slice_perimeter(one_torch_thread):
    """The bundled SOFC model's unsmoothed volumes are rougher than its training images; the
    default (smoothed) ones have the training perimeter, measured independently of the
    calibration's slice subset (every slice of every axis)."""
    from microlad.bundled import resolve_model
    from microlad.model import load_model

    model = load_model(resolve_model("sofc-anode"))
    reference = list(model.training_stats.specific_surface_area)
    kw = dict(seed=7, steps=8, progress=False)
    rough = model.reconstruct((32, 32, 32), smooth=False, **kw)[0]
    smooth = model.reconstruct((32, 32, 32), **kw)[0]
    assert rough.smoothing_sigma == (0.0, 0.0, 0.0) and max(smooth.smoothing_sigma) > 0.0
    before = perimeter_ratio(rough.labels, reference, slices_per_axis=32)
    after = perimeter_ratio(smooth.labels, reference, slices_per_axis=32)
    assert before > 1.03
    assert abs(after - 1.0) < 0.02 and abs(after - 1.0) < abs(before - 1.0)
    # fractions are still the training ones
    vf = np.bincount(smooth.labels.ravel(), minlength=3) / smooth.labels.size
    np.testing.assert_allclose(vf, model.training_stats.fractions(), atol=0.01)
    assert np.array_equal(smooth.labels, model.reconstruct((32, 32, 32), **kw)[0].labels)


def test_per_phase_widths_give_each_phase_its_own_training_perimeter():
    """Three phases, specks only between phases 0 and 1 (0 inside 1, 1 inside 0): the 0|1
    interface is too long, so phases 0 and 1 are too rough and phase 2 is not. A common
    width blurs phase 2 as much as the others; per-phase widths bring every phase to its
    own L_A."""
    clean = random_field_labels((40, 40, 40), fractions=(0.4, 0.35, 0.25), correlation_length=3.0, periodic=False, seed=3)
    reference = [slice_perimeter_density(clean, phase=p, axis=0) for p in range(3)]
    rng = np.random.default_rng(5)
    noisy = clean.copy()
    flip = (rng.random(clean.shape) < 0.08) & (clean != 2)
    noisy[flip] = 1 - clean[flip]
    probs = torch.from_numpy(np.moveaxis(np.eye(3, dtype=np.float32)[noisy], -1, 0).copy())
    target = torch.tensor([(clean == p).mean() for p in range(3)], dtype=torch.float32)
    label = lambda q: match_fractions(q, target)
    out, sigmas = smooth_to_perimeter(probs, reference, label)
    labels = out.argmax(0).numpy().astype(np.uint8)
    ratios = perimeter_ratios(labels, reference, slices_per_axis=40)
    assert np.all(np.abs(ratios - 1.0) < 0.05), ratios
    assert sigmas[2] < min(sigmas[0], sigmas[1]), sigmas
    # the common width alone misses at least one phase by more
    common = calibrate_sigma(probs, reference, label)
    one = label(blur_probabilities(probs, common)).argmax(0).numpy().astype(np.uint8)
    assert np.abs(perimeter_ratios(one, reference, slices_per_axis=40) - 1.0).max() > np.abs(ratios - 1.0).max()
