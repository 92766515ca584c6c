"""numpy descriptors: volume fraction, S2, TPB, percolation, input contract.

References are independent of the implementation: direct counts, brute-force shifted
products (np.roll / overlapping slices), PoreSpy, TauFactor and constructed geometries
with known answers.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

import microlad.descriptors as d
from microlad.errors import InputError, ShapeError


# ----------------------------------------------------------------------------- helpers

def brute_radial_periodic(stack: np.ndarray, cutoff: int) -> np.ndarray:
    """Radial S2 of a (N, H, W) bool stack by explicit circular shifts (minimum image)."""
    _, h, w = stack.shape
    m = stack.astype(np.float64)
    sums, counts = np.zeros(cutoff + 1), np.zeros(cutoff + 1)
    for dy in range(h):
        for dx in range(w):
            k = int(round(np.hypot(min(dy, h - dy), min(dx, w - dx))))
            if k <= cutoff:
                sums[k] += np.mean(m * np.roll(m, (-dy, -dx), axis=(1, 2)))
                counts[k] += 1
    return sums / counts


def brute_radial_open(stack: np.ndarray, cutoff: int) -> np.ndarray:
    """Non-periodic radial S2 of a (N, H, W) bool stack from overlapping windows."""
    _, h, w = stack.shape
    m = stack.astype(np.float64)
    sums, counts = np.zeros(cutoff + 1), np.zeros(cutoff + 1)
    for dy in range(-cutoff, cutoff + 1):
        for dx in range(-cutoff, cutoff + 1):
            k = int(round(np.hypot(dy, dx)))
            if k > cutoff:
                continue
            y0, y1 = max(0, -dy), h - max(0, dy)
            x0, x1 = max(0, -dx), w - max(0, dx)
            a = m[:, y0:y1, x0:x1]
            b = m[:, y0 + dy:y1 + dy, x0 + dx:x1 + dx]
            sums[k] += np.mean(a * b)
            counts[k] += 1
    return sums / counts


def brute_axis(vol: np.ndarray, axis: int, cutoff: int, periodic: bool) -> np.ndarray:
    m = np.moveaxis(vol.astype(np.float64), axis, 0)
    n = m.shape[0]
    if periodic:
        return np.array([np.mean(m * np.roll(m, -r, axis=0)) for r in range(cutoff + 1)])
    return np.array([np.mean(m[: n - r] * m[r:]) for r in range(cutoff + 1)])


# ---------------------------------------------------------------------- volume fraction

def test_volume_fraction_counts(leopard, sofc):
    for labels in (leopard, sofc):
        vf = d.volume_fraction(labels)
        expected = [np.count_nonzero(labels == p) / labels.size for p in range(int(labels.max()) + 1)]
        np.testing.assert_allclose(vf, expected, rtol=0, atol=1e-15)
        assert vf.sum() == pytest.approx(1.0)


def test_volume_fraction_checkerboard_and_absent_phase():
    board = (np.indices((8, 10, 12)).sum(axis=0) % 2).astype(np.uint8)
    np.testing.assert_allclose(d.volume_fraction(board), [0.5, 0.5])
    np.testing.assert_allclose(d.volume_fraction(board, n_phases=3), [0.5, 0.5, 0.0])
    with pytest.raises(InputError):
        d.volume_fraction(board + 1, n_phases=2)


# ----------------------------------------------------------------------------------- S2

@pytest.mark.parametrize("name", ["leopard", "berea"])
def test_s2_slices_periodic_vs_roll(name, request):
    vol = request.getfixturevalue(name)[:64, :64, :64]
    for axis in (0, 2):
        stack = np.moveaxis(vol == 1, axis, 0)[::8]  # 8 slices keep the brute force fast
        sub = np.moveaxis(stack, 0, axis)
        ours = d.s2_slices(sub, phase=1, axis=axis, cutoff=12)
        ref = brute_radial_periodic(stack, 12)
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["leopard", "berea"])
def test_s2_radial_open_vs_porespy(name, request):
    ps = pytest.importorskip("porespy")
    vol = request.getfixturevalue(name)[:64, :64, :64]
    bins = np.arange(-0.5, 33.0)  # bin k = [k - 1/2, k + 1/2): round(|r|) == k
    for z in (0, 31):
        img = vol[z]
        ref = ps.metrics.two_point_correlation(img == 0, bins=bins).probability_scaled
        ours = d.s2_radial(img, phase=0, periodic=False)
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
    # The slice average is the mean of the per-slice curves.
    ours = d.s2_slices(vol[:4], phase=0, axis=0, periodic=False)
    ref = np.mean([ps.metrics.two_point_correlation(s == 0, bins=bins).probability_scaled for s in vol[:4]], axis=0)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_s2_radial_full_cutoff_edge_cases():
    rng = np.random.default_rng(3)
    stack = (rng.random((3, 16, 21)) < 0.4).astype(np.uint8)  # even and odd sides
    np.testing.assert_allclose(d.s2_radial(stack, phase=1), brute_radial_periodic(stack == 1, 8), atol=1e-12)
    np.testing.assert_allclose(
        d.s2_radial(stack, phase=1, periodic=False), brute_radial_open(stack == 1, 8), atol=1e-12
    )
    np.testing.assert_allclose(
        d.s2_radial(stack[0], phase=0, cutoff=5, periodic=False), brute_radial_open(stack[:1] == 0, 5), atol=1e-12
    )


def test_s2_axis_vs_brute_force(leopard, sofc):
    vol = leopard[:40, :48, :56]
    for axis in range(3):
        for periodic in (True, False):
            ours = d.s2_axis(vol, phase=1, axis=axis, periodic=periodic)
            ref = brute_axis(vol == 1, axis, vol.shape[axis] // 2, periodic)
            np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
    img = sofc[:100, :90]
    np.testing.assert_allclose(
        d.s2_axis(img, phase=2, axis=1, cutoff=89, periodic=False), brute_axis(img == 2, 1, 89, False), atol=1e-12
    )


def test_s2_limits_on_random_field():
    rng = np.random.default_rng(0)
    p = 0.3
    img = (rng.random((256, 256)) < p).astype(np.uint8)
    vf = np.mean(img == 1)
    for periodic in (True, False):
        s2 = d.s2_radial(img, phase=1, periodic=periodic)
        assert s2[0] == pytest.approx(vf, abs=1e-12)  # S2(0) = VF
        np.testing.assert_allclose(s2[5:], vf**2, atol=0.004)  # uncorrelated: S2 -> VF^2
    vol = (rng.random((32, 32, 32)) < p).astype(np.uint8)
    for axis in range(3):
        s2 = d.s2_slices(vol, phase=1, axis=axis)
        assert s2[0] == pytest.approx(np.mean(vol == 1), abs=1e-12)
        np.testing.assert_allclose(s2[3:], np.mean(vol == 1) ** 2, atol=0.01)
        assert d.s2_axis(vol, phase=1, axis=axis)[0] == pytest.approx(np.mean(vol == 1), abs=1e-12)


def test_s2_error_metric():
    ref = np.array([0.5, 0.3, 0.2])
    assert d.s2_error(ref * 1.1, ref) == pytest.approx(0.1)
    assert d.s2_error(ref, ref) == 0.0
    np.testing.assert_allclose(d.s2_error(np.stack([ref, 0.5 * ref]), np.stack([ref, ref])), [0.0, 0.5])
    np.testing.assert_allclose(d.s2_error(np.stack([ref, 0.5 * ref]), ref), [0.0, 0.5])  # broadcasts
    with pytest.raises(ShapeError):
        d.s2_error(ref[:2], ref)
    with pytest.raises(InputError):
        d.s2_error(ref, np.zeros(3))


# ---------------------------------------------------------------------------------- TPB

def test_tpb_three_blocks_known_length():
    z, y, x = 10, 20, 24
    labels = np.zeros((z, y, x), np.uint8)
    labels[:, :9, 12:] = 1
    labels[:, 9:, 12:] = 2  # the three phases meet along one line parallel to z
    # One TPB edge per z layer: length z voxels, per total volume.
    assert d.triple_phase_boundary_density(labels) == pytest.approx(z / labels.size)
    assert d.triple_phase_boundary_density(labels, voxel_size=0.5) == pytest.approx(z * 0.5 / (labels.size * 0.125))
    # Rotating the geometry rotates the line: same density.
    assert d.triple_phase_boundary_density(labels.transpose(2, 0, 1)) == pytest.approx(z / labels.size)
    # 2-D: one triple point.
    assert d.triple_phase_boundary_density(labels[0]) == pytest.approx(1 / labels[0].size)
    assert d.triple_phase_boundary_density(np.minimum(labels, 1)) == 0.0


def test_tpb_vs_taufactor(sofc):
    tfm = pytest.importorskip("taufactor.metrics")
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 3, size=(9, 10, 11)).astype(np.uint8)
    x, y, z = vol.shape  # TauFactor normalises by its count of candidate edges
    total = z * (x - 1) * (y - 1) + x * (y - 1) * (z - 1) + y * (x - 1) * (z - 1)
    count = float(tfm.triple_phase_boundary(vol.astype(np.int64))) * total
    assert d.triple_phase_boundary_density(vol) == pytest.approx(count / vol.size, rel=1e-6)
    img = sofc[:128, :128]
    count2d = float(tfm.triple_phase_boundary(img.astype(np.int64))) * 127 * 127
    assert d.triple_phase_boundary_density(img) == pytest.approx(count2d / img.size, rel=1e-6)


def test_tpb_rejects_more_phases():
    with pytest.raises(InputError):
        d.triple_phase_boundary_density(np.arange(64, dtype=np.uint8).reshape(4, 4, 4) % 4)


# --------------------------------------------------------------------------- percolation

def test_percolation_channel():
    vol = np.zeros((10, 12, 14), np.uint8)
    vol[4:6, 5:7, :] = 1  # straight channel along x
    res = d.percolation(vol, phase=1, axis=2)
    assert res == d.Percolation(percolates=True, spanning_fraction=1.0)
    assert not d.percolation(vol, phase=1, axis=0).percolates
    vol[1:3, 1:3, 1:3] = 1  # isolated blob of 8 voxels
    assert d.percolation(vol, phase=1, axis=2).spanning_fraction == pytest.approx(56 / 64)
    vol[:, :, 7] = 0  # block the channel
    assert d.percolation(vol, phase=1, axis=2) == d.Percolation(False, 0.0)
    assert d.percolation(vol, phase=1, axis=-1).percolates is False
    assert d.percolation(vol, phase=3, axis=0) == d.Percolation(False, 0.0)  # absent phase


def test_percolation_face_connectivity_2d():
    img = np.eye(8, dtype=np.uint8)  # diagonal staircase: corner contacts only
    assert not d.percolation(img, phase=1, axis=0).percolates
    img[1:, :-1] |= np.eye(7, dtype=np.uint8)  # thicken to a 4-connected path
    res = d.percolation(img, phase=1, axis=1)
    assert res.percolates and res.spanning_fraction == 1.0


# near the percolation threshold: these give none, one, two and all three axes spanning
@pytest.mark.parametrize("porosity,seed", [(0.10, 0), (0.14, 1), (0.16, 0), (0.18, 0), (0.18, 1)])
def test_percolating_axes_agree_with_porespy_near_the_threshold(porosity, seed):
    ps = pytest.importorskip("porespy")
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random((24, 20, 28)), 1.2)
    vol = (field > np.quantile(field, 1 - porosity)).astype(np.uint8)  # phase 1: the top fraction
    got = d.percolating_axes(vol, phase=1)
    want = tuple(bool(ps.filters.trim_nonpercolating_paths(vol == 1, axis=a, conn="min").any()) for a in range(3))
    assert got == want
    assert got == tuple(d.percolation(vol, phase=1, axis=a).percolates for a in range(3))


def test_percolating_axes_channel_and_absent_phase():
    vol = np.zeros((6, 7, 8), np.uint8)
    vol[2:4, 3:5, :] = 1  # a channel along x only
    assert d.percolating_axes(vol, phase=1) == (False, False, True)
    assert d.percolating_axes(vol, phase=2) == (False, False, False)
    assert d.percolating_axes(vol[0], phase=0) == (True, True)


# ----------------------------------------------------------------------- input contract

def test_input_errors():
    vol = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(InputError):
        d.volume_fraction(vol.astype(np.float32))
    with pytest.raises(InputError):
        d.volume_fraction(vol.astype(np.int8) - 1)
    with pytest.raises(ShapeError):
        d.volume_fraction(np.zeros(5, np.uint8))
    with pytest.raises(ShapeError):
        d.s2_slices(vol[0], phase=0, axis=0)
    with pytest.raises(InputError):
        d.s2_axis(vol, phase=0, axis=3)
    with pytest.raises(InputError):
        d.s2_radial(vol[0], phase=0, cutoff=3)
    with pytest.raises(InputError):
        d.s2_radial(vol[0], phase=-1)
    with pytest.raises(InputError):
        d.specific_surface_area(vol, phase=0, method="voxels")
    with pytest.raises(InputError):
        d.specific_surface_area(vol, phase=0, voxel_size=0)
    with pytest.raises(ShapeError):
        d.specific_surface_area(vol[:1], phase=0)
    assert issubclass(InputError, ValueError)


def test_all_descriptors_fast_on_100_cube(leopard):
    start = time.perf_counter()
    for phase in (0, 1):
        d.volume_fraction(leopard)
        for axis in range(3):
            d.s2_slices(leopard, phase=phase, axis=axis)
            d.s2_axis(leopard, phase=phase, axis=axis)
            d.percolation(leopard, phase=phase, axis=axis)
        d.specific_surface_area(leopard, phase=phase)
    assert time.perf_counter() - start < 5.0  # measured ~0.8 s on 2 shared cores
