"""Matrix-free transport solve on the voxel grid: PCG with a geometric multigrid W-cycle.

For large binary volumes (one diffusivity on every conducting cell, no-flux lateral
faces), where the assembled CSR operator and its AMG hierarchy of :mod:`._linsolve`
would need hundreds of bytes per cell. Same discretisation and convergence criterion as
:mod:`._operator` / :mod:`._linsolve` (unit face conductance between two conducting
cells, ``2`` on the Dirichlet half-faces, relative residual ``<= rtol`` and layer-flux
spread ``<= flux_rtol``), so ``D_eff`` and ``tau`` agree with ``method="amg"`` to the
solver tolerance.

Layout: the transport axis is moved to axis 0; every level stores the face
conductances to the ``+1`` neighbour along each axis (``gz, gy, gx``, the last layer
0) and the Dirichlet conductance of each cell (``dt``); the diagonal is their sum,
computed on the fly. Levels 0-2 hold them as uint8 (sums of at most 4^l unit faces), so
level 0 costs 5 bytes per voxel; the Krylov vectors ``x, r, p, z`` are float32 for
``rtol >= FLOAT32_MIN_RTOL`` (sums and norms accumulate in float64 and the residual
criterion is confirmed on the true residual), 16 bytes per voxel, else float64. About
30 bytes per voxel in all with the coarse levels and the percolation labelling; no
per-cell index arrays.

Multigrid: plain (piecewise-constant) aggregation of 2x2x2 blocks with Galerkin coarse
operators (a coarse face conductance is the sum of the fine ones between two blocks, so
every level is again a 7-point stencil), W-cycle, one forward Gauss-Seidel sweep before
and one backward sweep after the coarse correction, which is over-corrected by
``_OVERCORRECTION``; the coarsest level (at most ``_COARSEST`` voxels) is factorised.
The cycle is a symmetric positive definite operator, as PCG requires.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numba import njit

__all__ = ["GridSolve", "solve_grid"]

_OVERCORRECTION = 1.8
# float32 Krylov vectors from this rtol (their rounding floor is near 1e-7 relative), float64 below
FLOAT32_MIN_RTOL = 1e-5
_COARSEST = 4096  # voxels of the coarsest (factorised) level
_RTOL_FLOOR = 1e-14


@dataclass(frozen=True)
class GridSolve:
    """Result of :func:`solve_grid`: the concentration on the (moved) grid and the
    solver statistics; ``fluxes``: total flux through the inlet face, every internal
    layer and the outlet face, ``(N_axis + 1,)``."""

    x: np.ndarray
    iterations: int
    converged: bool
    residual: float
    flux_imbalance: float
    fluxes: np.ndarray


# ---------------------------------------------------------------- stencil kernels
# The six-neighbour loop is written out in each kernel on purpose: a shared
# ``@njit(inline="always")`` helper returning (diagonal, neighbour sum) made the solve
# 2.3x slower (numba 0.68, measured on a Berea crop).


@njit(cache=True, nogil=True)
def _apply(act, use_act, gz, gy, gx, dt, x, out, b0):
    """``out = b - K x`` (``b0``: with the level-0 right-hand side ``2`` on the inlet
    layer's conducting cells; else ``b = 0``, i.e. ``out = -K x``). Returns ``||out||^2``."""
    nz, ny, nx = x.shape
    acc = 0.0
    for i in range(nz):
        for j in range(ny):
            for k in range(nx):
                if use_act and act[i, j, k] == 0:
                    out[i, j, k] = 0.0
                    continue
                d = np.float64(dt[i, j, k])
                s = 0.0
                if i > 0:
                    g = np.float64(gz[i - 1, j, k])
                    d += g
                    s += g * x[i - 1, j, k]
                if i < nz - 1:
                    g = np.float64(gz[i, j, k])
                    d += g
                    s += g * x[i + 1, j, k]
                if j > 0:
                    g = np.float64(gy[i, j - 1, k])
                    d += g
                    s += g * x[i, j - 1, k]
                if j < ny - 1:
                    g = np.float64(gy[i, j, k])
                    d += g
                    s += g * x[i, j + 1, k]
                if k > 0:
                    g = np.float64(gx[i, j, k - 1])
                    d += g
                    s += g * x[i, j, k - 1]
                if k < nx - 1:
                    g = np.float64(gx[i, j, k])
                    d += g
                    s += g * x[i, j, k + 1]
                v = s - d * x[i, j, k]
                if b0 and i == 0 and dt[i, j, k] > 0:
                    v += 2.0
                out[i, j, k] = v
                acc += v * v
    return acc


@njit(cache=True, nogil=True)
def _kp_dot_and_update(act, use_act, gz, gy, gx, dt, p, r, x, step, update):
    """``p . K p`` (``update=False``) or ``r -= step K p, x += step p`` returning ``||r||^2``."""
    nz, ny, nx = p.shape
    acc = 0.0
    for i in range(nz):
        for j in range(ny):
            for k in range(nx):
                if use_act and act[i, j, k] == 0:
                    continue
                d = np.float64(dt[i, j, k])
                s = 0.0
                if i > 0:
                    g = np.float64(gz[i - 1, j, k])
                    d += g
                    s += g * p[i - 1, j, k]
                if i < nz - 1:
                    g = np.float64(gz[i, j, k])
                    d += g
                    s += g * p[i + 1, j, k]
                if j > 0:
                    g = np.float64(gy[i, j - 1, k])
                    d += g
                    s += g * p[i, j - 1, k]
                if j < ny - 1:
                    g = np.float64(gy[i, j, k])
                    d += g
                    s += g * p[i, j + 1, k]
                if k > 0:
                    g = np.float64(gx[i, j, k - 1])
                    d += g
                    s += g * p[i, j, k - 1]
                if k < nx - 1:
                    g = np.float64(gx[i, j, k])
                    d += g
                    s += g * p[i, j, k + 1]
                q = d * p[i, j, k] - s
                if update:
                    v = r[i, j, k] - step * q
                    r[i, j, k] = v
                    x[i, j, k] += step * p[i, j, k]
                    acc += v * v
                else:
                    acc += p[i, j, k] * q
    return acc


@njit(cache=True, nogil=True)
def _gs_forward_from_zero(act, use_act, gz, gy, gx, dt, x, b, bc):
    """Forward lexicographic Gauss-Seidel sweep from ``x = 0`` (``x`` is overwritten,
    never read ahead), fused with the restriction of the residual it leaves:
    ``bc[block] += (b - K x)[cell]``. After the sweep the residual of a cell is the sum of
    ``g x_j`` over its neighbours ``j`` swept after it (they were 0 when it was updated),
    so each updated ``x_j`` adds ``g x_j`` to the blocks of its earlier neighbours."""
    nz, ny, nx = x.shape
    for i in range(nz):
        for j in range(ny):
            for k in range(nx):
                if use_act and act[i, j, k] == 0:
                    x[i, j, k] = 0.0
                    continue
                d = np.float64(dt[i, j, k])
                s = np.float64(b[i, j, k])
                g0 = 0.0
                g1 = 0.0
                g2 = 0.0
                if i > 0:
                    g0 = np.float64(gz[i - 1, j, k])
                    d += g0
                    s += g0 * x[i - 1, j, k]
                if j > 0:
                    g1 = np.float64(gy[i, j - 1, k])
                    d += g1
                    s += g1 * x[i, j - 1, k]
                if k > 0:
                    g2 = np.float64(gx[i, j, k - 1])
                    d += g2
                    s += g2 * x[i, j, k - 1]
                if i < nz - 1:
                    d += np.float64(gz[i, j, k])
                if j < ny - 1:
                    d += np.float64(gy[i, j, k])
                if k < nx - 1:
                    d += np.float64(gx[i, j, k])
                v = s / d if d > 0 else 0.0
                x[i, j, k] = v
                if v != 0.0:
                    if g0 != 0.0:
                        bc[(i - 1) // 2, j // 2, k // 2] += g0 * v
                    if g1 != 0.0:
                        bc[i // 2, (j - 1) // 2, k // 2] += g1 * v
                    if g2 != 0.0:
                        bc[i // 2, j // 2, (k - 1) // 2] += g2 * v


@njit(cache=True, nogil=True)
def _gs_backward(act, use_act, gz, gy, gx, dt, x, b):
    """Backward lexicographic Gauss-Seidel sweep; inactive cells -> 0. Returns ``b . x``
    of the result (each cell is final once swept)."""
    nz, ny, nx = x.shape
    acc = 0.0
    for i in range(nz - 1, -1, -1):
        for j in range(ny - 1, -1, -1):
            for k in range(nx - 1, -1, -1):
                if use_act and act[i, j, k] == 0:
                    x[i, j, k] = 0.0
                    continue
                d = np.float64(dt[i, j, k])
                s = np.float64(b[i, j, k])
                if i > 0:
                    g = np.float64(gz[i - 1, j, k])
                    d += g
                    s += g * x[i - 1, j, k]
                if i < nz - 1:
                    g = np.float64(gz[i, j, k])
                    d += g
                    s += g * x[i + 1, j, k]
                if j > 0:
                    g = np.float64(gy[i, j - 1, k])
                    d += g
                    s += g * x[i, j - 1, k]
                if j < ny - 1:
                    g = np.float64(gy[i, j, k])
                    d += g
                    s += g * x[i, j + 1, k]
                if k > 0:
                    g = np.float64(gx[i, j, k - 1])
                    d += g
                    s += g * x[i, j, k - 1]
                if k < nx - 1:
                    g = np.float64(gx[i, j, k])
                    d += g
                    s += g * x[i, j, k + 1]
                v = s / d if d > 0 else 0.0
                x[i, j, k] = v
                acc += np.float64(b[i, j, k]) * v
    return acc


@njit(cache=True, nogil=True)
def _prolong_add(x, xc, alpha):
    nz, ny, nx = x.shape
    for i in range(nz):
        for j in range(ny):
            for k in range(nx):
                x[i, j, k] += alpha * xc[i // 2, j // 2, k // 2]


@njit(cache=True, nogil=True)
def _coarsen(gz, gy, gx, dt, gzc, gyc, gxc, dtc):
    """Galerkin coarse stencil of 2x2x2 plain aggregation (sums of the fine conductances)."""
    nz, ny, nx = dt.shape
    for i in range(nz):
        for j in range(ny):
            for k in range(nx):
                a, b, c = i // 2, j // 2, k // 2
                dtc[a, b, c] += dt[i, j, k]
                if i % 2 == 1:
                    gzc[a, b, c] += gz[i, j, k]
                if j % 2 == 1:
                    gyc[a, b, c] += gy[i, j, k]
                if k % 2 == 1:
                    gxc[a, b, c] += gx[i, j, k]


@njit(cache=True, nogil=True)
def _axpy_dot(x, p, step, r, z, beta, mode):
    """mode 0: ``x += step p``; mode 1: ``r . z``; mode 2: ``p = z + beta p``; mode 3: ``p = z``."""
    nz, ny, nx = x.shape
    acc = 0.0
    for i in range(nz):
        for j in range(ny):
            for k in range(nx):
                if mode == 0:
                    x[i, j, k] += step * p[i, j, k]
                elif mode == 1:
                    acc += np.float64(r[i, j, k]) * z[i, j, k]
                elif mode == 2:
                    p[i, j, k] = z[i, j, k] + beta * p[i, j, k]
                else:
                    p[i, j, k] = z[i, j, k]
    return acc


@njit(cache=True, nogil=True)
def _layer_fluxes(gz, m, x):
    """Flux through the inlet face, each internal layer and the outlet face (float64)."""
    nz, ny, nx = x.shape
    out = np.zeros(nz + 1)
    for j in range(ny):
        for k in range(nx):
            if m[0, j, k]:
                out[0] += 2.0 * (1.0 - x[0, j, k])
            if m[nz - 1, j, k]:
                out[nz] += 2.0 * x[nz - 1, j, k]
    for i in range(nz - 1):
        acc = 0.0
        for j in range(ny):
            for k in range(nx):
                acc += np.float64(gz[i, j, k]) * (np.float64(x[i, j, k]) - x[i + 1, j, k])
        out[i + 1] = acc
    return out


# ---------------------------------------------------------------- hierarchy


_NO_MASK = np.zeros((1, 1, 1), np.uint8)


class _Level:
    """One level's stencil; ``act``: the conducting cells (level 0, where most cells of a
    minority phase are inactive and skipped), else every cell is visited."""

    def __init__(self, gz, gy, gx, dt, act=None):
        self.gz, self.gy, self.gx, self.dt = gz, gy, gx, dt
        self.act, self.use_act = (act, True) if act is not None else (_NO_MASK, False)
        self.shape = dt.shape

    def k(self):
        return self.act, self.use_act, self.gz, self.gy, self.gx, self.dt


# levels 1 and 2 hold their conductances as uint8: a level-l face sums at most 4^l unit
# faces and a Dirichlet entry at most 4 * 4^l, so they fit below 256 up to l = 2
_UINT8_LEVELS = 2


def _coarse_level(lv: _Level, index: int) -> _Level:
    """Level ``index`` (1, 2, ...) from the level above it."""
    shape = tuple((s + 1) // 2 for s in lv.shape)
    dtype = np.uint8 if index <= _UINT8_LEVELS else np.float32
    arrs = [np.zeros(shape, dtype) for _ in range(4)]
    _coarsen(lv.gz, lv.gy, lv.gx, lv.dt, *arrs)
    return _Level(*arrs)


def _factorise(lv: _Level):
    """Sparse direct solve of the coarsest level on its active cells."""
    gz, gy, gx, dt = (a.astype(np.float64) for a in (lv.gz, lv.gy, lv.gx, lv.dt))
    shape = dt.shape
    diag = dt.copy()
    rows, cols, vals = [], [], []
    idx = np.arange(dt.size).reshape(shape)
    for ax, g in enumerate((gz, gy, gx)):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(None, -1), slice(1, None)
        gg = g[tuple(lo)]
        diag[tuple(lo)] += gg
        diag[tuple(hi)] += gg
        keep = gg > 0
        a, b = idx[tuple(lo)][keep], idx[tuple(hi)][keep]
        rows += [a, b]
        cols += [b, a]
        vals += [-gg[keep], -gg[keep]]
    active = np.flatnonzero(diag.ravel() > 0)
    pos = np.full(dt.size, -1)
    pos[active] = np.arange(active.size)
    r = np.concatenate(rows + [active])
    c = np.concatenate(cols + [active])
    v = np.concatenate(vals + [diag.ravel()[active]])
    K = sp.csc_matrix((v, (pos[r], pos[c])), shape=(active.size, active.size))
    lu = spla.splu(K, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}) if active.size else None
    return active, lu


class _Multigrid:
    def __init__(self, level0: _Level):
        self.levels = [level0]
        while int(np.prod(self.levels[-1].shape)) > _COARSEST and max(self.levels[-1].shape) > 1:
            self.levels.append(_coarse_level(self.levels[-1], len(self.levels)))
        self.active, self.lu = _factorise(self.levels[-1])

    def _solve_coarsest(self, b: np.ndarray, x: np.ndarray) -> None:
        x.fill(0.0)
        if self.lu is not None:
            flat = x.reshape(-1)
            flat[self.active] = self.lu.solve(b.reshape(-1)[self.active].astype(np.float64))

    def cycle(self, lvl: int, b: np.ndarray, x: np.ndarray) -> float:
        """W-cycle at level ``lvl``: ``x ~ K^-1 b`` (``x`` is overwritten); returns ``b . x``."""
        last = len(self.levels) - 1
        if lvl == last:
            self._solve_coarsest(b, x)
            return float(np.dot(b.ravel().astype(np.float64), x.ravel()))
        L, C = self.levels[lvl], self.levels[lvl + 1]
        bc = np.zeros(C.shape, np.float32)
        _gs_forward_from_zero(*L.k(), x, b, bc)
        xc = np.empty(C.shape, np.float32)
        self.cycle(lvl + 1, bc, xc)
        if lvl + 1 < last:  # W-cycle: a second visit unless it is the direct solve
            rc = np.empty(C.shape, np.float32)
            _apply(*C.k(), xc, rc, False)  # rc = -K xc
            rc += bc
            ec = np.empty(C.shape, np.float32)
            self.cycle(lvl + 1, rc, ec)
            xc += ec
        _prolong_add(x, xc, _OVERCORRECTION)
        return _gs_backward(*L.k(), x, b)


# ---------------------------------------------------------------- PCG


def _imbalance(j: np.ndarray) -> float:
    mean = float(j.mean())
    return float((j.max() - j.min()) / abs(mean)) if mean != 0 else float("inf")


def solve_grid(mask: np.ndarray, axis: int, *, rtol: float, flux_rtol: float, maxiter: int = 1000) -> GridSolve:
    """Steady diffusion through the conducting cells ``mask`` (bool, 3D, every cell
    face-connected to both faces normal to ``axis``; see ``percolating_mask``), ``c = 1``
    on the inlet face (index 0 along ``axis``) and 0 on the outlet, no-flux elsewhere.

    Returns the concentration (float32 for ``rtol >= FLOAT32_MIN_RTOL``, else float64;
    on the grid with ``axis`` moved to 0; 0 on inactive cells) and the layer fluxes;
    see :class:`GridSolve`.
    """
    m = np.ascontiguousarray(np.moveaxis(mask, axis, 0), dtype=np.uint8)
    nz, ny, nx = m.shape
    gz = np.zeros_like(m)
    gy = np.zeros_like(m)
    gx = np.zeros_like(m)
    np.multiply(m[:-1], m[1:], out=gz[:-1])
    np.multiply(m[:, :-1], m[:, 1:], out=gy[:, :-1])
    np.multiply(m[:, :, :-1], m[:, :, 1:], out=gx[:, :, :-1])
    dt = np.zeros_like(m)
    dt[0] += 2 * m[0]
    dt[-1] += 2 * m[-1]  # separate statement: with N_axis = 1 a cell is on both faces
    mg = _Multigrid(_Level(gz, gy, gx, dt, m))
    lv = mg.levels[0]

    n_in = int(m[0].sum())
    bnorm = 2.0 * math.sqrt(n_in)
    tol, floor = rtol * bnorm, _RTOL_FLOOR * bnorm
    vec = np.float32 if rtol >= FLOAT32_MIN_RTOL else np.float64
    prof = (1.0 - (np.arange(nz, dtype=vec) + 0.5) / nz)[:, None, None]
    x = m * prof  # linear profile on the conducting cells
    del prof
    r = np.empty_like(x)
    _apply(*lv.k(), x, r, True)
    z = np.empty_like(x)
    p = np.empty_like(x)

    def fluxes() -> np.ndarray:
        return _layer_fluxes(gz, m, x)

    def finish(it: int, converged: bool, res: float, j: np.ndarray) -> GridSolve:
        return GridSolve(x, it, converged, res, _imbalance(j), j)

    rz = mg.cycle(0, r, z)
    _axpy_dot(x, p, 0.0, r, z, 0.0, 3)  # p = z
    it = 0
    while it < maxiter:
        pq = _kp_dot_and_update(*lv.k(), p, r, x, 0.0, False)
        if not pq > 0.0:
            break
        step = rz / pq
        rnorm = math.sqrt(_kp_dot_and_update(*lv.k(), p, r, x, step, True))
        it += 1
        if rnorm <= tol:
            j = fluxes()
            if _imbalance(j) <= flux_rtol:
                rnorm = math.sqrt(_apply(*lv.k(), x, r, True))  # confirm with the true residual
                if rnorm <= tol:
                    return finish(it, True, rnorm / bnorm, j)
                rz = mg.cycle(0, r, z)  # the recurrence drifted: restart from the true residual
                _axpy_dot(x, p, 0.0, r, z, 0.0, 3)
                continue
        if rnorm <= floor:
            break
        rz_new = mg.cycle(0, r, z)
        _axpy_dot(x, p, 0.0, r, z, rz_new / rz, 2)
        rz = rz_new
    res = math.sqrt(_apply(*lv.k(), x, r, True)) / bnorm if bnorm > 0 else 0.0
    j = fluxes()
    return finish(it, bool(res <= rtol and _imbalance(j) <= flux_rtol), res, j)
