"""Label polish: move interface voxels of finished labels toward an S2 target.

Guidance steers a latent volume; what the user gets are the hard labels of its finish,
and their slice S2 ends a few per cent off the target per volume (decode, refinement and
argmax lie between the latent and the labels, and a 64³ cube's long-range S2 fluctuates).
The polish closes that gap on the labels themselves, with the report's S2 definition:

    L = Σ_{p, a} mean_k (S2_{p,a}(k) − T_p(k))² / T_p(0)²  +  Σ_q ((VF_q − v_q) / 10⁻²)²

over the targeted phases p, the three slicing axes a (slices normal to z, y, x; radial,
non-periodic S2, lags k = 0..K−1, :func:`microlad.descriptors.torch.s2_slices`) and the
phases q whose volume fraction is held at v_q (each step's flips are also balanced so that
a held phase's voxel count moves by at most 2); optionally (``perimeter``) plus
0.1 · Σ_{q, a} (L_A,q,a / L_q − 1)² toward per-phase slice perimeters L_q (the S2 loss alone
leaves the marching-squares perimeter free: on SOFC reconstructions it rose by 2–4 %).

Guidance uses it on S2-guided volumes (S2 term only); ``reconstruct(polish=N)`` (opt-in) on
unguided volumes, toward the training S2 and slice perimeter stored in the model.

Each iteration takes the gradient of L with respect to the one-hot labels (one autograd
pass); flipping voxel v from phase a to phase b changes L by about g_b(v) − g_a(v)
(with the lag-0 term, S2(0) = VF, taken exactly: the gradient of I(v)² mispredicts a flip).
Only **interface moves** are allowed, on one colour of a 3D checkerboard per iteration
(so no two face neighbours flip together):

* b is the phase of at least 2 of v's 6 face neighbours (a voxel outside the volume
  counts as v's own phase), so a flip never makes a speck or a one-contact spike;
* no face neighbour of v is left without a neighbour of its own phase;
* with ``connected`` (``reconstruct``'s polish): v's old phase stays locally in one piece
  (:func:`local_splits` <= 1: v's face neighbours of that phase are joined inside its
  18-neighbourhood), and no two flips of one step that leave the same phase are edge
  neighbours. Then no flip, alone or with the others of its step, splits a 6-connected
  piece of any phase, so a pore channel is never cut (narrowed, it can be).

The candidates are ordered by predicted change; the loss is evaluated exactly for the best
1/2, 1 and 2 times the previous step's count, and the best of those is kept if it lowers L.
After an iteration without a kept step the count is quartered. The polish stops after
``max_iter`` iterations, after 5 iterations in a row without a kept step, when the last 10 iterations lowered L by less than 1 %, or when ``max_flip_fraction``
of the voxels differ from the input. A caller's condition (``keep``, checked every 5
iterations and at the end; guidance passes "no spanning lost") sends it back to the last
state that met it, with the voxels flipped since then frozen (one of them broke the
condition), at most 5 times. Deterministic: stable sorts, no random numbers.

Why these rules (measured on S2-guided 64³ SOFC and carbonate volumes, BENCHMARKS.md,
guidance status): allowing only flips that add no interface (b at least as common as a
around v) stalled on the too-smooth carbonate volumes, which need surface added; with the
lag-0 term from the gradient alone, the line search stalled at 5–10× the final loss.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from microlad.defaults import GUIDANCE_POLISH
from microlad.descriptors import torch as td

__all__ = ["PolishStats", "polish_s2"]

VF_SCALE = 1e-2
"""Volume-fraction scale of the polish: a held phase costs 1 per 10⁻² off its fraction. Held
phases are mainly kept by balanced steps (:data:`BALANCE`); this term pulls back any drift."""

MAX_FAILS = 5
"""Iterations in a row without a kept step (each quarters the step size) before the polish stops."""

MAX_REVERTS = 5
"""Largest number of times a polish goes back to the last state that met its ``keep`` condition."""

PERIMETER_WEIGHT = 0.1
"""Weight of the slice-perimeter term (relative error squared, per phase and axis) beside the
S2 loss. Measured on 3 SOFC and 3 carbonate reconstructions (64³): with 1 the perimeter is met
and small-r S2 is off by 2–4 %; with 0.1 both are within 1 % (BENCHMARKS.md, fine-scale
findings)."""

MIN_CONTACTS = 2
"""A voxel may take phase b only if at least this many of its face neighbours are b."""


@dataclass(frozen=True)
class PolishStats:
    """What a polish did: ``loss_before`` / ``loss_after`` (L of the module notes),
    ``flipped`` (voxels that differ from the input), ``iterations``, ``seconds``, ``reverted``
    (how often the ``keep`` condition failed and the polish went back to the last state
    that met it)."""

    loss_before: float
    loss_after: float
    flipped: int
    iterations: int
    seconds: float
    reverted: int = 0

    def as_dict(self) -> dict:
        return {"loss_before": self.loss_before, "loss_after": self.loss_after, "flipped": self.flipped,
                "iterations": self.iterations, "seconds": self.seconds, "reverted": self.reverted}


def polish_loss(onehot: torch.Tensor, curves: torch.Tensor, phases: tuple[int, ...],
                vf_targets: dict[int, float], *, s2_out: list | None = None,
                perimeter_targets: dict[int, float] | None = None) -> torch.Tensor:
    """L of the module notes for ``onehot`` (P, Z, Y, X) and target ``curves`` (P_t, K);
    the (P_t × 3) slice-S2 curves are appended to ``s2_out`` when given.
    ``perimeter_targets`` {phase: L_A in the units of
    :func:`microlad.descriptors.torch.specific_surface_area` (2D)} adds
    ``PERIMETER_WEIGHT · Σ_a (L_A,a / target − 1)²`` per phase."""
    k = curves.shape[-1]
    total = onehot.new_zeros(())
    for row, p in zip(curves, phases):
        for a in range(3):
            s2 = td.s2_slices(onehot[p], axis=a, cutoff=k - 1, periodic=False)
            if s2_out is not None:
                s2_out.append(s2)
            total = total + ((s2 - row) / row[0]).square().mean()
    for q, v in vf_targets.items():
        total = total + ((onehot[q].mean() - v) / VF_SCALE).square()
    for q, t in (perimeter_targets or {}).items():
        for a in range(3):
            la = td.specific_surface_area(onehot[q].movedim(a, 0), spatial_dims=2).mean()
            total = total + PERIMETER_WEIGHT * (la / t - 1).square()
    return total


_SHIFTS = [(d, s) for d in range(3) for s in (1, -1)]
_FACES = [tuple(s if i == d else 0 for i in range(3)) for d, s in _SHIFTS]
"""The six face-neighbour offsets (dz, dy, dx), in ``_SHIFTS`` order."""
_PAIRS = [(i, j) for i in range(6) for j in range(i + 1, 6) if _SHIFTS[i][0] != _SHIFTS[j][0]]
"""The 12 pairs of orthogonal face directions; the edge voxel at the sum of their offsets joins them."""
_EDGES = [tuple(p + q for p, q in zip(_FACES[i], _FACES[j])) for i, j in _PAIRS]


def _shifted(x: torch.Tensor, offset: tuple[int, int, int], fill: int | None = -1) -> torch.Tensor:
    """``x`` (Z, Y, X) seen from each voxel at ``offset`` (|components| <= 1); outside the
    volume: ``fill``, or the nearest voxel with ``fill=None``."""
    if fill is None:
        pad = F.pad(x[None, None].float(), (1, 1, 1, 1, 1, 1), mode="replicate")[0, 0].to(x.dtype)
    else:
        pad = F.pad(x, (1, 1, 1, 1, 1, 1), value=fill)
    z, y, w = x.shape
    dz, dy, dx = offset
    return pad[1 + dz: 1 + dz + z, 1 + dy: 1 + dy + y, 1 + dx: 1 + dx + w]


def _neighbours(x: torch.Tensor) -> list[torch.Tensor]:
    """The six face-neighbour views of (Z, Y, X) ``x`` (edge voxels see themselves)."""
    return [_shifted(x, off, fill=None) for off in _FACES]


def local_splits(labels: torch.Tensor) -> torch.Tensor:
    """(Z, Y, X) int: the number of separate pieces the own-phase face neighbours of each voxel
    form in its 18-neighbourhood, the voxel itself left out (6-connectivity: two face
    neighbours are joined by the edge voxel between them when it has the same phase; edge
    voxels touch only their two faces, so this is the whole 18-neighbourhood graph; outside
    the volume is no phase).
    More than 1: taking the voxel out of its phase can cut that phase locally (a 6-connected
    channel or grain loses a link). 0: the voxel touches no face neighbour of its phase."""
    face = [labels == _shifted(labels, off) for off in _FACES]
    edges = [(i, j, face[i] & face[j] & (labels == _shifted(labels, off))) for (i, j), off in zip(_PAIRS, _EDGES)]
    big = torch.tensor(len(_SHIFTS), dtype=torch.int8)
    root = [torch.where(f, torch.tensor(i, dtype=torch.int8), big) for i, f in enumerate(face)]
    for _ in range(len(_SHIFTS) - 1):  # min-label propagation: a path has at most 5 links
        for i, j, link in edges:
            low = torch.minimum(root[i], root[j])
            root[i] = torch.where(link, low, root[i])
            root[j] = torch.where(link, low, root[j])
    return sum((root[i] == i).to(torch.int8) for i in range(len(_SHIFTS)))


def _allowed(labels: torch.Tensor, n_phases: int, colour: torch.Tensor, connected: bool = False) -> torch.Tensor:
    """(P, Z, Y, X) bool: may voxel v take phase b (the rules of the module notes; with
    ``connected`` also: v's own phase stays locally in one piece, :func:`local_splits` <= 1)."""
    nbrs = _neighbours(labels)
    counts = torch.stack([sum((nb == b).to(torch.int8) for nb in nbrs) for b in range(n_phases)])
    own = counts.gather(0, labels[None].long())[0]
    lonely = own == 1  # exactly one face neighbour of its own phase
    strands = torch.zeros_like(lonely)
    for lone_nb, lab_nb in zip(_neighbours(lonely.to(torch.uint8)), nbrs):
        strands |= (lone_nb > 0) & (lab_nb == labels)
    ok = (counts >= MIN_CONTACTS) & colour[None] & ~strands[None]
    if connected:
        ok &= (local_splits(labels) <= 1)[None]
    return ok & (torch.arange(n_phases)[:, None, None, None] != labels[None])


def _apart(cand: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``cand`` (ordered flat indices) without the voxels that have a better-ranked candidate of
    the same phase among their 12 edge neighbours. The checkerboard already keeps face
    neighbours apart; with this, no voxel of one flip's 18-neighbourhood changes in the same
    step unless it joins that phase, so each flip's :func:`local_splits` test still holds when
    they are made together (corner neighbours lie outside the 18-neighbourhood)."""
    if cand.numel() < 2:
        return cand
    rank = torch.full((labels.numel(),), cand.numel(), dtype=torch.long)
    rank[cand] = torch.arange(cand.numel())
    rank = rank.view_as(labels)
    old = labels.flatten()[cand]
    clash = torch.zeros(cand.numel(), dtype=torch.bool)
    for off in _EDGES:
        nb_rank = _shifted(rank, off, fill=cand.numel()).flatten()[cand]
        nb_old = _shifted(labels, off).flatten()[cand]
        clash |= (nb_rank < torch.arange(cand.numel())) & (nb_old == old)
    return cand[~clash]


BALANCE = 2
"""With held fractions, a step's net voxel change of each held phase stays within ±this."""


def _balanced(cand: torch.Tensor, old: torch.Tensor, new: torch.Tensor, held: tuple[int, ...], limit: int) -> torch.Tensor:
    """The longest-prefix-first selection of ``cand`` (ordered, flat indices with their old and
    new phases) in which every prefix keeps each held phase's net change within ±BALANCE;
    candidates that would break it are skipped (at most ``limit`` are returned)."""
    net = dict.fromkeys(held, 0)
    keep = []
    for i, (a, b) in enumerate(zip(old.tolist(), new.tolist())):
        da, db = net.get(a), net.get(b)
        if (da is not None and da - 1 < -BALANCE) or (db is not None and db + 1 > BALANCE):
            continue
        if da is not None:
            net[a] = da - 1
        if db is not None:
            net[b] = db + 1
        keep.append(i)
        if len(keep) >= limit:
            break
    return cand[torch.as_tensor(keep, dtype=torch.long)] if keep else cand[:0]


def _perimeter_targets(labels: np.ndarray, lab: torch.Tensor, n_phases: int, perimeter: dict[int, float]) -> dict[int, float]:
    """Targets in the differentiable estimator's units: the report's target × (torch / report
    estimator on the input labels), per phase."""
    from microlad.descriptors import slice_perimeter_density

    x = F.one_hot(lab, n_phases).permute(3, 0, 1, 2).to(torch.float32)
    out = {}
    for q, target in perimeter.items():
        mesh = float(np.mean([slice_perimeter_density(labels, phase=int(q), axis=a) for a in range(3)]))
        smooth = float(np.mean([float(td.specific_surface_area(x[int(q)].movedim(a, 0), spatial_dims=2).mean()) for a in range(3)]))
        if mesh > 0 and smooth > 0 and target > 0:
            out[int(q)] = float(target) * smooth / mesh
    return out


def _with_grad(fn):
    """Run ``fn`` with autograd on, also under a caller's ``no_grad`` or ``inference_mode``."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.inference_mode(False), torch.enable_grad():
            return fn(*args, **kwargs)
    return wrapper


@_with_grad
def polish_s2(
    labels: np.ndarray,
    curves: np.ndarray,
    phases: tuple[int, ...],
    *,
    n_phases: int,
    vf_targets: dict[int, float] | None = None,
    perimeter: dict[int, float] | None = None,
    max_iter: int = GUIDANCE_POLISH,
    max_flip_fraction: float = 0.1,
    keep: Callable[[np.ndarray], bool] | None = None,
    keep_every: int = 5,
    connected: bool = False,
    progress: bool = False,
) -> tuple[np.ndarray, PolishStats]:
    """Polish ``labels`` (Z, Y, X) toward the slice-S2 ``curves`` (P_t, K) of ``phases``.

    ``vf_targets`` {phase: fraction} are held (the VF term of the loss). ``perimeter``
    {phase: slice boundary length per area, 1/voxel, as
    :func:`microlad.descriptors.slice_perimeter_density` measures it} adds a perimeter term
    (:data:`PERIMETER_WEIGHT`); the differentiable estimator is scaled to that one on the
    input labels, so the term steers the report's value. The cutoff is
    ``min(K − 1, min(shape) // 2)`` as in the report (:func:`~microlad.guidance.terms.s2_report`).
    ``keep(labels) -> bool``, checked every ``keep_every`` iterations and at the end, is a
    condition the result must meet (guidance: no spanning lost); when it fails, the polish
    goes back to the last state that met it, freezes the voxels flipped since then, and goes
    on (at most ``MAX_REVERTS`` times; ``PolishStats.reverted``). ``connected``: no flip
    splits a 6-connected piece of any phase (module notes).
    Returns the polished labels (a new array, same dtype) and :class:`PolishStats`. Works
    under a caller's ``no_grad`` or ``inference_mode``.
    """
    import time

    t0 = time.perf_counter()
    vf_targets = {int(q): float(v) for q, v in (vf_targets or {}).items()}
    lab = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))
    k = min(np.shape(curves)[-1], min(labels.shape) // 2 + 1)
    tgt = torch.as_tensor(np.asarray(curves, np.float64)[:, :k], dtype=torch.float32)
    n = lab.numel()
    budget = int(max_flip_fraction * n)

    def loss_of(lb: torch.Tensor, grad: bool):
        x = F.one_hot(lb, n_phases).permute(3, 0, 1, 2).to(torch.float32)
        if not grad:
            with torch.no_grad():
                return float(polish_loss(x, tgt, phases, vf_targets, perimeter_targets=per_targets)), None
        x.requires_grad_(True)
        curves_out: list[torch.Tensor] = []
        loss = polish_loss(x, tgt, phases, vf_targets, s2_out=curves_out, perimeter_targets=per_targets)
        g, *dcurves = torch.autograd.grad(loss, [x, *curves_out])
        # Lag 0 is I(v)², whose gradient 2·I(v) mispredicts a flip (exact: −1 for the old
        # phase, +1 for the new one): add the difference, dL/dS2(0) / n per phase.
        lag0 = torch.zeros(n_phases, dtype=g.dtype)
        for i, p in enumerate(phases):
            lag0[p] = sum(float(d[0]) for d in dcurves[3 * i: 3 * i + 3]) / n
        return float(loss.detach()), (g, lag0)

    per_targets = None if not perimeter else _perimeter_targets(labels, lab, n_phases, perimeter)
    start = lab.clone()
    grid = torch.meshgrid(*(torch.arange(s) for s in lab.shape), indexing="ij")
    checker = (grid[0] + grid[1] + grid[2]) % 2
    loss0, _ = loss_of(lab, False)
    loss, history, fails, size, it = loss0, [loss0], 0, max(16, n // 2048), 0
    kept = (lab.clone(), loss, 0)  # the last state known to meet ``keep``
    frozen = torch.zeros_like(lab, dtype=torch.bool)  # voxels whose flips broke ``keep``
    reverted = 0
    bar = tqdm(total=max_iter, desc="polish S2", unit="it", disable=not progress, leave=False)
    while it < max_iter and fails < MAX_FAILS:
        it += 1
        bar.update(1)
        _, (g, lag0) = loss_of(lab, True)
        # predicted change of L per (new phase b, voxel v of phase a): g_b − g_a, lag 0 exact
        delta = g - g.gather(0, lab[None]) + lag0[:, None, None, None] + lag0[lab][None]
        ok = _allowed(lab, n_phases, checker == it % 2, connected) & ~frozen[None]
        delta = torch.where(ok, delta, torch.full_like(delta, float("inf")))
        best, new = delta.min(0)
        best, new = best.flatten(), new.flatten()
        cand = torch.nonzero(best < 0).flatten()
        room = budget - int((lab != start).sum())
        cand = cand[torch.argsort(best[cand], stable=True)][: max(room, 0)]
        if connected:
            cand = _apart(cand, lab)
        if vf_targets:  # held fractions: keep every batch's net change per held phase within ±BALANCE voxels
            cand = _balanced(cand, lab.flatten()[cand], new[cand], tuple(vf_targets), 4 * size)
        chosen = None
        for m in sorted({max(1, size // 2), size, 2 * size}):
            take = cand[:m]
            trial = lab.flatten().clone()
            trial[take] = new[take]
            trial = trial.view_as(lab)
            value, _ = loss_of(trial, False)
            if value < (chosen[0] if chosen else loss):
                chosen = (value, trial, m)
            if take.numel() < m:
                break
        if chosen is None:
            fails += 1
            size = max(1, size // 4)
        else:
            fails = 0
            loss, lab, size = chosen[0], chosen[1], chosen[2]
        history.append(loss)
        bar.set_postfix(loss=f"{loss:.2e}")
        if keep is not None and it % keep_every == 0:
            if keep(lab.numpy()):
                kept = (lab.clone(), loss, it)
            else:  # back to the last state that met it; the voxels flipped since stay as they are
                frozen |= lab != kept[0]
                lab, loss = kept[0].clone(), kept[1]
                reverted += 1
                history, fails = [loss], 0
                if reverted >= MAX_REVERTS:
                    break
                continue
        if len(history) > 10 and history[-1] > 0.99 * history[-11]:
            break
    bar.close()
    if keep is not None and not torch.equal(lab, kept[0]) and not keep(lab.numpy()):
        lab, loss = kept[0], kept[1]
        reverted += 1
    out = lab.numpy().astype(labels.dtype, copy=False)
    return out, PolishStats(loss0, loss, int((lab != start).sum()), it, time.perf_counter() - t0, reverted)
