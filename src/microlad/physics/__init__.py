"""Steady diffusion through voxel microstructures: effective diffusivity and tortuosity.

Finite volumes on the voxel grid, (Z, Y, X) or (Y, X), the same discretisation family as
TauFactor (cell-centred, harmonic-mean face conductances, Dirichlet faces half a cell from
the first/last cell centres, no-flux or periodic lateral faces), solved with sparse
preconditioned conjugate gradients (aggregation AMG built from pyamg pieces: plain
aggregation when all conducting cells share one diffusivity, smoothed aggregation
otherwise; or Jacobi) or a direct SuperLU factorisation for small systems.

* :func:`solve_transport` - labels (+ optional per-phase diffusivities) ->
  :class:`TransportResult` (``effective_diffusivity = D_eff / D_bulk``,
  ``tortuosity = eps D_bulk / D_eff`` - TauFactor's tortuosity factor, not squared).
* :func:`solve_field` - the same for a numpy diffusivity field.
* :func:`effective_diffusivity` - differentiable (torch) D_eff of a soft field, batched,
  gradient by the adjoint method.
* :func:`tortuosity` - shortcut.
* :class:`SetupCache` - reuse of the operator and multigrid setup between the solves of
  one cell set (e.g. the three axes of a phase); :func:`preload` - import the AMG
  pieces once (e.g. before forking worker processes).

Convergence (iterative solvers): relative residual ``<= rtol`` and relative spread of the
flux through the layers normal to the transport axis ``<= flux_rtol``.
"""
from microlad.physics._linsolve import preload
from microlad.physics._transport import (
    PercolationWarning,
    SetupCache,
    TransportResult,
    solve_field,
    solve_transport,
    tortuosity,
)

__all__ = [
    "TransportResult",
    "PercolationWarning",
    "solve_transport",
    "solve_field",
    "tortuosity",
    "SetupCache",
    "preload",
    "effective_diffusivity",
    "EffectiveDiffusivityFunction",
    "WarmStart",
]


def __getattr__(name: str):
    """The differentiable (torch) entry points load torch on first use only: the numpy
    solvers (``microlad properties``) run without it (about 200 MB less memory)."""
    if name in ("effective_diffusivity", "EffectiveDiffusivityFunction", "WarmStart"):
        from microlad.physics import _autograd

        return getattr(_autograd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
