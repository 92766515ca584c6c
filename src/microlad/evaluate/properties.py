"""The ``properties`` report: every descriptor of a segmented image or volume as a dict.

One definition of each descriptor (from :mod:`microlad.descriptors` and
:mod:`microlad.physics`) serves this report, the training targets and the guidance
losses. Schema (3D; 2D uses ``"s2": {"radial": [...]}`` and axes y/x)::

    {"shape": [Z, Y, X], "ndim": 3, "n_phases": P,
     "phases": {"0": {"grey_value", "volume_fraction", "specific_surface_area",
                      "s2": {"z": [...], "y": [...], "x": [...]},
                      "s2_slices": {"z": [...], "y": [...], "x": [...]},
                      "percolates": {"z": bool, ...}, "spanning_fraction": {"z": float, ...},
                      "effective_diffusivity": {"z": float, ...}, "tortuosity": {"z": float|null, ...}}},
     "triple_phase_boundary_density": float | null,
     "transport_tolerance": {"rtol": 1e-4, "flux_rtol": 1e-2}}   # with transport only

``s2`` along axis a: S2 with the lag along a only. ``s2_slices`` normal to a: radially
averaged S2 of the 2D slices normal to a (comparable to a 2D training image's S2).
Infinite tortuosity (phase does not percolate) is written as ``null``.

S2 cutoff: one rule for every axis and slice direction, ``cutoff = floor(min(shape) / 2)``
(the smallest side of the volume), so every S2 list of a report has ``cutoff + 1``
values whatever the shape.

Transport (tortuosity, D_eff) is solved to TauFactor's convergence criterion, recorded
as ``transport_tolerance``: relative residual ``rtol = 1e-4`` and layer-flux spread
``flux_rtol = 1e-2`` (the :func:`microlad.physics.solve_transport` defaults are 1e-6 and
1e-3). On Leopard 100^3 and Berea crops the tortuosities differ from the
default-tolerance ones by < 1e-4 relative. The (phase, axis) problems are independent
and may run in worker processes (:mod:`microlad.evaluate._parallel`: as many as the
CPUs and the memory allow); each is solved exactly as in one process (the setup shared
between the axes of a phase is built the same way whether it is reused or not), so the
report does not depend on ``workers``. Every solve is checked against the memory
available before any work (:func:`transport_memory`); one that cannot fit raises
:class:`~microlad.errors.InputError` (evaluate a sub-volume instead).
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from typing import Any, Sequence

import numpy as np

from microlad import descriptors as d
from microlad.errors import InputError, ShapeError
from microlad.descriptors._validate import as_labels, check_cutoff, check_voxel_size
from microlad.evaluate import _parallel

AXES_3D = ("z", "y", "x")
AXES_2D = ("y", "x")

# transport solves in the report: TauFactor's convergence criterion (see the docstring)
TRANSPORT_RTOL = 1e-4
TRANSPORT_FLUX_RTOL = 1e-2
# 3D volumes from this many voxels are solved with the matrix-free grid solver
# (microlad.physics method "grid"), smaller ones with the assembled AMG solver
GRID_MIN_VOXELS = 64**3
# peak memory of one transport solve, bytes: the AMG path per conducting cell (operator,
# hierarchy, Krylov vectors, assembly temporaries), the grid path per voxel (stencil
# levels, float32 Krylov vectors, percolation labels); measured on Berea crops
# (BENCHMARKS.md, "properties on large volumes")
TRANSPORT_BYTES_PER_CELL = 500
GRID_BYTES_PER_VOXEL = 32

_log = logging.getLogger(__name__)


def properties(
    labels: np.ndarray,
    *,
    grey_values: Sequence[float] | None = None,
    voxel_size: float = 1.0,
    cutoff: int | None = None,
    periodic: bool = True,
    transport: bool = True,
    workers: int | None = None,
    memory_limit: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Compute the standard statistics of a label image (Y, X) or volume (Z, Y, X).

    Parameters
    ----------
    labels : integer phases 0..P-1, any 2D or 3D shape.
    grey_values : original grey value of each phase (default: the label itself).
    voxel_size : edge length of a voxel; surface areas are per unit length accordingly.
    cutoff : largest S2 distance in voxels, the same for every axis; default and maximum
        ``floor(min(shape) / 2)``.
    periodic : periodic S2 (FFT wrap-around) or non-periodic (overlap-normalised).
    transport : solve steady diffusion per phase and axis (tortuosity, D_eff).
    workers : most parallel transport solves (processes for the assembled solver,
        threads for the grid solver of 3D volumes from ``GRID_MIN_VOXELS``); 1 solves
        one problem at a time in this process. Default ``min(2, os.cpu_count())``
        processes or ``os.cpu_count() - 1`` threads, lowered to 1 when the CPUs other
        than this process's were busy while the descriptors were computed (Linux
        ``/proc/stat``; the other CPUs mostly busy), and always to as many problems as
        ``memory_limit`` holds. The results do not depend on it.
    memory_limit : bytes the transport solves may use (default: the memory available,
        :func:`microlad.evaluate._parallel.memory_available`).
    progress : progress bars (stderr) over the phases' descriptors and the transport solves.

    Raises
    ------
    InputError
        Bad labels or options, or a transport solve that needs more than
        ``memory_limit`` (checked before any work).
    """
    labels = as_labels(labels, ndims=(2, 3))
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1):
        raise InputError(f"workers must be a positive int, got {workers!r}")
    voxel_size = check_voxel_size(voxel_size)
    c = check_cutoff(cutoff, limit=min(labels.shape) // 2, default=min(labels.shape) // 2)
    n_phases = int(labels.max()) + 1
    if grey_values is None:
        grey_values = [float(i) for i in range(n_phases)]
    if len(grey_values) < n_phases:
        raise InputError(f"grey_values has {len(grey_values)} entries for {n_phases} phases")
    counts = phase_counts(labels, n_phases)
    budget = None
    if transport:
        budget = check_transport_memory(counts, memory_limit, shape=labels.shape)
    cpu_before = _parallel.cpu_sample() if transport and workers is None else None
    axes = AXES_3D if labels.ndim == 3 else AXES_2D
    vf = counts / labels.size
    phases: dict[str, Any] = {}
    for p in _progress(range(n_phases), progress, "descriptors", "phase"):
        entry: dict[str, Any] = {
            "grey_value": float(grey_values[p]),
            "volume_fraction": float(vf[p]),
            "specific_surface_area": float(d.specific_surface_area(labels, phase=p, voxel_size=voxel_size)),
        }
        if labels.ndim == 2:
            entry["s2"] = {"radial": _floats(d.s2_radial(labels, phase=p, cutoff=c, periodic=periodic))}
        else:
            entry["s2"] = {a: _floats(d.s2_axis(labels, phase=p, axis=i, cutoff=c, periodic=periodic)) for i, a in enumerate(axes)}
            entry["s2_slices"] = {
                a: _floats(d.s2_slices(labels, phase=p, axis=i, cutoff=c, periodic=periodic)) for i, a in enumerate(axes)
            }
        perc = {a: d.percolation(labels, phase=p, axis=i) for i, a in enumerate(axes)}
        entry["percolates"] = {a: bool(r.percolates) for a, r in perc.items()}
        entry["spanning_fraction"] = {a: float(r.spanning_fraction) for a, r in perc.items()}
        phases[str(p)] = entry
    if transport:
        if workers is None:
            workers = 1 if _parallel.others_busy(cpu_before) else _default_workers(uses_grid_solver(labels.shape))
        _transport(labels, phases, axes, int(workers), budget=budget, progress=progress)
    tpb = None
    if labels.ndim == 3 and n_phases == 3:
        tpb = float(d.triple_phase_boundary_density(labels, voxel_size=voxel_size))
    report = {
        "shape": list(labels.shape),
        "ndim": labels.ndim,
        "axes": "".join(a.upper() for a in axes),
        "n_phases": n_phases,
        "voxel_size": voxel_size,
        "s2_cutoff": c,
        "phases": phases,
        "triple_phase_boundary_density": tpb,
    }
    if transport:
        report["transport_tolerance"] = {"rtol": TRANSPORT_RTOL, "flux_rtol": TRANSPORT_FLUX_RTOL}
    return report


_COUNT_CHUNK = 1 << 24


def phase_counts(labels: np.ndarray, n_phases: int | None = None) -> np.ndarray:
    """Voxels per label 0..P-1 (int64), in chunks: ``np.bincount`` alone makes an
    8-byte copy of the whole array."""
    flat = labels.reshape(-1)
    n = int(labels.max()) + 1 if n_phases is None else int(n_phases)
    counts = np.zeros(n, dtype=np.int64)
    for start in range(0, flat.size, _COUNT_CHUNK):
        counts += np.bincount(flat[start : start + _COUNT_CHUNK], minlength=n)[:n]
    return counts


def uses_grid_solver(shape: Sequence[int]) -> bool:
    """Whether the report solves a volume of ``shape`` with the matrix-free grid solver."""
    return len(shape) == 3 and int(np.prod(shape)) >= GRID_MIN_VOXELS


def transport_memory(cells: int, shape: Sequence[int] | None = None) -> int:
    """Estimated peak bytes of one transport solve of ``cells`` conducting cells in a
    grid of ``shape`` (the grid solver's memory depends on the voxels, not the cells)."""
    if shape is not None and uses_grid_solver(shape):
        return int(np.prod(shape)) * GRID_BYTES_PER_VOXEL
    return int(cells) * TRANSPORT_BYTES_PER_CELL


def check_transport_memory(
    phase_counts: Sequence[int], memory_limit: int | None = None, *, shape: Sequence[int] | None = None
) -> int | None:
    """Raise :class:`InputError` if the largest phase's solve cannot fit in
    ``memory_limit`` (default: the memory available); returns the budget used (None:
    unknown, no limit)."""
    budget = memory_limit if memory_limit is not None else _parallel.memory_available()
    if budget is None:
        return None
    p = int(np.argmax(phase_counts))
    need = transport_memory(int(phase_counts[p]), shape)
    if need > budget:
        raise InputError(
            f"the transport solve of phase {p} ({int(phase_counts[p]):,} voxels) needs about {need / 2**30:.1f} GiB, "
            f"{budget / 2**30:.1f} GiB available; evaluate a sub-volume (--subvolume), or skip transport (--no-transport)"
        )
    return int(budget)


def _solve_one(labels: np.ndarray, phase: int, axis: int, cache=None) -> tuple[float, float]:
    """``(D_eff, tau)`` of one (phase, axis) problem; module level, so workers can run it.

    ``cache`` carries the axis-independent setup from one axis of a phase to the next;
    the results do not depend on it. Large 3D volumes use the grid solver (no cache).
    """
    import time

    from microlad.physics import solve_transport

    t0 = time.perf_counter()
    method = "grid" if uses_grid_solver(labels.shape) else "auto"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = solve_transport(
            labels, phase=phase, axis=axis, rtol=TRANSPORT_RTOL, flux_rtol=TRANSPORT_FLUX_RTOL, method=method,
            cache=cache if method == "auto" else None,
        )
    _log.info("transport phase %d axis %d: tau %.4f, %d iterations (%s), %.1f s",
              phase, axis, res.tortuosity, res.iterations, method, time.perf_counter() - t0)
    return float(res.effective_diffusivity), float(res.tortuosity)


def _default_workers(grid: bool = False) -> int:
    """Processes for the assembled solves: up to 2. Threads for the grid solves (large
    volumes, one problem each in this process's memory): the CPUs less one."""
    cpus = os.cpu_count() or 1
    return max(1, cpus - 1) if grid else max(1, min(2, cpus))


def _transport(
    labels: np.ndarray, phases: dict[str, dict[str, Any]], axes: Sequence[str], workers: int, *,
    budget: int | None = None, progress: bool = False,
) -> None:
    """Add ``effective_diffusivity`` and ``tortuosity`` per axis to every phase entry."""
    tasks = [(int(p), i) for p, e in phases.items() for i, a in enumerate(axes) if e["percolates"][a]]
    # the largest phases first, so that the workers finish at about the same time; the
    # axes of a phase in a row, so that a worker can reuse the phase's setup
    tasks.sort(key=lambda t: -phases[str(t[0])]["volume_fraction"])
    if budget is not None and tasks:  # every worker holds its own problem: as many as fit
        largest = max(phases[str(p)]["volume_fraction"] for p, _ in tasks) * labels.size
        workers = max(1, min(workers, budget // max(1, transport_memory(int(largest), labels.shape))))
    bar = None
    if progress and tasks:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc="transport solves", unit="solve", leave=False)

    def done(task: tuple[int, int]) -> None:
        if bar is not None:
            bar.set_postfix_str(f"phase {task[0]} axis {axes[task[1]]}")
            bar.update(1)

    try:
        solved = dict(zip(tasks, _parallel.solve_tasks(
            labels, tasks, _solve_one, workers=int(workers), on_done=done, threads=uses_grid_solver(labels.shape),
        )))
    finally:
        if bar is not None:
            bar.close()
    for p, entry in phases.items():
        deff: dict[str, float] = {}
        tau: dict[str, float | None] = {}
        for i, a in enumerate(axes):
            d_eff, t = solved.get((int(p), i), (0.0, math.inf))
            deff[a] = d_eff
            tau[a] = float(t) if math.isfinite(t) else None
        entry["effective_diffusivity"] = deff
        entry["tortuosity"] = tau


def _progress(items, show: bool, desc: str, unit: str):
    """``items``, with a progress bar on stderr when ``show``."""
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit, leave=False)


def _floats(a: np.ndarray) -> list[float]:
    return [round(float(v), 8) for v in np.asarray(a)]


def format_properties(report: dict[str, Any]) -> str:
    """A readable fixed-width table of a :func:`properties` report."""
    axes = [a.lower() for a in report["axes"]]
    shape = "x".join(str(s) for s in report["shape"])
    lines = [f"{'3D volume' if report['ndim'] == 3 else '2D image'} {shape} ({report['axes']}), {report['n_phases']} phases"]
    unit_voxel = report["voxel_size"] == 1.0
    ssa_unit = "1/voxel" if unit_voxel else "1/length"
    has_tau = any("tortuosity" in p for p in report["phases"].values())
    head = f"{'phase':>5} {'grey':>7} {'VF':>7} {'SSA [' + ssa_unit + ']':>16} {'S2(1)/S2(0)':>11}  percolates ({''.join(axes)})"
    if has_tau:
        head += "  tortuosity (" + ", ".join(axes) + ")"
    lines.append(head)
    for key, p in report["phases"].items():
        curves = [p["s2"]["radial"]] if "radial" in p["s2"] else [p["s2"][a] for a in axes]
        k = min(len(cv) for cv in curves)  # equal lengths in reports of this version
        s2 = np.mean([cv[:k] for cv in curves], axis=0)
        ratio = s2[1] / s2[0] if k > 1 and s2[0] > 0 else float("nan")
        perc = "".join("y" if p["percolates"][a] else "n" for a in axes)
        row = f"{key:>5} {p['grey_value']:>7g} {p['volume_fraction']:>7.4f} {p['specific_surface_area']:>16.5f} {ratio:>11.4f}  {perc:>{len(axes) + 13}}"
        if has_tau:
            row += "  " + ", ".join("inf" if p["tortuosity"][a] is None else f"{p['tortuosity'][a]:.3f}" for a in axes)
        lines.append(row)
    if report.get("triple_phase_boundary_density") is not None:
        tpb_unit = "1/voxel^2" if unit_voxel else "1/length^2"
        lines.append(f"triple-phase boundary density: {report['triple_phase_boundary_density']:.6f} {tpb_unit}")
    tol = report.get("transport_tolerance")
    if has_tau and tol is not None:
        lines.append(f"tortuosity solved to residual {tol['rtol']:g}, layer-flux spread {tol['flux_rtol']:g} (TauFactor's criterion)")
    return "\n".join(lines)
