"""microlad.physics against TauFactor (CPU) on real micro-CT volumes: tau within 1 %.

TauFactor's ``Solver`` flows along the first array axis, so each volume is transposed
with ``np.moveaxis`` to put our transport axis first. TauFactor runs in float32 to its
default convergence criterion (layer-flux spread < 1e-2, tau change < 2e-3).
"""
from __future__ import annotations

import numpy as np
import pytest

from microlad.physics import solve_transport

tf = pytest.importorskip("taufactor")


# TauFactor on one thread: on the shared 2-core machine its 2-thread SOR loop slows down
# >10x whenever another process is busy (measured 4.6 s vs 67 s on Leopard).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _taufactor_tau(solver) -> float:
    solver.solve(verbose=False)
    return float(np.ravel(np.asarray(solver.tau))[0])


@pytest.fixture(scope="module")
def berea64(berea) -> np.ndarray:
    return np.ascontiguousarray(berea[:64, :64, :64])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_berea_64_pore_tau_matches_taufactor(berea64, axis):
    pore = (berea64 == 0).astype(np.uint8)  # berea: 0 = pore
    ours = solve_transport(berea64, phase=0, axis=axis)
    ref = _taufactor_tau(tf.Solver(np.ascontiguousarray(np.moveaxis(pore, axis, 0)), device="cpu"))
    assert ours.converged
    assert ours.volume_fraction == pytest.approx(pore.mean())
    assert ours.tortuosity == pytest.approx(ref, rel=0.01)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_leopard_100_pore_tau_matches_taufactor(leopard, axis):
    pore = (leopard == 1).astype(np.uint8)  # leopard: 1 = pore
    ours = solve_transport(leopard, phase=1, axis=axis)
    ref = _taufactor_tau(tf.Solver(np.ascontiguousarray(np.moveaxis(pore, axis, 0)), device="cpu"))
    assert ours.converged
    assert ours.tortuosity == pytest.approx(ref, rel=0.01)


def test_per_phase_diffusivities_match_taufactor_multiphase(berea):
    # pore (label 1 here) D = 1, grain (label 2) D = 0.05, and a non-conducting label 0
    crop = berea[:40, :40, :40]
    img = np.where(crop == 0, 1, 2).astype(np.uint8)
    img[(crop == 1) & (np.arange(40)[None, None, :] % 6 == 0)] = 0
    cond = {1: 1.0, 2: 0.05}
    ours = solve_transport(img, axis=0, diffusivities=cond)
    ref = _taufactor_tau(tf.MultiPhaseSolver(img, cond=cond, device="cpu"))
    assert ours.tortuosity == pytest.approx(ref, rel=0.01)


def test_periodic_lateral_boundaries_match_taufactor_periodic_solver(berea64):
    pore = (berea64 == 0).astype(np.uint8)
    ours = solve_transport(berea64, phase=0, axis=0, periodic=True)
    ref = _taufactor_tau(tf.PeriodicSolver(pore, device="cpu"))
    assert ours.tortuosity == pytest.approx(ref, rel=0.01)
