"""Specific surface area: analytic shapes, TauFactor, scikit-image and real data."""
from __future__ import annotations

import numpy as np
import pytest

import microlad.descriptors as d


def ball(radius: float, ndim: int) -> np.ndarray:
    n = int(2 * radius) + 10
    grid = np.indices((n,) * ndim) - n // 2
    return (np.sum(grid.astype(np.float64) ** 2, axis=0) <= radius**2).astype(np.uint8)


@pytest.mark.parametrize("radius", [15, 20])
def test_sphere_area(radius):
    sphere = ball(radius, 3)
    exact = 4 * np.pi * radius**2 / sphere.size
    area = {m: d.specific_surface_area(sphere, phase=1, method=m) for m in d.SSA_METHODS}
    # Cauchy-Crofton face count is unbiased for isotropic surfaces.
    assert area["faces"] == pytest.approx(exact, rel=0.01)
    # Binary marching cubes has its known staircase bias (measured +8.5 %); the
    # calibrated gradient estimator follows it.
    assert 1.06 < area["mesh"] / exact < 1.11
    assert area["gradient"] == pytest.approx(area["mesh"], rel=0.02)
    # Both phases see the same interface.
    assert d.specific_surface_area(sphere, phase=0) == pytest.approx(area["mesh"], rel=1e-6)


@pytest.mark.parametrize("radius", [15, 20])
def test_disc_perimeter(radius):
    disc = ball(radius, 2)
    exact = 2 * np.pi * radius / disc.size
    area = {m: d.specific_surface_area(disc, phase=1, method=m) for m in d.SSA_METHODS}
    assert area["faces"] == pytest.approx(exact, rel=0.04)
    assert 1.04 < area["mesh"] / exact < 1.10  # marching squares bias, measured +7.5 %
    assert area["gradient"] == pytest.approx(area["mesh"], rel=0.02)


def test_disc_vs_skimage_perimeter():
    measure = pytest.importorskip("skimage.measure")
    disc = ball(18, 2)
    ours = d.specific_surface_area(disc, phase=1, voxel_size=0.5) * disc.size * 0.25
    # Independent estimators: pixel-configuration perimeter and 4-direction Crofton.
    assert ours == pytest.approx(measure.perimeter(disc) * 0.5, rel=0.08)
    assert ours == pytest.approx(measure.perimeter_crofton(disc, directions=4) * 0.5, rel=0.08)


def test_mesh_vs_taufactor(leopard, berea):
    tfm = pytest.importorskip("taufactor.metrics")
    for vol in (leopard[:64, :64, :64], berea[:64, :64, :64]):
        tf_mesh = tfm.specific_surface_area(vol, method="marching_cubes", smoothing=False, device="cpu")
        tf_faces = tfm.specific_surface_area(vol, method="face_counting", device="cpu")
        for phase in (0, 1):
            ours = d.specific_surface_area(vol, phase=phase)
            assert ours == pytest.approx(tf_mesh[str(phase)], rel=0.01)
            faces = d.specific_surface_area(vol, phase=phase, method="faces") / d._surface.FACE_FACTOR[3]
            assert faces == pytest.approx(tf_faces[str(phase)], rel=1e-9)


def test_mesh_vs_independent_marching_cubes(berea):
    measure = pytest.importorskip("skimage.measure")
    vol = berea[100:164, 100:164, 100:164]
    verts, faces, _, _ = measure.marching_cubes((vol == 0).astype(np.float64), 0.5, method="lorensen")
    ref = measure.mesh_surface_area(verts, faces) / (vol.size * 2.25)
    assert d.specific_surface_area(vol, phase=0, voxel_size=2.25) == pytest.approx(ref, rel=0.01)


def test_real_data_estimators_agree(leopard, berea, sofc, carbonate):
    """The calibrated gradient estimator (torch's) is within 5 % of marching cubes."""
    cases = [(leopard, 1), (berea[:64, :64, :64], 0), (berea[200:300, 200:300, 200:300], 1)]
    cases += [(sofc[:256, :256], p) for p in range(3)] + [(sofc[512:, 512:], 2), (carbonate, 1)]
    for labels, phase in cases:
        mesh = d.specific_surface_area(labels, phase=phase)
        grad = d.specific_surface_area(labels, phase=phase, method="gradient")
        assert grad == pytest.approx(mesh, rel=0.03)  # measured worst case 1.8 % (carbonate)


def test_ssa_units_and_trivial_cases():
    sphere = ball(10, 3)
    for m in d.SSA_METHODS:
        one = d.specific_surface_area(sphere, phase=1, method=m)
        assert d.specific_surface_area(sphere, phase=1, method=m, voxel_size=2.0) == pytest.approx(one / 2)
        assert d.specific_surface_area(np.zeros((5, 6, 7), np.uint8), phase=0, method=m) == 0.0
        assert d.specific_surface_area(np.zeros((5, 6), np.uint8), phase=1, method=m) == 0.0
    # A flat interface ending on the border. Border is not interface: the mesh spans the
    # (Y-1) x square between voxel centres; the face count sees Y x X faces.
    slab = np.zeros((10, 12, 14), np.uint8)
    slab[5:] = 1
    assert d.specific_surface_area(slab, phase=1) == pytest.approx(11 * 13 / slab.size)
    grad = d.specific_surface_area(slab, phase=1, method="gradient")
    assert grad == pytest.approx(d._surface.GRADIENT_CALIBRATION[3] * 11 * 13 / slab.size)
    assert d.specific_surface_area(slab, phase=1, method="faces") == pytest.approx(2 / 3 * 12 * 14 / slab.size)
