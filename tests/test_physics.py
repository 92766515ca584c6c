"""microlad.physics: analytic cases, solver options, input checks, adjoint gradients."""
from __future__ import annotations

import dataclasses
import math
import multiprocessing
import warnings

import numpy as np
import pytest
import torch

from microlad.errors import InputError, ShapeError
from microlad.physics import (
    PercolationWarning,
    TransportResult,
    effective_diffusivity,
    solve_field,
    solve_transport,
    tortuosity,
)


def _layers(shape: tuple[int, ...], layer_axis: int, thickness: list[int]) -> np.ndarray:
    """Labels 1, 2, 3, ... in slabs of the given thicknesses along ``layer_axis``."""
    assert sum(thickness) == shape[layer_axis]
    prof = np.concatenate([np.full(t, i + 1) for i, t in enumerate(thickness)]).astype(np.uint8)
    view = [1] * len(shape)
    view[layer_axis] = shape[layer_axis]
    return np.broadcast_to(prof.reshape(view), shape).copy()


# ---------------------------------------------------------------- analytic cases


@pytest.mark.parametrize("shape", [(7, 9), (6, 5, 8)])
@pytest.mark.parametrize("periodic", [False, True])
def test_uniform_medium_has_unit_diffusivity_and_tau(shape, periodic):
    labels = np.ones(shape, np.uint8)
    for axis in range(len(shape)):
        res = solve_transport(labels, phase=1, axis=axis, periodic=periodic)
        assert res.effective_diffusivity == pytest.approx(1.0, rel=1e-10)
        assert res.tortuosity == pytest.approx(1.0, rel=1e-10)
        assert res.volume_fraction == 1.0 and res.axis == axis and res.converged


def test_uniform_medium_concentration_is_linear_with_half_cell_boundaries():
    res = solve_transport(np.ones((8, 5), np.uint8), axis=0, return_field=True)
    expected = 1.0 - (np.arange(8) + 0.5) / 8  # c = 1 at the inlet face, 0 at the outlet
    np.testing.assert_allclose(res.concentration, np.repeat(expected[:, None], 5, axis=1), atol=1e-12)


D_LAYERS = {1: 1.0, 2: 0.25, 3: 0.5}
THICK = [3, 5, 4]


@pytest.mark.parametrize("shape3d", [False, True])
def test_layers_parallel_to_flow_give_arithmetic_mean(shape3d):
    shape = (10, 12, 6) if shape3d else (10, 12)
    labels = _layers(shape, 1, THICK)  # slabs stacked along axis 1, flow along axis 0
    res = solve_transport(labels, axis=0, diffusivities=D_LAYERS)
    arith = sum(t * D_LAYERS[i + 1] for i, t in enumerate(THICK)) / sum(THICK)
    assert res.effective_diffusivity == pytest.approx(arith, rel=1e-10)
    assert res.tortuosity == pytest.approx(1.0, rel=1e-10)  # tau = D_mean / D_eff


@pytest.mark.parametrize("shape3d", [False, True])
def test_layers_perpendicular_to_flow_give_harmonic_mean(shape3d):
    shape = (7, 12, 6) if shape3d else (7, 12)
    labels = _layers(shape, 1, THICK)
    res = solve_transport(labels, axis=1, diffusivities=D_LAYERS)
    harm = sum(THICK) / sum(t / D_LAYERS[i + 1] for i, t in enumerate(THICK))
    arith = sum(t * D_LAYERS[i + 1] for i, t in enumerate(THICK)) / sum(THICK)
    assert res.effective_diffusivity == pytest.approx(harm, rel=1e-10)
    assert res.tortuosity == pytest.approx(arith / harm, rel=1e-10)


