"""Cell-centred finite-volume operator for steady diffusion on a voxel grid.

Discretisation (the family TauFactor's ``Solver`` uses, so results are comparable):

* unknowns: one concentration per active cell (cell centre), unit voxel size;
* face conductance between face neighbours ``i, j``: the harmonic mean
  ``g_ij = 2 D_i D_j / (D_i + D_j)`` (face area 1 / centre distance 1); a face with an
  inactive (``D = 0``) cell carries no flux;
* Dirichlet faces normal to ``axis``: ``c = 1`` on the inlet face (index 0 along
  ``axis``), ``c = 0`` on the outlet face (last index); the cell centre is half a cell
  from the face, so the boundary conductance is ``2 D_i``;
* the other faces are no-flux, or periodic (wrap-around faces with the same harmonic
  conductance) when ``periodic=True``.

The assembled system ``K c = b`` is symmetric positive definite on every set of active
cells that touches a Dirichlet face. The same assembly serves binary labels (``D`` is 0
or the phase diffusivity, restricted to the percolating cluster) and soft fields
(``D > 0`` everywhere).

Effective diffusivity (relative to the reference diffusivity the field is given in):
``D_eff = J L / (A dc)`` with the total flux ``J`` through a layer normal to ``axis``,
the length ``L = N_axis`` (voxels), the cross-section ``A`` (voxels) and ``dc = 1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

__all__ = [
    "Assembly",
    "Graph",
    "assemble",
    "assemble_on",
    "graph",
    "percolating_mask",
    "dissipation",
    "dissipation_gradient",
]

C_IN = 1.0  # concentration on the inlet face (index 0 along the transport axis)
C_OUT = 0.0  # concentration on the outlet face (last index)


def _take(a: np.ndarray, ax: int, sl: slice | int) -> np.ndarray:
    idx: list[slice | int] = [slice(None)] * a.ndim
    idx[ax] = sl
    return a[tuple(idx)]


def _face_pairs(ndim: int, ax: int, wrap: bool):
    """(slice_a, slice_b) index tuples of face neighbours along ``ax`` (+ wrap face)."""
    a: list[slice] = [slice(None)] * ndim
    b: list[slice] = [slice(None)] * ndim
    a[ax], b[ax] = slice(None, -1), slice(1, None)
    pairs = [(tuple(a), tuple(b))]
    if wrap:
        a2: list[slice] = [slice(None)] * ndim
        b2: list[slice] = [slice(None)] * ndim
        a2[ax], b2[ax] = slice(-1, None), slice(None, 1)
        pairs.append((tuple(a2), tuple(b2)))
    return pairs


def _wraps(shape: tuple[int, ...], ax: int, axis: int, periodic: bool) -> bool:
    return periodic and ax != axis and shape[ax] > 1


def harmonic(da: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Face conductance ``2 a b / (a + b)``; 0 where either side is 0."""
    s = da + db
    out = np.zeros_like(s)
    np.divide(2.0 * da * db, s, out=out, where=s > 0)
    return out


