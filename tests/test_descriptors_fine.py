"""Fine-scale descriptors (issue #11): slice perimeter, stereology, clusters.

Each is checked against an independent computation: scikit-image perimeters, the
analytic surface density of overlapping spheres, scipy / scikit-image labelling.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import measure, segmentation

from microlad.descriptors import (
    isolated_cluster_density,
    slice_clusters,
    slice_perimeter_density,
    specific_surface_area,
    stereological_surface_area,
)
from microlad.synthetic import random_field_labels


def _disc(n: int, r: float, cy: float, cx: float) -> np.ndarray:
    y, x = np.mgrid[:n, :n]
    return ((y - cy) ** 2 + (x - cx) ** 2 <= r * r).astype(np.uint8)


def test_perimeter_of_a_disc_matches_scikit_image_and_2_pi_r():
    img = _disc(96, 30.0, 47.3, 48.1)
    length = slice_perimeter_density(img, phase=1) * img.size
    assert length == pytest.approx(measure.perimeter(img, neighborhood=4), rel=0.03)
    crofton = slice_perimeter_density(img, phase=1, method="faces") * img.size
    assert crofton == pytest.approx(measure.perimeter_crofton(img, directions=4), rel=0.03)
    assert crofton == pytest.approx(2 * np.pi * 30.0, rel=0.03)


def test_slice_perimeter_density_of_a_box_is_the_analytic_rectangle_perimeter():
    vol = np.zeros((12, 40, 36), dtype=np.uint8)
    vol[2:8, 5:20, 4:30] = 1  # a 6 x 15 x 26 box inside the volume
    cut = 4 * (1 - np.sqrt(0.5))  # marching squares cuts each corner of a rectangle by a diagonal
    sides = {0: (15, 26, 6), 1: (6, 26, 15), 2: (6, 15, 26)}  # in-plane sides, number of slices
    for axis, (a, b, n) in sides.items():
        want = n * (2 * (a + b) - cut) / vol.size
        assert slice_perimeter_density(vol, phase=1, axis=axis) == pytest.approx(want, rel=1e-9)
        faces = n * 2 * (a + b) * np.pi / 4 / vol.size  # Cauchy-Crofton edge count
        assert slice_perimeter_density(vol, phase=1, axis=axis, method="faces") == pytest.approx(faces, rel=1e-9)
    assert slice_perimeter_density(vol, phase=1, axis=0, voxel_size=0.5) == pytest.approx(2 * sides[0][2] * (2 * 41 - cut) / vol.size)


def _overlapping_spheres(box: int, radius: float, n_density: float, seed: int) -> np.ndarray:
    """Boolean model of spheres (centres Poisson in a padded box, so no edge deficit)."""
    rng = np.random.default_rng(seed)
    pad = int(np.ceil(radius)) + 1
    side = box + 2 * pad
    n = rng.poisson(n_density * side**3)
    seeds = np.ones((side,) * 3, dtype=bool)
    seeds[tuple(rng.integers(0, side, size=(3, n)))] = False
    inside = ndimage.distance_transform_edt(seeds) <= radius
    return inside[pad:-pad, pad:-pad, pad:-pad].astype(np.uint8)


def test_stereological_surface_area_of_overlapping_spheres_matches_the_analytic_value():
    radius, box = 7.0, 96
    n_density = 0.35 / (4 / 3 * np.pi * radius**3)  # about 30 % sphere phase
    vol = _overlapping_spheres(box, radius, n_density, seed=0)
    analytic = n_density * 4 * np.pi * radius**2 * np.exp(-n_density * 4 / 3 * np.pi * radius**3)
    l_a = np.mean([slice_perimeter_density(vol, phase=1, axis=a, method="faces") for a in range(3)])
    assert stereological_surface_area(l_a) == pytest.approx(analytic, rel=0.05)
    # the report's estimators (marching squares / cubes) share their staircase bias
    l_a_mesh = np.mean([slice_perimeter_density(vol, phase=1, axis=a) for a in range(3)])
    assert stereological_surface_area(l_a_mesh) == pytest.approx(specific_surface_area(vol, phase=1), rel=0.04)
    assert stereological_surface_area(np.array([1.0, 2.0])) == pytest.approx([4 / np.pi, 8 / np.pi])


def test_slice_clusters_match_per_slice_labelling():
    vol = random_field_labels((10, 48, 40), fractions=(0.6, 0.4), correlation_length=2, seed=5)
    for axis in range(3):
        for phase in (0, 1):
            stack = np.moveaxis(vol == phase, axis, 0)
            counts = [ndimage.label(s)[1] for s in stack]  # scipy's default: 4-connected in 2-D
            assert [measure.label(s, connectivity=1).max() for s in stack] == counts
            res = slice_clusters(vol, phase=phase, axis=axis, voxel_size=2.0)
            assert res.n_clusters == sum(counts)
            assert res.density == pytest.approx(sum(counts) / (vol.size * 4.0))
            assert res.mean_area == pytest.approx(stack.sum() * 4.0 / sum(counts))
            # area-weighted mean area from scikit-image's region areas, slice by slice
            areas = np.concatenate([[r.area for r in measure.regionprops(measure.label(s, connectivity=1))] for s in stack])
            assert res.weighted_area == pytest.approx((areas**2).sum() / areas.sum() * 4.0)


def test_slice_clusters_known_squares_and_absent_phase():
    img = np.zeros((20, 20), dtype=np.uint8)
    img[2:5, 2:5] = 1
    img[10:12, 10:18] = 1
    img[5, 5] = 1  # touches the first square only at a corner: a separate 4-connected cluster
    res = slice_clusters(img, phase=1)
    assert res.n_clusters == 3 and res.mean_area == pytest.approx((9 + 16 + 1) / 3)
    assert res.weighted_area == pytest.approx((81 + 256 + 1) / 26)  # a random phase pixel: 9/26 · 9 + 16/26 · 16 + 1/26 · 1
    assert slice_clusters(np.zeros((4, 4), np.uint8), phase=1) == type(res)(0, 0.0, 0.0, 0.0)


def test_isolated_cluster_density_matches_clear_border_count():
    vol = random_field_labels((30, 32, 28), fractions=(0.75, 0.25), correlation_length=1.5, seed=2)
    mask = vol == 1
    inner = segmentation.clear_border(measure.label(mask, connectivity=1))
    want = len(np.unique(inner)) - 1
    assert want > 0
    assert isolated_cluster_density(vol, phase=1, voxel_size=0.5) == pytest.approx(want / (vol.size * 0.125))
    box = np.zeros((10, 10, 10), np.uint8)
    box[3:5, 3:5, 3:5] = 1
    box[0:2, 7:9, 7:9] = 1  # touches the z = 0 face
    assert isolated_cluster_density(box, phase=1) == pytest.approx(1 / 1000)


def test_s2_autocorrelation_takes_the_fraction_out():
    from microlad.descriptors import s2_autocorrelation, s2_radial

    img = random_field_labels((96, 96), fractions=(0.7, 0.3), correlation_length=2, seed=4)
    rho = s2_autocorrelation(s2_radial(img, phase=1, cutoff=10, periodic=True))
    assert rho[0] == pytest.approx(1.0) and np.all(np.diff(rho[:4]) < 0)
    # white noise at the same fraction: no correlation beyond r = 0
    noise = np.random.default_rng(0).permutation(img.ravel()).reshape(img.shape)
    assert np.abs(s2_autocorrelation(s2_radial(noise, phase=1, cutoff=10, periodic=True))[1:]).max() < 0.05
    assert np.all(s2_autocorrelation(np.array([1.0, 1.0, 1.0])) == 0)  # a phase that fills everything


def _ball(n: int, r: float) -> np.ndarray:
    z, y, x = np.mgrid[:n, :n, :n] - (n - 1) / 2
    return z * z + y * y + x * x <= r * r


def test_euler_characteristic_of_analytic_shapes():
    from microlad.descriptors import euler_characteristic_density

    n = 24
    ball = _ball(n, 8)
    chi = lambda m: euler_characteristic_density(m.astype(np.uint8), phase=1) * m.size  # noqa: E731
    assert chi(ball) == pytest.approx(1)
    two = ball.copy()
    two[:, :, :3] = True  # a slab apart from the ball: two pieces
    assert chi(two) == pytest.approx(2)
    ring = ball.copy()
    ring[:, n // 2 - 2:n // 2 + 2, n // 2 - 2:n // 2 + 2] = False  # a tunnel drilled along z
    assert chi(ring) == pytest.approx(0)
    shell = ball & ~_ball(n, 5)  # a hollow ball: one piece, one cavity
    assert chi(shell) == pytest.approx(2)
    frame = np.zeros((n, n, n), bool)  # the 12 edges of a cube: genus 5
    a, b = 4, 19
    for ax in range(3):
        for i in (a, b):
            for j in (a, b):
                idx = [slice(i, i + 2), slice(j, j + 2)]
                idx.insert(ax, slice(a, b + 2))
                frame[tuple(idx)] = True
    assert chi(frame) == pytest.approx(1 - 5)
    # the pore phase of the complement sees the cavity as a component: 2-D disc and annulus
    disc = _disc(40, 12, 20, 20).astype(bool)
    annulus = disc & ~_disc(40, 5, 20, 20).astype(bool)
    assert euler_characteristic_density(disc.astype(np.uint8), phase=1, voxel_size=0.5) == pytest.approx(1 / (1600 * 0.25))
    assert euler_characteristic_density(annulus.astype(np.uint8), phase=1) == pytest.approx(0)
    assert euler_characteristic_density(np.zeros((5, 5, 5), np.uint8), phase=1) == 0


def test_euler_characteristic_matches_the_vertex_edge_face_cube_count_of_a_random_medium():
    """χ of the 6-connected phase = vertices − edges + squares − cubes of the complex whose
    vertices are the phase's voxels (an independent count, Ohser & Mücklich)."""
    from microlad.descriptors import euler_characteristic_density

    vol = random_field_labels((30, 28, 26), fractions=(0.6, 0.4), correlation_length=1.5, seed=5)
    m = vol == 1
    v = m.sum()
    e = (m[1:] & m[:-1]).sum() + (m[:, 1:] & m[:, :-1]).sum() + (m[:, :, 1:] & m[:, :, :-1]).sum()
    sq = ((m[1:, 1:] & m[1:, :-1] & m[:-1, 1:] & m[:-1, :-1]).sum()
          + (m[1:, :, 1:] & m[1:, :, :-1] & m[:-1, :, 1:] & m[:-1, :, :-1]).sum()
          + (m[:, 1:, 1:] & m[:, 1:, :-1] & m[:, :-1, 1:] & m[:, :-1, :-1]).sum())
    c = m[1:, 1:, 1:] & m[1:, 1:, :-1] & m[1:, :-1, 1:] & m[1:, :-1, :-1]
    c = (c & m[:-1, 1:, 1:] & m[:-1, 1:, :-1] & m[:-1, :-1, 1:] & m[:-1, :-1, :-1]).sum()
    want = int(v) - int(e) + int(sq) - int(c)
    assert want != 0
    assert euler_characteristic_density(vol, phase=1) * vol.size == pytest.approx(want)