@pytest.mark.parametrize("method", ["amg", "jacobi"])
def test_iterative_solvers_reach_the_layered_answer_to_tolerance(method):
    labels = _layers((20, 12, 12), 0, [6, 8, 6])
    res = solve_transport(labels, axis=0, diffusivities=D_LAYERS, method=method, rtol=1e-8)
    harm = 20 / (6 / 1.0 + 8 / 0.25 + 6 / 0.5)
    assert res.converged and res.iterations > 1
    assert res.effective_diffusivity == pytest.approx(harm, rel=1e-6)
    assert res.flux_imbalance <= 1e-3 and res.residual <= 1e-8


def test_straight_channels_give_tau_one():
    labels = np.zeros((9, 10, 10), np.uint8)
    labels[:, 2:4, 5:8] = 1
    labels[:, 7, :] = 1
    res = solve_transport(labels, phase=1, axis=0)
    eps = labels.mean()
    assert res.effective_diffusivity == pytest.approx(eps, rel=1e-10)
    assert res.tortuosity == pytest.approx(1.0, rel=1e-10)
    assert res.volume_fraction == pytest.approx(eps)


@pytest.mark.parametrize("labels", [np.zeros((6, 6), np.uint8), np.ones((6, 6, 6), np.uint8)])
def test_blocked_phase_gives_zero_and_inf_with_a_warning(labels):
    labels = labels.copy()
    labels[2] = 0  # a wall across the flow (axis 0)
    with pytest.warns(PercolationWarning, match="does not connect"):
        res = solve_transport(labels, phase=1, axis=0, return_field=True)
    assert res.effective_diffusivity == 0.0 and res.tortuosity == math.inf
    assert res.converged and res.iterations == 0
    assert np.isnan(res.concentration).all()
    with pytest.warns(PercolationWarning):
        assert tortuosity(labels, phase=1, axis=0) == math.inf


def test_flow_along_the_wall_is_not_blocked():
    labels = np.ones((6, 6, 6), np.uint8)
    labels[2] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = solve_transport(labels, phase=1, axis=1)
    assert res.effective_diffusivity == pytest.approx(5 / 6, rel=1e-10)


def test_isolated_clusters_and_dead_ends_are_excluded():
    labels = np.zeros((10, 8), np.uint8)
    labels[:, 1] = 1  # through channel
    labels[4:6, 4:6] = 1  # isolated pocket
    labels[0:5, 6] = 1  # dead end from the inlet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = solve_transport(labels, phase=1, axis=0, return_field=True)
    assert res.effective_diffusivity == pytest.approx(1 / 8, rel=1e-10)
    assert res.tortuosity == pytest.approx(labels.mean() * 8, rel=1e-10)
    c = res.concentration
    assert np.isnan(c[4:6, 4:6]).all() and np.isnan(c[0:5, 6]).all() and np.isnan(c[:, 0]).all()
    np.testing.assert_allclose(c[:, 1], 1 - (np.arange(10) + 0.5) / 10, atol=1e-12)


def test_periodic_boundaries_join_clusters_across_the_wrap():
    # a path that leaves through the right face and comes back through the left one
    labels = np.zeros((8, 6), np.uint8)
    labels[0:4, 5] = 1
    labels[3:8, 0] = 1
    with pytest.warns(PercolationWarning):
        closed = solve_transport(labels, axis=0)
    assert closed.effective_diffusivity == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrapped = solve_transport(labels, axis=0, periodic=True)
    # series path of 8 cells, one of them entered sideways through the wrap face
    assert 0 < wrapped.effective_diffusivity < labels.mean()
    assert math.isfinite(wrapped.tortuosity) and wrapped.tortuosity > 1


def test_floor_diffusivity_makes_a_blocked_phase_conduct():
    labels = np.ones((8, 8), np.uint8)
    labels[3] = 0
    res = solve_transport(labels, axis=0, diffusivities={1: 1.0, 0: 1e-3})
    assert res.effective_diffusivity == pytest.approx(8 / (7 + 1 / 1e-3), rel=1e-10)
    assert res.volume_fraction == pytest.approx(7 / 8)  # still the fraction of `phase`


