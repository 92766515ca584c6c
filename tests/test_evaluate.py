"""Fidelity metric (paper §7) and the properties report."""
from __future__ import annotations

import numpy as np
import pytest

from microlad.evaluate import properties, s2_fidelity
from microlad.synthetic import random_field_labels


def test_fidelity_is_zero_against_the_volume_own_slices():
    vol = random_field_labels((24, 32, 40), fractions=(0.6, 0.4), correlation_length=2, seed=1)
    f = s2_fidelity([vol], list(vol), n_phases=2)  # references: the z-slices themselves
    np.testing.assert_allclose(f.errors[:, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(f.vf_reference, [np.mean(vol == 0), np.mean(vol == 1)])
    assert f.cutoff == 12 and f.s2_generated.shape == (2, 3, 13)


def test_fidelity_separates_matching_from_mismatched_structure():
    ref = [random_field_labels((256, 256), fractions=(0.7, 0.3), correlation_length=3, seed=0)]
    same = [random_field_labels((48, 48, 48), fractions=(0.7, 0.3), correlation_length=3, seed=s) for s in (1, 2)]
    coarse = [random_field_labels((48, 48, 48), fractions=(0.7, 0.3), correlation_length=6, seed=s) for s in (1, 2)]
    good, bad = s2_fidelity(same, ref, n_phases=2), s2_fidelity(coarse, ref, n_phases=2)
    assert good.max_error < 0.05
    assert bad.max_error > 3 * good.max_error


def test_properties_report_schema_and_known_values():
    vol = np.zeros((20, 20, 20), dtype=np.uint8)
    vol[:, :, 10:] = 1  # two slabs normal to x
    rep = properties(vol, grey_values=(0.0, 255.0), transport=True)
    assert rep["shape"] == [20, 20, 20] and rep["axes"] == "ZYX" and rep["n_phases"] == 2
    p1 = rep["phases"]["1"]
    assert p1["grey_value"] == 255.0 and p1["volume_fraction"] == pytest.approx(0.5)
    assert set(p1["s2"]) == {"z", "y", "x"} and p1["s2"]["z"][0] == pytest.approx(0.5)
    # slabs: connected along z and y, not across x... phase 1 touches x=19 but not x=0
    assert p1["percolates"] == {"z": True, "y": True, "x": False}
    assert p1["tortuosity"]["x"] is None and p1["effective_diffusivity"]["x"] == 0.0
    assert p1["tortuosity"]["z"] == pytest.approx(1.0, rel=1e-3)
    assert p1["effective_diffusivity"]["z"] == pytest.approx(0.5, rel=1e-3)
    # one flat 20x20 interface in a 20^3 box; the mesh spans voxel centres, so it covers
    # 19x19 (the image border is not extrapolated): SSA = 361 / 8000
    assert p1["specific_surface_area"] == pytest.approx(361 / 8000, rel=0.01)
    assert rep["triple_phase_boundary_density"] is None
    img = rep2 = properties(vol[0], transport=False)
    assert set(img["phases"]["0"]["s2"]) == {"radial"} and set(img["phases"]["0"]["percolates"]) == {"y", "x"}
    assert "tortuosity" not in rep2["phases"]["0"]


def test_fidelity_signed_errors_and_their_standard_error():
    ref = [random_field_labels((256, 256), fractions=(0.7, 0.3), correlation_length=3, seed=0)]
    coarse = [random_field_labels((48, 48, 48), fractions=(0.7, 0.3), correlation_length=6, seed=s) for s in (1, 2, 3, 4)]
    f = s2_fidelity(coarse, ref, n_phases=2)
    assert np.all(f.signed_errors > 0.02)  # larger features: S2 sums above the reference's
    np.testing.assert_allclose(np.abs(f.signed_errors), f.errors, rtol=1e-12)
    # the standard error is the spread of the single volumes' signed errors over √n
    singles = np.stack([s2_fidelity([v], ref, n_phases=2).signed_errors for v in coarse])
    np.testing.assert_allclose(f.signed_errors, singles.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(f.standard_errors, singles.std(axis=0, ddof=1) / 2.0, rtol=1e-10)
    assert np.all(np.isnan(s2_fidelity(coarse[:1], ref, n_phases=2).standard_errors))
