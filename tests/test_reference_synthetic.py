"""Cross-checks against PoreSpy and TauFactor on synthetic media the tests generate.

These run on a fresh clone without ``../shared/data`` (the real-data versions of the same
checks skip there). The media are seeded: overlapping spheres and blobs from PoreSpy's
generators, and thresholded Gaussian random fields from :mod:`microlad.synthetic`.
PoreSpy and TauFactor are test dependencies (``pip install -e '.[test]'``), imported
directly so that a missing reference fails instead of skipping.
"""
from __future__ import annotations

import numpy as np
import porespy as ps
import pytest
import taufactor as tf
import taufactor.metrics as tfm

import microlad.descriptors as d
from microlad.physics import solve_transport
from microlad.synthetic import random_field_labels

# TauFactor on one thread (its SOR loop stalls when the threads compete for the CPU).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TAU_RTOL = 5e-3  # TauFactor stops at a relative tau change of 2e-3 (its default)


def _spheres(shape, seed: int) -> np.ndarray:
    """Overlapping solid spheres (label 0) in a pore phase (label 1) of porosity 0.5."""
    return ps.generators.overlapping_spheres(list(shape), r=4, porosity=0.5, seed=seed).astype(np.uint8)


def _blobs(shape, seed: int) -> np.ndarray:
    """PoreSpy blobs: pore phase (label 1) of porosity 0.45."""
    return ps.generators.blobs(list(shape), porosity=0.45, blobiness=1, seed=seed).astype(np.uint8)


MEDIA = {
    "spheres": lambda: _spheres((40, 40, 40), seed=1),
    "blobs": lambda: _blobs((48, 40, 44), seed=2),
    "random_field": lambda: random_field_labels((40, 44, 48), fractions=(0.55, 0.45), correlation_length=3.0, seed=3),
}


def _taufactor_tau(solver) -> float:
    solver.solve(verbose=False)
    return float(np.ravel(np.asarray(solver.tau))[0])


@pytest.fixture(scope="module", params=sorted(MEDIA))
def medium(request) -> np.ndarray:
    vol = MEDIA[request.param]()
    assert 0.3 < (vol == 1).mean() < 0.7  # both phases substantial
    return vol


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_pore_tau_matches_taufactor_on_synthetic_media(medium, axis):
    pore = (medium == 1).astype(np.uint8)
    ours = solve_transport(medium, phase=1, axis=axis)
    ref = _taufactor_tau(tf.Solver(np.ascontiguousarray(np.moveaxis(pore, axis, 0)), device="cpu"))
    assert ours.converged
    assert ours.volume_fraction == pytest.approx(pore.mean())
    assert 1.0 < ref < 10.0  # a tortuous but percolating medium: the comparison is not trivial
    assert ours.tortuosity == pytest.approx(ref, rel=TAU_RTOL)


def test_periodic_tau_matches_taufactor_periodic_solver_on_spheres():
    vol = _spheres((36, 36, 36), seed=4)
    ours = solve_transport(vol, phase=1, axis=0, periodic=True)
    ref = _taufactor_tau(tf.PeriodicSolver(vol, device="cpu"))
    assert ours.tortuosity == pytest.approx(ref, rel=TAU_RTOL)


def test_multiphase_tau_matches_taufactor_multiphase_solver_on_random_field():
    # three phases: 1 (D = 1), 2 (D = 0.05) and 0 not conducting
    img = random_field_labels((32, 36, 40), fractions=(0.15, 0.5, 0.35), correlation_length=2.5, seed=5)
    cond = {1: 1.0, 2: 0.05}
    ours = solve_transport(img, axis=0, diffusivities=cond)
    ref = _taufactor_tau(tf.MultiPhaseSolver(img, cond=cond, device="cpu"))
    assert ours.tortuosity == pytest.approx(ref, rel=0.01)


def test_surface_area_matches_taufactor_metrics_on_synthetic_media(medium):
    tf_mesh = tfm.specific_surface_area(medium, method="marching_cubes", smoothing=False, device="cpu")
    tf_faces = tfm.specific_surface_area(medium, method="face_counting", device="cpu")
    for phase in (0, 1):
        assert d.specific_surface_area(medium, phase=phase) == pytest.approx(tf_mesh[str(phase)], rel=0.01)
        faces = d.specific_surface_area(medium, phase=phase, method="faces") / d._surface.FACE_FACTOR[3]
        assert faces == pytest.approx(tf_faces[str(phase)], rel=1e-9)


@pytest.mark.parametrize("shape", [(96, 80), (20, 24, 28)])
def test_triple_phase_boundary_matches_taufactor_on_three_phase_random_field(shape):
    labels = random_field_labels(shape, fractions=(0.3, 0.4, 0.3), correlation_length=2.0, seed=6)
    if labels.ndim == 2:
        total = (shape[0] - 1) * (shape[1] - 1)  # TauFactor normalises by its candidate count
    else:
        x, y, z = shape
        total = z * (x - 1) * (y - 1) + x * (y - 1) * (z - 1) + y * (x - 1) * (z - 1)
    count = float(tfm.triple_phase_boundary(labels.astype(np.int64))) * total
    assert count > 0
    assert d.triple_phase_boundary_density(labels) == pytest.approx(count / labels.size, rel=1e-6)


@pytest.mark.parametrize("name", ["spheres", "blobs", "random_field"])
def test_s2_radial_matches_porespy_two_point_correlation_on_synthetic_slices(name):
    vol = MEDIA[name]()
    bins = np.arange(-0.5, 21.0)  # bin k = [k - 1/2, k + 1/2): round(|r|) == k
    for phase in (0, 1):
        for z in (0, vol.shape[0] // 2):
            img = vol[z]
            ref = ps.metrics.two_point_correlation(img == phase, bins=bins).probability_scaled
            ours = d.s2_radial(img, phase=phase, cutoff=20, periodic=False)
            np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
    # the slice average is the mean of the per-slice curves
    ours = d.s2_slices(vol[:3], phase=1, axis=0, cutoff=20, periodic=False)
    ref = np.mean([ps.metrics.two_point_correlation(s == 1, bins=bins).probability_scaled for s in vol[:3]], axis=0)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_porespy_porosity_and_percolation_agree_on_spheres():
    vol = _spheres((40, 40, 40), seed=1)
    assert d.volume_fraction(vol, n_phases=2)[1] == pytest.approx(ps.metrics.porosity(vol == 1), abs=1e-12)
    # PoreSpy's face-connected clusters that touch both faces along z; ours: percolation()
    labels_ps = ps.filters.trim_nonpercolating_paths(vol == 1, axis=0)
    ours = d.percolation(vol, phase=1, axis=0)
    assert ours.percolates == bool(labels_ps.any())
    assert ours.spanning_fraction == pytest.approx(labels_ps.sum() / (vol == 1).sum(), rel=1e-9)
