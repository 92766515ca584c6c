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

Transport (tortuosity, D_eff) is solved to TauFactor's convergence criterion, recorded
as ``transport_tolerance``: relative residual ``rtol = 1e-4`` and layer-flux spread
``flux_rtol = 1e-2`` (the :func:`microlad.physics.solve_transport` defaults are 1e-6 and
1e-3). On Leopard 100^3 and Berea crops the tortuosities differ from the
default-tolerance ones by < 1e-4 relative. The (phase, axis) problems are independent
and run in ``workers`` processes (fork, Linux); each is solved exactly as in one
process (the setup shared between the axes of a phase is built the same way whether it
is reused or not), so the report does not depend on ``workers``.
"""
from __future__ import annotations

import logging
import math
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Sequence

import numpy as np

from microlad import descriptors as d
from microlad.errors import InputError, ShapeError

AXES_3D = ("z", "y", "x")
AXES_2D = ("y", "x")

# transport solves in the report: TauFactor's convergence criterion (see the docstring)
TRANSPORT_RTOL = 1e-4
TRANSPORT_FLUX_RTOL = 1e-2
# below this many voxels the solves take well under a second: no worker processes
_PARALLEL_MIN_VOXELS = 64**3

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
) -> dict[str, Any]:
    """Compute the standard statistics of a label image (Y, X) or volume (Z, Y, X).

    Parameters
    ----------
    labels : integer phases 0..P-1.
    grey_values : original grey value of each phase (default: the label itself).
    voxel_size : edge length of a voxel; surface areas are per unit length accordingly.
    cutoff : largest S2 distance in voxels (default: half the smallest side).
    periodic : periodic S2 (FFT wrap-around) or non-periodic (overlap-normalised).
    transport : solve steady diffusion per phase and axis (tortuosity, D_eff).
    workers : processes for the transport solves; 1 solves in this process. Default:
        ``min(2, os.cpu_count())`` when the CPUs other than this process's were mostly
        idle while the descriptors were computed (Linux ``/proc/stat``; without it, the
        default applies), else 1: with the other CPU busy, two workers share one CPU
        and lose to one process (measured on the 2-core machine with two other busy
        processes: CLI 9.8-10.9 s with 2 workers, 8.2-8.6 s with 1). Workers need the
        'fork' start method (Linux); elsewhere, for small inputs, or if the workers
        fail, the solves run in this process. The results do not depend on it.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ShapeError(f"expected a 2D image or 3D volume, got shape {labels.shape}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1):
        raise InputError(f"workers must be a positive int, got {workers!r}")
    cpu_before = _cpu_sample() if transport and workers is None else None
    n_phases = int(labels.max()) + 1
    if grey_values is None:
        grey_values = [float(i) for i in range(n_phases)]
    axes = AXES_3D if labels.ndim == 3 else AXES_2D
    vf = d.volume_fraction(labels, n_phases=n_phases)
    phases: dict[str, Any] = {}
    for p in range(n_phases):
        entry: dict[str, Any] = {
            "grey_value": float(grey_values[p]),
            "volume_fraction": float(vf[p]),
            "specific_surface_area": float(d.specific_surface_area(labels, phase=p, voxel_size=voxel_size)),
        }
        if labels.ndim == 2:
            entry["s2"] = {"radial": _floats(d.s2_radial(labels, phase=p, cutoff=cutoff, periodic=periodic))}
        else:
            entry["s2"] = {a: _floats(d.s2_axis(labels, phase=p, axis=i, cutoff=cutoff, periodic=periodic)) for i, a in enumerate(axes)}
            entry["s2_slices"] = {
                a: _floats(d.s2_slices(labels, phase=p, axis=i, cutoff=cutoff, periodic=periodic)) for i, a in enumerate(axes)
            }
        perc = {a: d.percolation(labels, phase=p, axis=i) for i, a in enumerate(axes)}
        entry["percolates"] = {a: bool(r.percolates) for a, r in perc.items()}
        entry["spanning_fraction"] = {a: float(r.spanning_fraction) for a, r in perc.items()}
        phases[str(p)] = entry
    if transport:
        _transport(labels, phases, axes, workers if workers is not None else _auto_workers(cpu_before))
    tpb = None
    if labels.ndim == 3 and n_phases == 3:
        tpb = float(d.triple_phase_boundary_density(labels, voxel_size=voxel_size))
    report = {
        "shape": list(labels.shape),
        "ndim": labels.ndim,
        "axes": "".join(a.upper() for a in axes),
        "n_phases": n_phases,
        "voxel_size": voxel_size,
        "phases": phases,
        "triple_phase_boundary_density": tpb,
    }
    if transport:
        report["transport_tolerance"] = {"rtol": TRANSPORT_RTOL, "flux_rtol": TRANSPORT_FLUX_RTOL}
    return report


_worker_cache = None  # a worker process's SetupCache (see _init_worker)


def _solve_one(labels: np.ndarray, phase: int, axis: int, cache=None) -> tuple[float, float]:
    """``(D_eff, tau)`` of one (phase, axis) problem; module level, so workers can run it.

    ``cache`` (default: the worker's) carries the axis-independent setup from one axis
    of a phase to the next; the results do not depend on it.
    """
    from microlad.physics._transport import solve_transport

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = solve_transport(
            labels, phase=phase, axis=axis, rtol=TRANSPORT_RTOL, flux_rtol=TRANSPORT_FLUX_RTOL,
            cache=cache if cache is not None else _worker_cache,
        )
    return float(res.effective_diffusivity), float(res.tortuosity)


def _default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _cpu_sample() -> tuple[float, float] | None:
    """``(idle, total)`` CPU time of the whole machine (jiffies, all CPUs) from
    ``/proc/stat``; None where unavailable."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        vals = [float(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
        return vals[3] + vals[4], sum(vals)
    except (OSError, ValueError, IndexError):
        return None


def _auto_workers(before: tuple[float, float] | None) -> int:
    """:func:`_default_workers`, or 1 when less than half a CPU besides this process's
    was idle since ``before`` (measured over at least 0.1 s of CPU time; otherwise, or
    without ``/proc/stat``, the default stands)."""
    workers = _default_workers()
    after = _cpu_sample()
    if workers > 1 and before is not None and after is not None:
        total = after[1] - before[1]
        if total >= 10:  # jiffies, summed over the CPUs (USER_HZ = 100: 0.1 s)
            idle_cpus = (os.cpu_count() or 1) * (after[0] - before[0]) / total
            if idle_cpus < 0.5:
                workers = 1
    return workers


def _allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return []


def _init_worker(cpus: list[int] | None, counter) -> None:
    """Pool initializer: a setup cache for this worker; pin the k-th worker to ``cpus[k]``."""
    global _worker_cache
    from microlad.physics._transport import SetupCache

    _worker_cache = SetupCache()
    if not cpus:
        return
    with counter.get_lock():
        k = counter.value
        counter.value += 1
    try:
        os.sched_setaffinity(0, {cpus[k % len(cpus)]})
    except (AttributeError, OSError):  # pragma: no cover - best effort
        pass


def _solve_all(labels: np.ndarray, tasks: list[tuple[int, int]], workers: int) -> list[tuple[float, float]]:
    """Solve the (phase, axis) tasks, in ``workers`` forked processes when worthwhile.

    Each task runs the same code on the same input wherever it runs, so the results do
    not depend on ``workers`` or on the scheduling; a failed pool (no fork, a worker
    killed, ...) falls back to solving in this process. When the workers use every CPU
    this process may run on, each is pinned to its own CPU: otherwise, with another busy
    process on the machine (3 runnable processes on 2 CPUs), Linux keeps that process
    alone on one CPU and stacks both workers on the other, and two workers finish no
    sooner than one (measured on the 2-core machine: ~1.0 CPU for the pair unpinned,
    ~1.4 pinned).
    """
    workers = min(workers, len(tasks))
    if workers > 1 and labels.size >= _PARALLEL_MIN_VOXELS and "fork" in multiprocessing.get_all_start_methods():
        try:
            from microlad.physics._linsolve import preload

            preload()  # import pyamg once here rather than in every worker
            ctx = multiprocessing.get_context("fork")
            cpus = _allowed_cpus()
            pin = cpus if len(cpus) == workers else None
            init = (pin, ctx.Value("i", 0))
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
                futures = [pool.submit(_solve_one, labels, p, i) for p, i in tasks]
                return [f.result() for f in futures]
        except Exception as exc:  # noqa: BLE001 - any pool failure: solve here instead
            _log.info("transport workers failed (%s: %s); solving in this process", type(exc).__name__, exc)
    from microlad.physics._transport import SetupCache

    cache = SetupCache()
    return [_solve_one(labels, p, i, cache) for p, i in tasks]


def _transport(labels: np.ndarray, phases: dict[str, dict[str, Any]], axes: Sequence[str], workers: int) -> None:
    """Add ``effective_diffusivity`` and ``tortuosity`` per axis to every phase entry."""
    tasks = [(int(p), i) for p, e in phases.items() for i, a in enumerate(axes) if e["percolates"][a]]
    # the largest phases first, so that the workers finish at about the same time; the
    # axes of a phase in a row, so that a worker can reuse the phase's setup
    tasks.sort(key=lambda t: -phases[str(t[0])]["volume_fraction"])
    solved = dict(zip(tasks, _solve_all(labels, tasks, int(workers))))
    for p, entry in phases.items():
        deff: dict[str, float] = {}
        tau: dict[str, float | None] = {}
        for i, a in enumerate(axes):
            d_eff, t = solved.get((int(p), i), (0.0, math.inf))
            deff[a] = d_eff
            tau[a] = float(t) if math.isfinite(t) else None
        entry["effective_diffusivity"] = deff
        entry["tortuosity"] = tau


def _floats(a: np.ndarray) -> list[float]:
    return [round(float(v), 8) for v in np.asarray(a)]


def format_properties(report: dict[str, Any]) -> str:
    """A readable fixed-width table of a :func:`properties` report."""
    axes = [a.lower() for a in report["axes"]]
    shape = "x".join(str(s) for s in report["shape"])
    lines = [f"{'3D volume' if report['ndim'] == 3 else '2D image'} {shape} ({report['axes']}), {report['n_phases']} phases"]
    ssa_unit = "1/voxel" if report["voxel_size"] == 1.0 else "1/length"
    has_tau = any("tortuosity" in p for p in report["phases"].values())
    head = f"{'phase':>5} {'grey':>7} {'VF':>7} {'SSA [' + ssa_unit + ']':>16} {'S2(1)/S2(0)':>11}  percolates ({''.join(axes)})"
    if has_tau:
        head += "  tortuosity (" + ", ".join(axes) + ")"
    lines.append(head)
    for key, p in report["phases"].items():
        s2 = p["s2"]["radial"] if "radial" in p["s2"] else np.mean([p["s2"][a] for a in axes], axis=0)
        ratio = s2[1] / s2[0] if s2[0] > 0 else float("nan")
        perc = "".join("y" if p["percolates"][a] else "n" for a in axes)
        row = f"{key:>5} {p['grey_value']:>7g} {p['volume_fraction']:>7.4f} {p['specific_surface_area']:>16.5f} {ratio:>11.4f}  {perc:>{len(axes) + 13}}"
        if has_tau:
            row += "  " + ", ".join("inf" if p["tortuosity"][a] is None else f"{p['tortuosity'][a]:.3f}" for a in axes)
        lines.append(row)
    if report.get("triple_phase_boundary_density") is not None:
        lines.append(f"triple-phase boundary density: {report['triple_phase_boundary_density']:.6f} 1/voxel^2")
    tol = report.get("transport_tolerance")
    if has_tau and tol is not None:
        lines.append(f"tortuosity solved to residual {tol['rtol']:g}, layer-flux spread {tol['flux_rtol']:g} (TauFactor's criterion)")
    return "\n".join(lines)
