"""Steady diffusion through a voxel microstructure: D_eff and tortuosity (TauFactor-like).

Conventions: arrays are (Z, Y, X) or (Y, X); ``axis`` is the transport direction (index
into the array axes). The inlet face (``c = 1``) is index 0 along ``axis``, the outlet
face (``c = 0``) the last index; the other faces are no-flux or periodic. Lengths are in
voxels. Discretisation and convergence: see ``_operator`` and ``_linsolve``.

Definitions (TauFactor's):

* ``effective_diffusivity`` = ``D_eff / D_bulk``: flux per unit area over the applied
  gradient, in units of the reference (bulk) diffusivity in which the per-phase
  diffusivities are given (binary case: the conducting phase has ``D = 1``);
* ``tortuosity`` ``tau = D_mean / D_eff`` with ``D_mean = sum_p eps_p D_p`` (the
  volume-weighted mean diffusivity); binary case ``tau = eps D_bulk / D_eff``. This is
  the tortuosity *factor* (not squared, not a path-length ratio); ``tau = 1`` for a
  straight, uniform medium; ``eps`` counts the whole phase (dead ends and isolated
  clusters included), as TauFactor does.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from microlad.descriptors._validate import as_labels, check_axis, check_spatial, to_numpy
from microlad.errors import InputError, ShapeError
from microlad.physics._linsolve import METHODS, PlainHierarchy, choose_method, solve_spd
from microlad.physics._operator import Graph, assemble_on, graph, percolating_mask, wrap_flags

__all__ = ["TransportResult", "PercolationWarning", "solve_transport", "solve_field", "tortuosity"]


class PercolationWarning(UserWarning):
    """The conducting phase does not connect the two Dirichlet faces (D_eff = 0)."""


@dataclass(frozen=True)
class TransportResult:
    """Result of :func:`solve_transport` / :func:`solve_field`.

    Attributes
    ----------
    effective_diffusivity : float
        ``D_eff / D_bulk`` along ``axis`` (0 when the phase does not percolate).
    tortuosity : float
        Tortuosity factor ``tau = D_mean / D_eff`` (``eps D_bulk / D_eff`` for a binary
        phase); ``inf`` when the phase does not percolate.
    volume_fraction : float
        Fraction of voxels labelled ``phase`` (:func:`solve_field`: the mean of ``D``).
    axis : int
        Transport axis (index into the array axes, non-negative).
    iterations : int
        PCG iterations (1 for a direct factorisation, 0 when nothing was solved).
    converged : bool
        Whether the residual and flux criteria were met (see ``microlad.physics``).
    concentration : numpy.ndarray or None
        With ``return_field=True``: concentration on the grid, 1 at the inlet face (index
        0 along ``axis``) and 0 at the outlet face; NaN on cells that were not solved
        (other phases, dead ends without through-connection, isolated clusters).
    residual : float
        Final relative residual ``||b - K c|| / ||b||``.
    flux_imbalance : float
        Final ``(max - min) / mean`` of the flux through the layers normal to ``axis``.
    """

    effective_diffusivity: float
    tortuosity: float
    volume_fraction: float
    axis: int
    iterations: int
    converged: bool
    concentration: np.ndarray | None = None
    residual: float = 0.0
    flux_imbalance: float = 0.0


# ---------------------------------------------------------------- input checks


@dataclass(frozen=True)
class SolveOptions:
    """How to solve one transport problem (validated on construction).

    ``axis``: transport axis, non-negative; ``periodic``: periodic lateral faces;
    ``rtol``: relative residual target; ``flux_rtol``: layer-flux spread target;
    ``method``: one of ``METHODS``; ``maxiter``: iterative budget (None: the default);
    ``return_field``: also return the concentration field.
    """

    axis: int
    periodic: bool = False
    rtol: float = 1e-6
    flux_rtol: float = 1e-3
    method: str = "auto"
    maxiter: int | None = None
    return_field: bool = False

    def __post_init__(self) -> None:
        rtol, flux_rtol = self.rtol, self.flux_rtol
        if isinstance(rtol, bool) or not (isinstance(rtol, (int, float)) and 0.0 < rtol < 1.0):
            raise InputError(f"rtol must be a float in (0, 1), got {rtol!r}")
        if isinstance(flux_rtol, bool) or not (isinstance(flux_rtol, (int, float)) and flux_rtol > 0.0):
            raise InputError(f"flux_rtol must be a positive float, got {flux_rtol!r}")
        if self.method not in METHODS + ("grid",):
            raise InputError(f"method must be one of {', '.join(METHODS + ('grid',))}; got {self.method!r}")
        if not isinstance(self.periodic, (bool, np.bool_)):
            raise InputError(f"periodic must be True or False, got {self.periodic!r}")
        if self.maxiter is not None and (isinstance(self.maxiter, bool) or not isinstance(self.maxiter, (int, np.integer)) or self.maxiter < 1):
            raise InputError(f"maxiter must be a positive int or None, got {self.maxiter!r}")
        object.__setattr__(self, "rtol", float(rtol))
        object.__setattr__(self, "flux_rtol", float(flux_rtol))
        object.__setattr__(self, "periodic", bool(self.periodic))


_LABELS_HINT = "segment it first, or pass a soft diffusivity field to solve_field/effective_diffusivity"


def _diffusivity_field(arr: np.ndarray, phase: int, diffusivities) -> np.ndarray:
    """Per-voxel diffusivity from labels: ``labels == phase`` or a per-label table."""
    top = int(arr.max())
    if diffusivities is None:
        return (arr == phase).astype(np.float64)
    if isinstance(diffusivities, Mapping):
        items = list(diffusivities.items())
    elif isinstance(diffusivities, (Sequence, np.ndarray)) and not isinstance(diffusivities, (str, bytes)):
        try:
            items = list(enumerate(np.asarray(diffusivities, dtype=np.float64).ravel().tolist()))
        except (TypeError, ValueError):
            raise InputError(f"diffusivities must hold numbers, got {diffusivities!r}") from None
    else:
        raise InputError(
            f"diffusivities must be a mapping {{label: D}} or a sequence indexed by label, "
            f"got {type(diffusivities).__name__}"
        )
    lut = np.zeros(max(top, max((int(k) for k, _ in items), default=0)) + 1, dtype=np.float64)
    for k, v in items:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InputError(f"diffusivities keys must be non-negative int labels, got {k!r}")
        v = float(v)
        if not math.isfinite(v) or v < 0:
            raise InputError(f"diffusivity of label {k} must be finite and >= 0, got {v!r}")
        lut[int(k)] = v
    return lut[arr]


# ---------------------------------------------------------------- core


class SetupCache:
    """Reuse of the axis-independent setup from one solve to the next.

    Holds the last solve's conducting cells (diffusivities after the percolation cut),
    their graph Laplacian ``L`` (``_operator.Graph``) and, once built, its
    plain-aggregation hierarchy. The next solve reuses them when its conducting cells,
    diffusivities and wrap-around faces are the same (checked), e.g. the three axes of
    one phase whose through-connected clusters reach all six faces, with no-flux lateral
    faces. Results do not depend on a cache: every solve builds ``K = L + diag(d)`` and
    its hierarchy from ``L`` alike. One entry; not thread-safe (one cache per thread).
    """

    def __init__(self) -> None:
        self._entry: tuple[np.ndarray, tuple[bool, ...], Graph, list] | None = None

    def graph(self, D: np.ndarray, wraps: tuple[bool, ...]) -> tuple[Graph, list]:
        """``(graph, holder)``: ``holder[0]`` is the graph's hierarchy (None until built)."""
        e = self._entry
        if e is not None and e[1] == wraps and e[0].shape == D.shape and np.array_equal(e[0], D):
            return e[2], e[3]
        G, holder = graph(D, wraps), [None]
        self._entry = (D, wraps, G, holder)
        return G, holder


