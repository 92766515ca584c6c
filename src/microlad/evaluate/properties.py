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
     "triple_phase_boundary_density": float | null}

``s2`` along axis a: S2 with the lag along a only. ``s2_slices`` normal to a: radially
averaged S2 of the 2D slices normal to a (comparable to a 2D training image's S2).
Infinite tortuosity (phase does not percolate) is written as ``null``.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np

from microlad import descriptors as d
from microlad.errors import ShapeError

AXES_3D = ("z", "y", "x")
AXES_2D = ("y", "x")


def properties(
    labels: np.ndarray,
    *,
    grey_values: Sequence[float] | None = None,
    voxel_size: float = 1.0,
    cutoff: int | None = None,
    periodic: bool = True,
    transport: bool = True,
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
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ShapeError(f"expected a 2D image or 3D volume, got shape {labels.shape}")
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
        if transport:
            entry.update(_transport(labels, p, axes, entry["percolates"]))
        phases[str(p)] = entry
    tpb = None
    if labels.ndim == 3 and n_phases == 3:
        tpb = float(d.triple_phase_boundary_density(labels, voxel_size=voxel_size))
    return {
        "shape": list(labels.shape),
        "ndim": labels.ndim,
        "axes": "".join(a.upper() for a in axes),
        "n_phases": n_phases,
        "voxel_size": voxel_size,
        "phases": phases,
        "triple_phase_boundary_density": tpb,
    }


def _transport(labels: np.ndarray, phase: int, axes: Sequence[str], percolates: dict[str, bool]) -> dict[str, Any]:
    from microlad.physics import solve_transport

    deff: dict[str, float] = {}
    tau: dict[str, float | None] = {}
    for i, a in enumerate(axes):
        if not percolates[a]:
            deff[a], tau[a] = 0.0, None
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = solve_transport(labels, phase=phase, axis=i)
        deff[a] = float(res.effective_diffusivity)
        tau[a] = None if not math.isfinite(res.tortuosity) else float(res.tortuosity)
    return {"effective_diffusivity": deff, "tortuosity": tau}


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
    return "\n".join(lines)