@dataclass(frozen=True)
class Assembly:
    """The linear system of one transport problem on the active cells."""

    matrix: sp.csr_matrix  # K, SPD, n x n
    rhs: np.ndarray  # b, (n,)
    index: np.ndarray  # flat grid position of each unknown, (n,)
    shape: tuple[int, ...]
    axis: int
    # faces normal to the transport axis: unknowns (i, j = next along axis), conductance
    # and layer number 0..N_axis-2; Dirichlet cells with their boundary conductance
    axis_faces: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    inlet: tuple[np.ndarray, np.ndarray]
    outlet: tuple[np.ndarray, np.ndarray]
    uniform: bool = False  # every face conductance equal (all active cells have one D)

    def to_grid(self, x: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Scatter the solution onto the full grid (``fill`` outside the active cells)."""
        grid = np.full(int(np.prod(self.shape)), fill, dtype=np.float64)
        grid[self.index] = x
        return grid.reshape(self.shape)

    def layer_fluxes(self, x: np.ndarray) -> np.ndarray:
        """Total flux through every layer of faces normal to the axis: (N_axis + 1,).

        Entry 0 is the inlet face, entry N_axis the outlet face, the others the internal
        layers. At the exact solution all entries are equal (conservation).
        """
        i, j, g, layer = self.axis_faces
        internal = np.bincount(layer, g * (x[i] - x[j]), self.shape[self.axis] - 1)
        cin, gin = self.inlet
        cout, gout = self.outlet
        j_in = float((gin * (C_IN - x[cin])).sum())
        j_out = float((gout * (x[cout] - C_OUT)).sum())
        return np.concatenate([[j_in], internal, [j_out]])

    def flux_imbalance(self, x: np.ndarray) -> float:
        """``(max - min) / mean`` of :meth:`layer_fluxes` (TauFactor's convergence measure)."""
        j = self.layer_fluxes(x)
        mean = float(j.mean())
        return float((j.max() - j.min()) / abs(mean)) if mean != 0 else float("inf")

    def effective_diffusivity(self, x: np.ndarray) -> float:
        """``D_eff = J L / (A dc)`` from the mean layer flux (``dc = 1``)."""
        length = self.shape[self.axis]
        area = int(np.prod(self.shape)) // length
        return float(self.layer_fluxes(x).mean()) * length / area


def _neighbours(idx: np.ndarray, ax: int, step: int, wrap: bool) -> np.ndarray:
    """Unknown number of the face neighbour at ``step`` (+1 / -1) along ``ax`` of every
    grid cell (``idx`` on the grid, -1 = inactive); -1 where there is none. ``wrap``
    joins the first and last layers (periodic lateral faces)."""
    out = np.full(idx.shape, -1, dtype=idx.dtype)
    if step > 0:
        _take(out, ax, slice(None, -1))[...] = _take(idx, ax, slice(1, None))
        if wrap:
            _take(out, ax, -1)[...] = _take(idx, ax, 0)
    else:
        _take(out, ax, slice(1, None))[...] = _take(idx, ax, slice(None, -1))
        if wrap:
            _take(out, ax, 0)[...] = _take(idx, ax, -1)
    return out


@dataclass(frozen=True)
class Graph:
    """The axis-independent part of a transport problem: the active cells and the graph
    Laplacian ``L`` of their face conductances (``-g`` off the diagonal, the sum of the
    cell's ``g`` on it: zero row sums). Every transport axis with the same active cells
    and wrap-around faces has ``K = L + diag(Dirichlet conductances)``."""

    shape: tuple[int, ...]
    wraps: tuple[bool, ...]  # per grid axis: periodic wrap-around faces
    pos: np.ndarray  # flat grid position of each unknown, (n,)
    dp: np.ndarray  # D of each unknown, (n,)
    laplacian: sp.csr_matrix  # L, canonical CSR
    diag_pos: np.ndarray  # index into laplacian.data of each row's diagonal entry
    faces: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]  # unwrapped axis -> (i, j = +1 neighbour, g)
    uniform: bool  # every face conductance equal (all active cells have one D)


def wrap_flags(shape: tuple[int, ...], axis: int, periodic: bool) -> tuple[bool, ...]:
    return tuple(_wraps(shape, ax, axis, periodic) for ax in range(len(shape)))


def graph(D: np.ndarray, wraps: tuple[bool, ...]) -> Graph:
    """The :class:`Graph` of the cells with ``D > 0`` (``D`` float64 on the grid).

    ``L`` is built directly in CSR form: one row of ``2 ndim + 1`` slots per unknown
    (neighbours at -1 along axis 0, 1, ..., the cell itself, neighbours at +1 along
    ..., 1, 0), empty slots dropped. Without wrap-around faces the slots are in
    ascending column order, so the matrix is canonical as built (sorted, no
    duplicates); with wrap-around faces it is sorted and duplicates (a wrapped axis of
    length 2, where the +1 and the wrap neighbour coincide) are summed. Work and memory
    scale with the grid size (a few whole-grid integer arrays) and the active cells.
    """
    shape = tuple(D.shape)
    ndim = len(shape)
    flat = np.ascontiguousarray(D, dtype=np.float64).ravel()
    pos = np.flatnonzero(flat > 0)
    n = pos.size
    itype = np.int32 if D.size < 2**31 - 1 else np.int64
    idx = np.full(D.size, -1, dtype=itype)
    idx[pos] = np.arange(n, dtype=itype)
    grid = idx.reshape(shape)
    dp = flat[pos]

    # one conductance for all faces when every active cell has the same D (binary labels)
    uniform = bool(n > 0 and dp.min() == dp.max())
    g_uniform = float(harmonic(dp[:1], dp[:1])[0]) if uniform else 0.0
    slots = [(ax, -1) for ax in range(ndim)] + [None] + [(ax, 1) for ax in reversed(range(ndim))]
    width = len(slots)
    cols = np.empty((n, width), dtype=itype)
    vals = np.empty((n, width), dtype=np.float64)
    keep = np.empty((n, width), dtype=bool)
    count = np.ones(n, dtype=np.int64)  # entries per row (the diagonal included)
    before = np.zeros(n, dtype=np.int64)  # entries left of the diagonal (no wraps: sorted)
    diag = np.zeros(n, dtype=np.float64)
    faces: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    centre = ndim
    for s, slot in enumerate(slots):
        if slot is None:
            continue
        ax, step = slot
        j = _neighbours(grid, ax, step, wraps[ax]).ravel()[pos]
        ok = j >= 0
        if uniform:
            g = ok * g_uniform
        else:
            g = harmonic(dp, np.where(ok, dp[j], 0.0))  # 0 on missing neighbours
        cols[:, s] = j
        vals[:, s] = -g
        keep[:, s] = ok
        count += ok
        if step < 0:
            before += ok
        diag += g
        if step > 0 and not wraps[ax]:  # faces normal to ax, candidates for a transport axis
            i = np.flatnonzero(ok).astype(itype)
            faces[ax] = (i, j[i], g[i])
    cols[:, centre] = np.arange(n, dtype=itype)
    vals[:, centre] = diag
    keep[:, centre] = True
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(count, out=indptr[1:])
    if indptr[-1] < 2**31 - 1:
        indptr = indptr.astype(np.int32)
    L = sp.csr_matrix((vals[keep], cols[keep], indptr), shape=(n, n))
    if any(wraps):
        L.sum_duplicates()  # sorts the columns; sums the coinciding neighbours of a 2-wide axis
        rows = np.repeat(np.arange(n, dtype=L.indices.dtype), np.diff(L.indptr))
        diag_pos = np.flatnonzero(L.indices == rows)
    else:
        diag_pos = L.indptr[:-1] + before
    return Graph(shape, tuple(wraps), pos, dp, L, diag_pos, faces, uniform)


def assemble_on(G: Graph, axis: int) -> Assembly:
    """``K = L + diag(Dirichlet conductances)`` and ``b`` of transport along ``axis``
    (which must not be wrapped) on the cells of ``G``."""
    if G.wraps[axis]:
        raise ValueError(f"axis {axis} has wrap-around faces; it cannot be the transport axis")
    shape = G.shape
    n_ax = shape[axis]
    stride = int(np.prod(shape[axis + 1 :]))
    layer_of = (G.pos // stride) % n_ax  # coordinate along the transport axis
    # Dirichlet faces, half a cell from the first/last centres: conductance 2 D
    cin = np.flatnonzero(layer_of == 0)
    cout = np.flatnonzero(layer_of == n_ax - 1)
    gin, gout = 2.0 * G.dp[cin], 2.0 * G.dp[cout]
    L = G.laplacian
    data = L.data.copy()
    data[G.diag_pos[cin]] += gin
    data[G.diag_pos[cout]] += gout  # separate statement: with N_axis = 1 a cell is on both faces
    K = sp.csr_matrix((data, L.indices, L.indptr), shape=L.shape)  # L's (read-only) index arrays
    rhs = np.zeros(L.shape[0], dtype=np.float64)
    rhs[cin] += gin * C_IN
    if C_OUT != 0.0:
        rhs[cout] += gout * C_OUT
    i, j, g = G.faces[axis]
    axis_faces = (i, j, g, layer_of[i])
    return Assembly(K, rhs, G.pos, shape, axis, axis_faces, (cin, gin), (cout, gout), G.uniform)


def assemble(D: np.ndarray, axis: int, periodic: bool) -> Assembly:
    """Assemble ``K c = b`` for the cells with ``D > 0``.

    ``D`` is float64 on the grid with 0 on inactive cells; the caller removes cells that
    do not percolate (see :func:`percolating_mask`) so that ``K`` is non-singular. See
    :func:`graph` (the axis-independent part) and :func:`assemble_on`.
    """
    return assemble_on(graph(D, wrap_flags(tuple(D.shape), axis, periodic)), axis)


def percolating_mask(mask: np.ndarray, axis: int, periodic: bool) -> np.ndarray:
    """Cells of ``mask`` whose face-connected cluster touches both Dirichlet faces.

    Face connectivity (6 neighbours in 3D, 4 in 2D); with ``periodic`` the clusters are
    also joined across the wrap-around faces of the lateral axes. Clusters that touch
    one face only (dead ends) or none (isolated) carry no steady flux and are dropped,
    which keeps the operator non-singular without changing ``D_eff``.
    """
    structure = ndi.generate_binary_structure(mask.ndim, 1)
    lab, n = ndi.label(mask, structure)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    comp = np.arange(n + 1)  # cluster id -> merged component id (0 = background)
    if periodic:
        a_list, b_list = [], []
        for ax in range(mask.ndim):
            if _wraps(mask.shape, ax, axis, periodic):
                la, lb = _take(lab, ax, -1), _take(lab, ax, 0)
                m = (la > 0) & (lb > 0)
                a_list.append(la[m])
                b_list.append(lb[m])
        a = np.concatenate(a_list) if a_list else np.zeros(0, dtype=lab.dtype)
        if a.size:
            b = np.concatenate(b_list)
            graph = sp.coo_matrix((np.ones(a.size), (a, b)), shape=(n + 1, n + 1))
            comp = connected_components(graph, directed=False)[1]
    inlet = np.unique(comp[_take(lab, axis, 0)[_take(mask, axis, 0)]])
    outlet = np.unique(comp[_take(lab, axis, -1)[_take(mask, axis, -1)]])
    lut = np.isin(comp, np.intersect1d(inlet, outlet))
    lut[0] = False
    return lut[lab]


def dissipation(D: np.ndarray, c: np.ndarray, axis: int, periodic: bool) -> float:
    """Discrete dissipation ``E(c) = sum_faces g (dc)^2`` incl. the Dirichlet half-faces.

    ``E`` is minimised by the solution of ``K c = b`` and its minimum equals the flux
    ``J`` (Thomson's principle, ``dc = 1``), so ``D_eff = E* L / A``; evaluated at an
    approximate solution the error is second order in the error of ``c``.
    """
    e = 0.0
    for ax in range(D.ndim):
        for sa, sb in _face_pairs(D.ndim, ax, _wraps(D.shape, ax, axis, periodic)):
            e += float((harmonic(D[sa], D[sb]) * (c[sa] - c[sb]) ** 2).sum())
    e += float((2.0 * _take(D, axis, 0) * (C_IN - _take(c, axis, 0)) ** 2).sum())
    e += float((2.0 * _take(D, axis, -1) * (_take(c, axis, -1) - C_OUT) ** 2).sum())
    return e


def dissipation_gradient(D: np.ndarray, c: np.ndarray, axis: int, periodic: bool) -> np.ndarray:
    """Partial derivative ``dE/dD`` at fixed ``c`` (all ``D > 0``), shape of ``D``.

    With ``g = 2 a b / (a + b)``: ``dg/da = 2 b^2 / (a + b)^2``; a Dirichlet half-face has
    ``g = 2 D`` so ``dg/dD = 2``. Because ``c`` minimises ``E``, ``dE*/dD`` equals this
    partial derivative (the adjoint term vanishes; see ``_autograd``).
    """
    grad = np.zeros_like(D)
    for ax in range(D.ndim):
        for sa, sb in _face_pairs(D.ndim, ax, _wraps(D.shape, ax, axis, periodic)):
            da, db = D[sa], D[sb]
            w = 2.0 * (c[sa] - c[sb]) ** 2 / (da + db) ** 2
            grad[sa] += w * db * db
            grad[sb] += w * da * da
    _take(grad, axis, 0)[...] += 2.0 * (C_IN - _take(c, axis, 0)) ** 2
    _take(grad, axis, -1)[...] += 2.0 * (_take(c, axis, -1) - C_OUT) ** 2
    return grad