def _solve(
    D: np.ndarray,
    opts: SolveOptions,
    *,
    x0,
    d_mean: float,
    volume_fraction: float,
    what: str,
    cache: SetupCache | None = None,
    stacklevel: int = 3,
) -> TransportResult:
    """Solve on a float64 diffusivity grid ``D >= 0`` (0 = non-conducting)."""
    axis, periodic, return_field = opts.axis, opts.periodic, opts.return_field
    if x0 is not None:
        x0 = np.asarray(x0, dtype=np.float64)
        if x0.shape != D.shape:
            raise ShapeError(f"x0 must have the grid shape {D.shape}, got {x0.shape}")
    if not np.all(D > 0):
        D = np.where(percolating_mask(D > 0, axis, periodic), D, 0.0)
    if not np.any(D > 0):
        warnings.warn(
            f"{what} does not connect the two faces normal to axis {axis}: "
            "effective_diffusivity = 0, tortuosity = inf",
            PercolationWarning,
            stacklevel=stacklevel,
        )
        field = np.full(D.shape, np.nan) if return_field else None
        return TransportResult(0.0, math.inf, volume_fraction, axis, 0, True, field, 0.0, 0.0)

    wraps = wrap_flags(tuple(D.shape), axis, periodic)
    G, holder = cache.graph(D, wraps) if cache is not None else (graph(D, wraps), [None])
    asm = assemble_on(G, axis)
    stride = int(np.prod(D.shape[axis + 1 :]))
    n_ax = D.shape[axis]
    prof = 1.0 - ((asm.index // stride) % n_ax + 0.5) / n_ax  # linear profile, exact if uniform
    if x0 is not None:
        guess = x0.ravel()[asm.index]
        guess = np.where(np.isfinite(guess), guess, prof)
    else:
        guess = prof

    def plain_amg():
        """Plain-aggregation preconditioner from the (shared) hierarchy of ``L``."""
        if holder[0] is None:
            holder[0] = PlainHierarchy(G.laplacian)
        d = np.zeros(asm.matrix.shape[0])  # K = L + diag(d): the Dirichlet conductances
        d[asm.inlet[0]] += asm.inlet[1]
        d[asm.outlet[0]] += asm.outlet[1]
        return holder[0].bind(asm.matrix, d)

    info = solve_spd(
        asm.matrix,
        asm.rhs,
        method=choose_method(opts.method, asm.matrix.shape[0], D.ndim),
        rtol=opts.rtol,
        flux_rtol=opts.flux_rtol,
        flux_imbalance=asm.flux_imbalance,
        x0=guess,
        maxiter=opts.maxiter,
        uniform=asm.uniform,
        preconditioner=plain_amg if asm.uniform else None,
    )
    d_eff = max(asm.effective_diffusivity(info.x), 0.0)
    tau = d_mean / d_eff if d_eff > 0 else math.inf
    return TransportResult(
        effective_diffusivity=d_eff,
        tortuosity=float(tau),
        volume_fraction=float(volume_fraction),
        axis=axis,
        iterations=info.iterations,
        converged=info.converged,
        concentration=asm.to_grid(info.x, np.nan) if return_field else None,
        residual=info.residual,
        flux_imbalance=info.flux_imbalance,
    )


def _solve_grid(mask: np.ndarray, opts: SolveOptions, *, what: str, stacklevel: int = 4) -> TransportResult:
    """:func:`_solve` for a binary phase ``mask`` (3D) with the matrix-free grid solver."""
    from microlad.physics._gridmg import solve_grid

    vf = float(np.count_nonzero(mask)) / mask.size
    axis = opts.axis
    active = percolating_mask(mask, axis, False)
    del mask
    if not active.any():
        warnings.warn(
            f"{what} does not connect the two faces normal to axis {axis}: effective_diffusivity = 0, tortuosity = inf",
            PercolationWarning,
            stacklevel=stacklevel,
        )
        field = np.full(active.shape, np.nan) if opts.return_field else None
        return TransportResult(0.0, math.inf, vf, axis, 0, True, field, 0.0, 0.0)
    res = solve_grid(active, axis, rtol=opts.rtol, flux_rtol=opts.flux_rtol, maxiter=opts.maxiter or 1000)
    length = active.shape[axis]
    d_eff = max(float(res.fluxes.mean()) * length / (active.size // length), 0.0)
    field = None
    if opts.return_field:
        field = np.where(active, np.moveaxis(res.x, 0, axis).astype(np.float64), np.nan)
    return TransportResult(
        effective_diffusivity=d_eff,
        tortuosity=vf / d_eff if d_eff > 0 else math.inf,
        volume_fraction=vf,
        axis=axis,
        iterations=res.iterations,
        converged=res.converged,
        concentration=field,
        residual=res.residual,
        flux_imbalance=res.flux_imbalance,
    )


# ---------------------------------------------------------------- public API


def solve_transport(
    labels,
    *,
    phase: int = 1,
    axis: int = 0,
    diffusivities: Mapping[int, float] | Sequence[float] | None = None,
    periodic: bool = False,
    rtol: float = 1e-6,
    return_field: bool = False,
    flux_rtol: float = 1e-3,
    method: str = "auto",
    x0: np.ndarray | None = None,
    maxiter: int | None = None,
    cache: SetupCache | None = None,
) -> TransportResult:
    """Effective diffusivity and tortuosity factor of a phase along one axis.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer labels, (Z, Y, X) or (Y, X) (bool is read as 0/1).
    phase : int
        Label of the conducting phase (``D = 1``; every other label ``D = 0``). Ignored
        for the diffusivities when ``diffusivities`` is given, but still sets
        ``volume_fraction``.
    axis : int
        Transport direction: fixed concentration on the two faces normal to it.
    diffusivities : mapping or sequence, optional
        Per-label diffusivity relative to the bulk (``{label: D}`` or a sequence indexed
        by label; missing labels get 0). ``D = 0`` labels do not conduct; a small floor
        (e.g. ``{1: 1.0, 0: 1e-4}``) makes every voxel conduct. TauFactor's
        ``MultiPhaseSolver`` counterpart.
    periodic : bool
        Periodic instead of no-flux lateral boundaries.
    rtol : float
        Relative residual target ``||b - K c|| / ||b||``.
    return_field : bool
        Also return the concentration field.
    flux_rtol : float
        Target for the relative spread of the flux through the layers normal to ``axis``
        (TauFactor's convergence measure; its default is 1e-2).
    method : {"auto", "direct", "amg", "jacobi", "grid"}
        Linear solver: SuperLU factorisation, or conjugate gradients preconditioned by
        aggregation AMG (pyamg aggregation; plain aggregation with one diffusivity on
        every conducting cell, smoothed aggregation otherwise; see
        ``microlad.physics._linsolve``) or Jacobi. "auto": direct for small systems
        (<= 65,536 unknowns in 2D, <= 8,000 in 3D), AMG otherwise. "grid": matrix-free
        PCG with a geometric multigrid on the voxel grid (``microlad.physics._gridmg``;
        3D, binary ``phase`` only, no ``diffusivities``, ``periodic``, ``x0``), about 30
        bytes per voxel instead of hundreds per conducting cell: for large volumes.
    x0 : numpy.ndarray, optional
        Warm start: a concentration field of the grid's shape (e.g. a previous
        ``concentration``; NaNs are replaced by the linear profile, the default).
    maxiter : int, optional
        Iteration budget of the iterative solvers (default 1000 AMG, 20000 Jacobi).
    cache : SetupCache, optional
        Reuse of the operator and AMG setup between calls on the same cells (e.g. the
        three axes of one phase, as the ``properties`` report does). Same results either way.

    Returns
    -------
    TransportResult

    Notes
    -----
    Only the cells of the conducting phase that are face-connected to both Dirichlet
    faces are solved (isolated clusters and dead ends carry no steady flux). When there
    are none, the result is ``D_eff = 0``, ``tau = inf`` and a
    :class:`PercolationWarning` is issued.

    Examples
    --------
    >>> import numpy as np
    >>> res = solve_transport(np.ones((8, 8, 8), np.uint8), phase=1, axis=0)
    >>> round(res.effective_diffusivity, 6), round(res.tortuosity, 6)
    (1.0, 1.0)
    """
    arr = as_labels(labels, hint=_LABELS_HINT)
    opts = SolveOptions(check_axis(axis, arr.ndim), periodic, rtol, flux_rtol, method, maxiter, return_field)
    if isinstance(phase, bool) or not isinstance(phase, (int, np.integer)):
        raise InputError(f"phase must be an int label, got {phase!r}")
    if opts.method == "grid":
        if arr.ndim != 3 or diffusivities is not None or opts.periodic or x0 is not None:
            raise InputError("method='grid' solves binary 3D labels with no-flux lateral faces: no diffusivities, periodic or x0")
        return _solve_grid(arr == phase, opts, what=f"phase {phase}")
    D = _diffusivity_field(arr, int(phase), diffusivities)
    vf = float(np.mean(arr == phase))
    what = f"phase {phase}" if diffusivities is None else "the conducting phases"
    return _solve(D, opts, x0=x0, d_mean=float(D.mean()), volume_fraction=vf, what=what, cache=cache, stacklevel=3)


def solve_field(
    D,
    *,
    axis: int = 0,
    periodic: bool = False,
    rtol: float = 1e-6,
    return_field: bool = False,
    flux_rtol: float = 1e-3,
    method: str = "auto",
    x0: np.ndarray | None = None,
    maxiter: int | None = None,
) -> TransportResult:
    """:func:`solve_transport` for a per-voxel diffusivity field ``D >= 0`` (no gradient).

    ``D`` is relative to the bulk diffusivity (e.g. ``eps + (1 - eps) p`` from phase
    probabilities ``p``). ``tortuosity = mean(D) / D_eff`` and ``volume_fraction =
    mean(D)``. For gradients use :func:`effective_diffusivity`.
    """
    arr = to_numpy(D)
    check_spatial(arr.shape, name="D")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise InputError(f"D must be a real array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)) or arr.min() < 0:
        raise InputError("D must be finite and >= 0 everywhere; clip it, e.g. D.clip(1e-4, 1)")
    opts = SolveOptions(check_axis(axis, arr.ndim), periodic, rtol, flux_rtol, method, maxiter, return_field)
    mean = float(arr.mean())
    return _solve(arr, opts, x0=x0, d_mean=mean, volume_fraction=mean, what="the diffusivity field")


def tortuosity(labels, *, phase: int = 1, axis: int = 0, **kwargs) -> float:
    """Tortuosity factor ``tau = eps D_bulk / D_eff`` of ``phase`` along ``axis``.

    Shortcut for ``solve_transport(labels, phase=phase, axis=axis, **kwargs).tortuosity``
    (``inf`` with a :class:`PercolationWarning` when the phase does not percolate).
    """
    return solve_transport(labels, phase=phase, axis=axis, **kwargs).tortuosity