def test_methods_agree_on_a_random_percolating_medium():
    rng = np.random.default_rng(3)
    labels = (rng.random((24, 24, 24)) < 0.55).astype(np.uint8)
    ref = solve_transport(labels, axis=2, method="direct", rtol=1e-10)
    assert 0 < ref.effective_diffusivity < 0.55
    for method in ("amg", "jacobi"):
        res = solve_transport(labels, axis=2, method=method, rtol=1e-8)
        assert res.converged
        assert res.effective_diffusivity == pytest.approx(ref.effective_diffusivity, rel=1e-6)


def test_warm_start_from_a_previous_field_converges_at_once():
    rng = np.random.default_rng(4)
    labels = (rng.random((30, 30, 30)) < 0.6).astype(np.uint8)
    cold = solve_transport(labels, axis=1, method="amg", return_field=True)
    warm = solve_transport(labels, axis=1, method="amg", x0=cold.concentration)
    assert cold.iterations > 2 and warm.iterations <= 1
    assert warm.effective_diffusivity == pytest.approx(cold.effective_diffusivity, rel=1e-6)


def test_result_is_frozen_and_axis_normalised():
    res = solve_transport(np.ones((4, 5, 6), np.uint8), axis=-1)
    assert isinstance(res, TransportResult) and res.axis == 2 and res.concentration is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.tortuosity = 2.0  # type: ignore[misc]


def test_bool_and_torch_labels_are_accepted():
    a = np.ones((5, 5), bool)
    assert solve_transport(a).effective_diffusivity == pytest.approx(1.0)
    assert solve_transport(torch.ones(5, 5, dtype=torch.uint8)).effective_diffusivity == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(labels=np.ones((4, 4), np.float32)), InputError),
        (dict(labels=np.ones(4, np.uint8)), ShapeError),
        (dict(labels=np.ones((2, 2, 2, 2), np.uint8)), ShapeError),
        (dict(labels=np.ones((0, 4), np.uint8)), ShapeError),
        (dict(labels=-np.ones((4, 4), np.int8)), InputError),
        (dict(axis=2), InputError),
        (dict(axis=1.0), InputError),
        (dict(phase="pore"), InputError),
        (dict(diffusivities={1: -1.0}), InputError),
        (dict(diffusivities={1: float("nan")}), InputError),
        (dict(diffusivities="fast"), InputError),
        (dict(method="cholesky"), InputError),
        (dict(rtol=0.0), InputError),
        (dict(flux_rtol=-1.0), InputError),
        (dict(x0=np.zeros((3, 3))), ShapeError),
    ],
)
def test_bad_input_raises_one_line_errors(kwargs, exc):
    kwargs = {"labels": np.ones((4, 4), np.uint8), **kwargs}
    labels = kwargs.pop("labels")
    with pytest.raises(exc) as info:
        solve_transport(labels, **kwargs)
    assert "\n" not in str(info.value)


def test_solve_field_matches_labels_with_the_same_diffusivities():
    rng = np.random.default_rng(5)
    labels = (rng.random((16, 16, 16)) < 0.5).astype(np.uint8)
    D = np.where(labels == 1, 1.0, 0.01)
    a = solve_field(D, axis=0)
    b = solve_transport(labels, axis=0, diffusivities={1: 1.0, 0: 0.01})
    assert a.effective_diffusivity == pytest.approx(b.effective_diffusivity, rel=1e-9)
    assert a.tortuosity == pytest.approx(D.mean() / a.effective_diffusivity)
    with pytest.raises(InputError):
        solve_field(-D)


# ---------------------------------------------------------------- assembly and AMG


