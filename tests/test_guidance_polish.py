"""The label polish (microlad.reconstruct.polish), checked with the report's numpy S2 and
scipy.ndimage, independent of the torch loss it minimises."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from microlad import descriptors as nd
from microlad.reconstruct.polish import polish_s2
from microlad.guidance.terms import s2_report


def _two_phase(seed: int, shape=(32, 32, 32), sigma=2.0, level=0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field > level).astype(np.uint8)


def _slice_s2_curves(vol: np.ndarray, n_phases: int, cutoff: int) -> np.ndarray:
    """Target curves (P, cutoff + 1): the numpy slice S2 averaged over the three axes."""
    return np.stack([np.mean([nd.s2_slices(vol, phase=p, axis=a, cutoff=cutoff, periodic=False) for a in range(3)], axis=0)
                     for p in range(n_phases)])


def _isolated(vol: np.ndarray) -> int:
    """Voxels with no face neighbour of their own phase (edge voxels see themselves)."""
    pad = np.pad(vol, 1, mode="edge")
    same = np.zeros(vol.shape, dtype=int)
    for d in range(3):
        for s in (-1, 1):
            same += np.roll(pad, s, axis=d)[1:-1, 1:-1, 1:-1] == vol
    return int((same == 0).sum())


@pytest.fixture(scope="module")
def case():
    reference = _two_phase(0)
    start = ndi.binary_dilation(_two_phase(1), iterations=1).astype(np.uint8)  # another structure, fatter phase 1
    curves = _slice_s2_curves(reference, 2, 16)
    return reference, start, curves


def test_polish_moves_the_report_s2_toward_the_target(case, one_torch_thread):
    _, start, curves = case
    before = s2_report(start, curves, (0, 1))
    out, st = polish_s2(start, curves, (0, 1), n_phases=2, max_iter=60)
    after = s2_report(out, curves, (0, 1))
    assert before["max_error"] > 0.05  # the start is far from the target
    assert after["max_error"] < before["max_error"] / 3
    assert after["max_pointwise"] < before["max_pointwise"] / 2
    assert st.loss_after < st.loss_before and st.flipped == int((out != start).sum()) > 0
    assert out.dtype == start.dtype and out.shape == start.shape


def test_polish_makes_interface_moves_only(case, one_torch_thread):
    _, start, curves = case
    # one iteration: each flip takes a phase that at least 2 face neighbours have, and no two
    # flipped voxels are face neighbours (one checkerboard colour per iteration)
    one, st = polish_s2(start, curves, (0, 1), n_phases=2, max_iter=1)
    changed = one != start
    assert st.iterations == 1 and changed.sum() > 0
    pad = np.pad(start, 1, mode="edge")
    contacts = np.zeros(start.shape, dtype=int)
    for d in range(3):
        for s in (-1, 1):
            contacts += np.roll(pad, s, axis=d)[1:-1, 1:-1, 1:-1] == one
    assert contacts[changed].min() >= 2
    assert not any((changed & np.roll(changed, s, axis=d)).any() for d in range(3) for s in (-1, 1))
    # many iterations: no voxel ends without a face neighbour of its own phase that had one
    out, _ = polish_s2(start, curves, (0, 1), n_phases=2, max_iter=60)
    assert _isolated(out) <= _isolated(start)


def test_polish_holds_volume_fraction_targets_and_is_deterministic(case, one_torch_thread):
    _, start, curves = case
    vf = float((start == 1).mean())
    a, sa = polish_s2(start, curves, (0, 1), n_phases=2, vf_targets={1: vf}, max_iter=30)
    with torch.inference_mode():  # the same under a caller's inference_mode (or no_grad)
        b, sb = polish_s2(start, curves, (0, 1), n_phases=2, vf_targets={1: vf}, max_iter=30)
    assert np.array_equal(a, b) and sa.loss_after == sb.loss_after
    assert abs(float((a == 1).mean()) - vf) < 2e-3
    free, _ = polish_s2(start, curves, (0, 1), n_phases=2, max_iter=30)
    # without the hold the fraction moves toward the target's S2(0) (the start's phase 1 is too fat)
    assert (free == 1).mean() < vf - 0.01


def test_polish_on_a_three_phase_volume_and_a_single_phase_target(one_torch_thread):
    rng = np.random.default_rng(3)
    f = ndi.gaussian_filter(rng.standard_normal((3, 24, 24, 24)), (0, 2, 2, 2))
    start = f.argmax(0).astype(np.uint8)
    target = (ndi.gaussian_filter(rng.standard_normal((3, 24, 24, 24)), (0, 2.5, 2.5, 2.5)) * [[[[1.0]]], [[[1.2]]], [[[0.8]]]]).argmax(0)
    curves = _slice_s2_curves(target.astype(np.uint8), 3, 12)
    out, _ = polish_s2(start, curves[1:2], (1,), n_phases=3, max_iter=40)
    assert s2_report(out, curves[1:2], (1,))["max_error"] < s2_report(start, curves[1:2], (1,))["max_error"] / 2
    assert set(np.unique(out)) <= {0, 1, 2}


def test_the_perimeter_term_moves_the_reports_slice_perimeter_toward_its_target(one_torch_thread):
    start = _two_phase(5, sigma=1.5)
    own = _slice_s2_curves(start, 2, 16)  # S2 target = the start's own: only the perimeter term pulls
    per = [float(np.mean([nd.slice_perimeter_density(start, phase=p, axis=a) for a in range(3)])) for p in (0, 1)]
    # smoother than the start (interface moves keep >= 2 contacts, so they can always smooth;
    # roughening a smooth surface would need one-contact bumps, which are not allowed)
    target = {p: 0.9 * per[p] for p in (0, 1)}
    out, st = polish_s2(start, own, (0, 1), n_phases=2, perimeter=target, max_iter=60)
    after = [float(np.mean([nd.slice_perimeter_density(out, phase=p, axis=a) for a in range(3)])) for p in (0, 1)]
    for p in (0, 1):
        assert abs(after[p] / target[p] - 1) < 0.5 * abs(per[p] / target[p] - 1), (per, after, target)
    assert _isolated(out) <= _isolated(start)


def test_reconstruct_polish_is_opt_in_moves_toward_the_training_s2_and_keeps_spannings(one_torch_thread):
    from microlad.bundled import resolve_model
    from microlad.descriptors import percolating_axes
    from microlad.errors import InputError
    from microlad.model import load_model

    model = load_model(resolve_model("sofc-anode"))
    kw = dict(n=1, seed=3, steps=5, progress=False)
    plain = model.reconstruct((32, 32, 32), **kw)[0]
    polished = model.reconstruct((32, 32, 32), polish=40, **kw)[0]
    assert plain.polish == {} and polished.polish["iterations"] >= 1
    curves = np.asarray(model.training_stats.s2_radial_mean)
    before, after = (s2_report(r.labels, curves, (0, 1, 2)) for r in (plain, polished))
    assert after["max_error"] < before["max_error"] and after["max_pointwise"] < before["max_pointwise"]
    for p in range(3):
        assert all(b <= a for b, a in zip(percolating_axes(plain.labels, phase=p), percolating_axes(polished.labels, phase=p)))
    assert polished.polish["flipped"] == int((polished.labels != plain.labels).sum())
    with pytest.raises(InputError):
        model.reconstruct((32, 32, 32), polish=-1, **kw)


_N18 = np.array([[[abs(z - 1) + abs(y - 1) + abs(x - 1) in (1, 2) for x in range(3)] for y in range(3)] for z in range(3)])
_FACES = [(0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)]


@pytest.mark.parametrize("n_phases", [2, 3])
def test_local_splits_counts_the_face_neighbours_pieces_like_scipy_label(n_phases):
    from microlad.reconstruct.polish import local_splits

    vol = np.random.default_rng(n_phases).integers(0, n_phases, (10, 11, 12))
    got = local_splits(torch.from_numpy(vol)).numpy()
    pad = np.pad(vol, 1, constant_values=-1)  # outside the volume is no phase
    want = np.zeros_like(got)
    for z, y, x in np.ndindex(vol.shape):
        pieces, _ = ndi.label((pad[z:z + 3, y:y + 3, x:x + 3] == vol[z, y, x]) & _N18)  # 6-connectivity
        want[z, y, x] = len({pieces[f] for f in _FACES} - {0})
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(want)) >= {0, 1, 2, 3}  # the cases occur


def _pieces(vol: np.ndarray, n_phases: int) -> list[int]:
    return [ndi.label(vol == p)[1] for p in range(n_phases)]


def test_a_connected_polish_never_splits_a_phase(one_torch_thread):
    rng = np.random.default_rng(7)
    start = ndi.gaussian_filter(rng.standard_normal((3, 28, 28, 28)), (0, 1.5, 1.5, 1.5)).argmax(0).astype(np.uint8)
    target = ndi.gaussian_filter(rng.standard_normal((3, 28, 28, 28)), (0, 3, 3, 3)).argmax(0).astype(np.uint8)
    curves = _slice_s2_curves(target, 3, 12)  # coarser: the polish must thin and cut to get there
    before = _pieces(start, 3)
    free, _ = polish_s2(start, curves, (0, 1, 2), n_phases=3, max_iter=40)
    guarded, st = polish_s2(start, curves, (0, 1, 2), n_phases=3, max_iter=40, connected=True)
    assert st.flipped > 0 and st.loss_after < st.loss_before
    assert all(a <= b for a, b in zip(_pieces(guarded, 3), before)), (before, _pieces(guarded, 3))
    assert any(a > b for a, b in zip(_pieces(free, 3), before))  # without the guard this case does split
