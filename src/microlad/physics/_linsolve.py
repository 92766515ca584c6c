"""Sparse SPD solves: direct (SuperLU), AMG- or Jacobi-preconditioned conjugate gradients.

Convergence criterion (iterative methods), both must hold:

1. relative residual ``||b - K x||_2 / ||b||_2 <= rtol``;
2. relative flux imbalance ``(max_k J_k - min_k J_k) / mean_k J_k <= flux_rtol`` over all
   layers of faces normal to the transport axis (inlet face, internal layers, outlet
   face; TauFactor's criterion, whose default is 1e-2).

PCG runs to criterion 1; if criterion 2 fails it continues from the current iterate
(warm start) with the residual target divided by 10, until both hold, ``maxiter`` is
spent, or the target reaches 1e-14. The direct solver is checked the same way.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = ["SolveInfo", "solve_spd", "choose_method", "METHODS"]

METHODS = ("auto", "direct", "amg", "jacobi")

# "auto" factorises small systems directly (exact, and the fastest there)
_DIRECT_MAX_2D = 65_536  # unknowns: 256 x 256
_DIRECT_MAX_3D = 8_000  # unknowns: 20^3 (3D fill-in grows fast)
_RTOL_FLOOR = 1e-14
_DEFAULT_MAXITER = {"amg": 1_000, "jacobi": 20_000}


@dataclass(frozen=True)
class SolveInfo:
    x: np.ndarray
    iterations: int
    converged: bool
    residual: float  # relative residual ||b - K x|| / ||b||
    flux_imbalance: float


def choose_method(method: str, n: int, ndim: int) -> str:
    if method != "auto":
        return method
    limit = _DIRECT_MAX_2D if ndim == 2 else _DIRECT_MAX_3D
    return "direct" if n <= limit else "amg"


def factorize(K: sp.spmatrix):
    """SuperLU factorisation of an SPD matrix (no pivoting, symmetric ordering)."""
    return spla.splu(
        sp.csc_matrix(K),
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
    )


def _sa_hierarchy(K: sp.csr_matrix, *, max_coarse: int = 1000, max_levels: int = 12, omega: float = 4.0 / 3.0):
    """Smoothed-aggregation AMG hierarchy for a scalar SPD M-matrix, all in CSR.

    pyamg's building blocks (symmetric strength of connection, standard aggregation,
    ``MultilevelSolver``), with the tentative prolongator (piecewise constant on
    aggregates, the constant near-nullspace) smoothed by one damped-Jacobi step with
    row-wise Gershgorin weights (pyamg's ``weighting='local'``):
    ``P = (I - omega D_loc^-1 K) T``, ``K_c = P^T K P``. Built here rather than with
    ``pyamg.smoothed_aggregation_solver`` because that stores coarse levels as 1x1-block
    BSR matrices, whose deduplication in scipy is a Python loop (seconds per level).
    Deterministic (no randomised spectral-radius estimate).
    """
    from pyamg.aggregation.aggregate import standard_aggregation
    from pyamg.multilevel import MultilevelSolver
    from pyamg.relaxation.smoothing import change_smoothers
    from pyamg.strength import symmetric_strength_of_connection

    A = sp.csr_matrix(K)
    levels = []
    while True:
        level = MultilevelSolver.Level()
        level.A = A
        levels.append(level)
        if A.shape[0] <= max_coarse or len(levels) >= max_levels:
            break
        agg = standard_aggregation(symmetric_strength_of_connection(A, 0.0))[0].tocsr()
        if agg.shape[1] == 0 or agg.shape[1] >= A.shape[0]:
            break
        rowabs = np.asarray(abs(A).sum(axis=1)).ravel()
        dinv = np.divide(omega, rowabs, out=np.zeros_like(rowabs), where=rowabs > 0)
        P = (agg - sp.diags(dinv) @ (A @ agg)).tocsr()
        level.P = P
        level.R = P.T.tocsr()
        A = (level.R @ (A @ P)).tocsr()  # Galerkin K_c = P^T K P
    ml = MultilevelSolver(levels, coarse_solver="splu")
    gs = ("gauss_seidel", {"sweep": "symmetric"})
    change_smoothers(ml, gs, gs)
    return ml


def _amg_preconditioner(K: sp.csr_matrix):
    # W-cycle: the aggregation coarse levels are weak; W costs ~1.3x a V-cycle per
    # application and halves the iteration count on pore-space operators.
    return _sa_hierarchy(K).aspreconditioner(cycle="W")


def _rel_residual(K, x, b, bnorm) -> float:
    return float(np.linalg.norm(b - K @ x) / bnorm) if bnorm > 0 else 0.0


def solve_spd(
    K: sp.csr_matrix,
    b: np.ndarray,
    *,
    method: str,
    rtol: float,
    flux_rtol: float,
    flux_imbalance: Callable[[np.ndarray], float],
    x0: np.ndarray | None = None,
    maxiter: int | None = None,
) -> SolveInfo:
    """Solve ``K x = b`` (``K`` SPD) with the criterion in the module docstring."""
    n = K.shape[0]
    bnorm = float(np.linalg.norm(b))
    if method == "direct":
        x = factorize(K).solve(b)
        res = _rel_residual(K, x, b, bnorm)
        imb = flux_imbalance(x)
        return SolveInfo(x, 1, bool(res <= rtol and imb <= flux_rtol), res, imb)

    x = np.zeros(n) if x0 is None else np.array(x0, dtype=np.float64, copy=True)
    if x0 is not None:  # a warm start may already satisfy both criteria: skip the setup
        res, imb = _rel_residual(K, x, b, bnorm), flux_imbalance(x)
        if res <= rtol and imb <= flux_rtol:
            return SolveInfo(x, 0, True, res, imb)

    if method == "amg":
        M = _amg_preconditioner(K)
    elif method == "jacobi":
        M = sp.diags(1.0 / K.diagonal())
    else:  # pragma: no cover - validated by the callers
        raise ValueError(method)

    budget = maxiter if maxiter is not None else _DEFAULT_MAXITER[method]
    count = [0]

    def _cb(_xk):
        count[0] += 1

    target = rtol
    while True:
        x, _ = spla.cg(K, b, x0=x, rtol=target, atol=0.0, maxiter=max(budget - count[0], 1), M=M, callback=_cb)
        res = _rel_residual(K, x, b, bnorm)
        imb = flux_imbalance(x)
        converged = res <= rtol and imb <= flux_rtol
        if converged or count[0] >= budget or target <= _RTOL_FLOOR:
            return SolveInfo(x, count[0], bool(converged), res, imb)
        target = max(min(target, res) / 10.0, _RTOL_FLOOR)