def _reference_system(D: np.ndarray, axis: int, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Dense ``K``, ``b`` face by face, straight from the definition in ``_operator``."""
    act = np.flatnonzero(D.ravel() > 0)
    num = {int(c): k for k, c in enumerate(act)}
    K, b = np.zeros((act.size, act.size)), np.zeros(act.size)
    for c in act:
        i, idx = num[int(c)], np.unravel_index(int(c), D.shape)
        d = D[idx]
        for ax in range(D.ndim):
            nb = list(idx)
            nb[ax] += 1
            if nb[ax] == D.shape[ax]:
                if not (periodic and ax != axis and D.shape[ax] > 1):
                    continue
                nb[ax] = 0
            dn = D[tuple(nb)]
            if dn > 0:
                j, g = num[int(np.ravel_multi_index(nb, D.shape))], 2 * d * dn / (d + dn)
                K[i, i] += g
                K[j, j] += g
                K[i, j] -= g
                K[j, i] -= g
        if idx[axis] == 0:
            K[i, i] += 2 * d
            b[i] += 2 * d
        if idx[axis] == D.shape[axis] - 1:
            K[i, i] += 2 * d
    return K, b


@pytest.mark.parametrize("shape", [(5, 4), (2, 3), (1, 6), (4, 2, 3), (1, 4, 4), (3, 1, 2), (2, 2, 2)])
@pytest.mark.parametrize("soft", [False, True])
def test_assembled_csr_matches_the_face_by_face_definition(shape, soft):
    from microlad.physics._operator import assemble

    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) < 0.8
    D = np.where(mask, rng.uniform(0.1, 1.0, shape) if soft else 1.0, 0.0)
    for axis in range(len(shape)):
        for periodic in (False, True):
            asm = assemble(D, axis, periodic)
            K_ref, b_ref = _reference_system(D, axis, periodic)
            assert asm.matrix.has_canonical_format and asm.uniform == (not soft)
            np.testing.assert_allclose(asm.matrix.toarray(), K_ref, rtol=1e-13, atol=1e-14)
            np.testing.assert_allclose(asm.rhs, b_ref, rtol=1e-13, atol=0)
            assert (asm.matrix != asm.matrix.T).nnz == 0  # exactly symmetric


def test_amg_flavour_follows_the_coefficients_and_both_reach_the_direct_answer():
    from microlad.physics import _linsolve
    from microlad.physics._operator import assemble

    rng = np.random.default_rng(11)
    labels = (rng.random((26, 26, 26)) < 0.6).astype(np.uint8)
    for diffusivities, smoothed in [(None, False), ({1: 1.0, 0: 1e-3}, True)]:
        ref = solve_transport(labels, axis=1, diffusivities=diffusivities, method="direct", rtol=1e-10)
        res = solve_transport(labels, axis=1, diffusivities=diffusivities, method="amg", rtol=1e-9, flux_rtol=1e-6)
        assert res.converged and res.residual <= 1e-9 and res.flux_imbalance <= 1e-6
        assert res.effective_diffusivity == pytest.approx(ref.effective_diffusivity, rel=1e-7)
        D = np.where(labels == 1, 1.0, 0.0) if diffusivities is None else np.where(labels == 1, 1.0, 1e-3)
        if diffusivities is None:
            from microlad.physics._operator import percolating_mask

            D = np.where(percolating_mask(D > 0, 1, False), D, 0.0)
        K = assemble(D, 1, False).matrix
        assert _linsolve._amg_preconditioner(K).smoothed is smoothed


def test_soft_field_amg_matches_direct():
    rng = np.random.default_rng(12)
    D = 10.0 ** rng.uniform(-3, 0, (24, 24, 24))
    ref = solve_field(D, axis=2, method="direct", rtol=1e-10)
    res = solve_field(D, axis=2, method="amg", rtol=1e-9)
    assert res.converged and res.iterations > 1
    assert res.effective_diffusivity == pytest.approx(ref.effective_diffusivity, rel=1e-7)


def test_setup_cache_is_reused_across_axes_and_changes_no_result():
    from microlad.physics._operator import percolating_mask
    from microlad.physics._transport import SetupCache, solve_transport
    from microlad.synthetic import random_field_labels

    vol = random_field_labels((30, 32, 34), fractions=(0.75, 0.25), correlation_length=2, seed=8)
    masks = [percolating_mask(vol == 0, ax, False) for ax in range(3)]
    assert all(np.array_equal(masks[0], m) for m in masks)  # one cell set: the setup is shared
    cache = SetupCache()
    graphs = []
    for axis in range(3):
        shared = solve_transport(vol, phase=0, axis=axis, cache=cache, return_field=True)
        graphs.append(cache._entry[2])
        alone = solve_transport(vol, phase=0, axis=axis, return_field=True)
        assert shared.iterations > 1 and shared.converged
        assert shared.tortuosity == alone.tortuosity and shared.iterations == alone.iterations
        np.testing.assert_array_equal(shared.concentration, alone.concentration)  # bit-identical
    assert graphs[0] is graphs[1] is graphs[2]
    # another phase (other cells) or periodic faces (other graph): rebuilt, not reused
    solve_transport(vol, phase=1, axis=0, cache=cache)
    assert cache._entry[2] is not graphs[2]
    g1 = cache._entry[2]
    solve_transport(vol, phase=1, axis=0, cache=cache, periodic=True)
    assert cache._entry[2] is not g1 and any(cache._entry[2].wraps)


# ---------------------------------------------------------------- properties report (transport)


def _properties_module():
    import importlib

    return importlib.import_module("microlad.evaluate.properties")  # the module, not the function


def test_report_transport_is_the_same_with_workers_and_uses_the_taufactor_tolerance(monkeypatch, caplog):
    from microlad.evaluate import properties
    from microlad.synthetic import random_field_labels

    mod = _properties_module()
    monkeypatch.setattr(mod._parallel, "PARALLEL_MIN_VOXELS", 0)  # use the pool even on a small volume
    vol = random_field_labels((24, 26, 28), fractions=(0.6, 0.4), correlation_length=2, seed=3)
    serial = properties(vol, workers=1)
    with caplog.at_level("INFO", logger=mod._parallel.__name__):
        pooled = properties(vol, workers=2)
    if "fork" in multiprocessing.get_all_start_methods():
        assert not [r for r in caplog.records if "workers failed" in r.getMessage()]  # the pool ran
    assert pooled == serial  # bit-identical, whatever process solved what
    assert serial["transport_tolerance"] == {"rtol": mod.TRANSPORT_RTOL, "flux_rtol": mod.TRANSPORT_FLUX_RTOL}
    for p in (0, 1):
        for i, a in enumerate("zyx"):
            res = solve_transport(vol, phase=p, axis=i, rtol=mod.TRANSPORT_RTOL, flux_rtol=mod.TRANSPORT_FLUX_RTOL)
            tau = serial["phases"][str(p)]["tortuosity"][a]
            assert (tau is None and not math.isfinite(res.tortuosity)) or tau == res.tortuosity


def test_report_falls_back_to_one_process_when_the_pool_fails(monkeypatch, caplog):
    from microlad.evaluate import properties
    from microlad.synthetic import random_field_labels

    mod = _properties_module()
    vol = random_field_labels((20, 20, 20), fractions=(0.5, 0.5), correlation_length=2, seed=4)
    serial = properties(vol, workers=1)

    class Broken:
        def __init__(self, *args, **kwargs):
            raise OSError("no fork today")

    monkeypatch.setattr(mod._parallel, "PARALLEL_MIN_VOXELS", 0)
    monkeypatch.setattr(mod._parallel, "ProcessPoolExecutor", Broken)
    with caplog.at_level("INFO", logger=mod._parallel.__name__):
        assert properties(vol, workers=2) == serial
    if "fork" in multiprocessing.get_all_start_methods():
        assert any("no fork today" in r.getMessage() for r in caplog.records)
    with pytest.raises(InputError):
        properties(vol, workers=0)


def test_default_workers_drop_to_one_when_the_other_cpus_are_busy(monkeypatch):
    mod = _properties_module()._parallel
    real_sample = mod.cpu_sample
    monkeypatch.setattr(mod.os, "cpu_count", lambda: 2)
    samples = iter([(100.0, 1000.0)])
    monkeypatch.setattr(mod, "cpu_sample", lambda: next(samples))
    assert mod.others_busy((90.0, 800.0))  # 0.1 CPU idle over the window
    samples = iter([(180.0, 1000.0)])
    assert not mod.others_busy((90.0, 800.0))  # 0.9 CPU idle
    samples = iter([(100.0, 805.0)])
    assert not mod.others_busy((90.0, 800.0))  # window too short to tell
    samples = iter([None])
    assert not mod.others_busy((90.0, 800.0))  # no /proc/stat
    real = real_sample()
    if real is not None:  # Linux: (idle, total) jiffies, idle <= total
        assert 0 <= real[0] <= real[1]


def test_report_tolerance_keeps_tau_within_0p2_percent_of_the_default_solve():
    from microlad.evaluate import properties
    from microlad.synthetic import random_field_labels

    vol = random_field_labels((40, 40, 40), fractions=(0.7, 0.3), correlation_length=3, seed=6)
    rep = properties(vol, workers=1)
    checked = 0
    for p in (0, 1):
        for i, a in enumerate("zyx"):
            tau = rep["phases"][str(p)]["tortuosity"][a]
            if tau is not None:
                ref = solve_transport(vol, phase=p, axis=i)  # rtol 1e-6, flux spread 1e-3
                assert tau == pytest.approx(ref.tortuosity, rel=2e-3)
                checked += 1
    assert checked >= 4


# ---------------------------------------------------------------- differentiable path


def _soft(shape, seed, eps=0.05, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return eps + (1 - eps) * torch.rand(shape, generator=g, dtype=dtype)


def test_effective_diffusivity_matches_solve_field():
    D = _soft((12, 10), 0)
    for axis in (0, 1):
        for periodic in (False, True):
            ref = solve_field(D.numpy(), axis=axis, periodic=periodic, rtol=1e-10).effective_diffusivity
            val = effective_diffusivity(D, axis=axis, periodic=periodic)
            assert val.shape == () and val.dtype == torch.float64
            assert float(val) == pytest.approx(ref, rel=1e-9)


def test_effective_diffusivity_of_uniform_and_layered_fields():
    assert float(effective_diffusivity(torch.full((6, 7, 5), 0.3, dtype=torch.float64), axis=2)) == pytest.approx(0.3)
    D = torch.tensor([1.0, 0.25, 0.5], dtype=torch.float64).repeat_interleave(torch.tensor([3, 5, 4]))
    D2 = D[:, None].expand(12, 5).contiguous()
    harm = 12 / (3 / 1 + 5 / 0.25 + 4 / 0.5)
    assert float(effective_diffusivity(D2, axis=0)) == pytest.approx(harm, rel=1e-10)


def test_batched_equals_per_slice_and_keeps_dtype():
    D = _soft((5, 16, 16), 1, dtype=torch.float32)
    out = effective_diffusivity(D, axis=1, batched=True)
    assert out.shape == (5,) and out.dtype == torch.float32
    for b in range(5):
        assert float(out[b]) == pytest.approx(float(effective_diffusivity(D[b], axis=1)), rel=1e-6)


@pytest.mark.parametrize(
    "shape, axis, periodic",
    [((5, 6), 0, False), ((5, 6), 1, True), ((4, 3, 5), 0, False), ((3, 4, 4), 2, True)],
)
def test_gradcheck(shape, axis, periodic):
    D = _soft(shape, 2, eps=0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda d: effective_diffusivity(d, axis=axis, periodic=periodic), (D,))


def test_gradcheck_batched():
    D = _soft((3, 4, 5), 3, eps=0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda d: effective_diffusivity(d, axis=0, batched=True), (D,))


def test_adjoint_gradient_matches_finite_differences_on_32cubed():
    """32^3 uses the AMG-PCG path; central differences along random directions."""
    D = _soft((32, 32, 32), 4, eps=1e-2).requires_grad_()
    val = effective_diffusivity(D, axis=0, rtol=1e-10)
    (grad,) = torch.autograd.grad(val, D)
    assert torch.isfinite(grad).all() and float(grad.min()) >= 0  # D_eff is monotone in D
    g = torch.Generator().manual_seed(7)
    h = 1e-4
    with torch.no_grad():
        for _ in range(2):
            v = torch.randn(D.shape, generator=g, dtype=torch.float64) * D  # relative perturbation
            fp = effective_diffusivity(D + h * v, axis=0, rtol=1e-10)
            fm = effective_diffusivity(D - h * v, axis=0, rtol=1e-10)
            fd = float(fp - fm) / (2 * h)
            ad = float((grad * v).sum())
            assert ad == pytest.approx(fd, rel=1e-6)


def test_warm_start_keeps_value_and_gradient_and_saves_iterations(monkeypatch):
    """A 32³ soft field (AMG-PCG path) solved cold, then a field with 1 % of its cells
    changed, cold and warm-started from the first solution: same D_eff and gradient
    to the solver's tolerance (independent reference: the cold solve at rtol 1e-10),
    fewer PCG iterations."""
    from microlad.physics import WarmStart, _linsolve

    iterations = []
    real = _linsolve.solve_spd

    def counting(*args, **kwargs):
        info = real(*args, **kwargs)
        iterations.append(info.iterations)
        return info

    monkeypatch.setattr("microlad.physics._autograd.solve_spd", counting)
    D1 = _soft((32, 32, 32), 5, eps=1e-3)
    g = torch.Generator().manual_seed(6)
    changed = torch.rand(D1.shape, generator=g) < 0.01
    D2 = torch.where(changed, 1.0 - D1 + 1e-3, D1).requires_grad_()
    warm = WarmStart()
    effective_diffusivity(D1, axis=1, rtol=1e-8, warm_start=warm)
    assert len(warm.fields) == 1 and warm.fields[0].shape == (32, 32, 32)
    ref = effective_diffusivity(D2, axis=1, rtol=1e-10)
    (gref,) = torch.autograd.grad(ref, D2)
    iterations.clear()
    cold = effective_diffusivity(D2, axis=1, rtol=1e-8)
    hot = effective_diffusivity(D2, axis=1, rtol=1e-8, warm_start=warm)
    (ghot,) = torch.autograd.grad(hot, D2)
    assert hot.item() == pytest.approx(ref.item(), rel=1e-7) and cold.item() == pytest.approx(ref.item(), rel=1e-7)
    torch.testing.assert_close(ghot, gref, rtol=1e-5, atol=1e-9 * float(gref.abs().max()))
    assert iterations[1] < iterations[0]  # warm < cold
    # a field of another shape starts cold and replaces the stored one
    effective_diffusivity(_soft((8, 9, 10), 7, eps=1e-3), axis=0, warm_start=warm)
    assert warm.fields[0].shape == (8, 9, 10)
    with pytest.raises(InputError):
        effective_diffusivity(D1, axis=0, warm_start="no")


@pytest.mark.parametrize(
    "D, kwargs, exc",
    [
        (np.ones((4, 4)), {}, InputError),
        (torch.ones(4, 4, dtype=torch.int64), {}, InputError),
        (torch.ones(4), {}, ShapeError),
        (torch.ones(4, 4), {"batched": True}, ShapeError),
        (torch.zeros(4, 4), {}, InputError),
        (torch.full((4, 4), float("nan")), {}, InputError),
        (torch.ones(4, 4), {"axis": 2}, InputError),
    ],
)
def test_effective_diffusivity_rejects_bad_input(D, kwargs, exc):
    kwargs = {"axis": 0, **kwargs}
    with pytest.raises(exc) as info:
        effective_diffusivity(D, **kwargs)
    assert "\n" not in str(info.value)
