"""Evaluate generated volumes against a reference: metrics per volume, summary, verdict.

:func:`evaluate_volumes` measures every volume with
:func:`~microlad.evaluate.metrics.volume_metrics`, compares its slice S2 with the
reference mean (``s2_error``, the paper's metric, and ``s2_small_r``), summarises each
metric as mean ± std over the volumes (``ddof=1``; NaN for one volume) and rates the
summary against the reference (:mod:`microlad.evaluate.verdict`).
:meth:`Evaluation.to_dict` is the ``metrics.json`` schema (format ``microlad-evaluate``
version 1): arrays become nested objects keyed by phase (``"0"``, ...) and axis (``"z"``,
``"y"``, ``"x"``), S2 curves lists over r = 0..cutoff; NaN is ``null``.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from microlad.errors import InputError, ShapeError
from microlad.evaluate.metrics import AXES, SMALL_R, SPECS, MetricOptions, vae_round_trip, volume_metrics
from microlad.evaluate.reference import Reference, s2_errors, s2_small_r_errors
from microlad.evaluate.verdict import Check, compare, verdict

__all__ = ["Evaluation", "evaluate_volumes", "labelled", "FORMAT", "FORMAT_VERSION"]

FORMAT = "microlad-evaluate"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Evaluation:
    """Result of :func:`evaluate_volumes` (arrays shaped as in ``SPECS``)."""

    names: tuple[str, ...]
    shape: tuple[int, ...]
    options: MetricOptions
    per_volume: tuple[dict[str, np.ndarray], ...]
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    reference: Reference
    checks: tuple[Check, ...]
    verdict: str
    timings: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict)
    length_unit: str = "voxel"

    @property
    def s2_error(self) -> float:
        """The paper's S2 error of the volumes' mean curves: max over phases and axes."""
        return _nanmax(self.mean["s2_error"])

    @property
    def s2_error_per_volume(self) -> list[float]:
        return [_nanmax(m["s2_error"]) for m in self.per_volume]

    def to_dict(self) -> dict[str, Any]:
        p_ = self.options.n_phases
        ref = self.reference
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "verdict": self.verdict,
            "s2_error": {"overall": _num(self.s2_error), "per_volume": [_num(v) for v in self.s2_error_per_volume],
                         "by_phase_axis": labelled(self.mean["s2_error"], "s2_error", p_)},
            "n_volumes": len(self.names),
            "shape": list(self.shape),
            "n_phases": p_,
            "voxel_size": self.options.voxel_size,
            "length_unit": self.length_unit,
            "cutoff": self.options.cutoff,
            "small_r": SMALL_R,
            "transport": self.options.transport,
            "volumes": [{"name": n, "s2_error": _num(e), "metrics": {k: labelled(v, k, p_) for k, v in m.items()}}
                        for n, e, m in zip(self.names, self.s2_error_per_volume, self.per_volume)],
            "summary": {"mean": {k: labelled(v, k, p_) for k, v in self.mean.items()},
                        "std": {k: labelled(v, k, p_) for k, v in self.std.items()},
                        "standard_error": {k: labelled(np.asarray(v) / np.sqrt(len(self.names)), k, p_) for k, v in self.std.items()}},
            "reference": {
                "kind": ref.kind, "sources": list(ref.sources), "sample_shape": list(ref.sample_shape),
                "n_samples": ref.n_samples, "group_size": ref.group_size, "notes": list(ref.notes), "extra": ref.extra,
                "mean": {k: labelled(v, k, p_) for k, v in ref.mean.items()},
                "std": {k: labelled(v, k, p_) for k, v in ref.std.items()},
                "spread": {k: labelled(v, k, p_) for k, v in ref.spread.items()},
                "tolerance": {k: labelled(v, k, p_) for k, v in ref.tolerance.items()},
            },
            "checks": [c.to_dict() for c in self.checks],
            "metrics": {k: {"label": s.label, "dims": list(s.dims), "unit": unit(s.length_power, self.length_unit),
                            "description": s.description} for k, s in SPECS.items()},
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "metadata": self.metadata,
        }


def unit(power: int, length: str = "voxel") -> str:
    """Unit text for ``length**power`` ("" when dimensionless)."""
    if power == 0:
        return ""
    if power > 0:
        return length + ("" if power == 1 else f"^{power}")
    return "1/" + length + ("" if power == -1 else f"^{-power}")


def _num(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _nanmax(a: np.ndarray) -> float:
    a = np.asarray(a, float)
    return float(np.nanmax(a)) if np.isfinite(a).any() else math.nan


def labelled(arr: np.ndarray, name: str, n_phases: int) -> Any:
    """A metric array as JSON: nested by phase ("0".."P-1") and axis ("z", "y", "x")."""
    dims = SPECS[name].dims
    arr = np.asarray(arr, dtype=np.float64)

    def rec(a: np.ndarray, level: int) -> Any:
        if level == len(dims):
            return _num(a)
        if dims[level] == "r":
            return [_num(v) for v in a]
        keys = [str(p) for p in range(a.shape[0])] if dims[level] == "phase" else list(AXES)
        return {k: rec(a[i], level + 1) for i, k in enumerate(keys)}

    return rec(arr, 0)


def evaluate_volumes(
    volumes: Sequence[np.ndarray],
    reference: Reference,
    *,
    opts: MetricOptions,
    names: Sequence[str] | None = None,
    model: Any = None,
    progress: bool = False,
    metadata: dict[str, Any] | None = None,
    length_unit: str = "voxel",
) -> Evaluation:
    """Measure ``volumes`` (each (Z, Y, X), all one shape) and rate them against ``reference``.

    ``model`` (optional) adds the VAE round-trip accuracy of every 4th slice per axis.
    ``opts.cutoff`` must equal ``reference.cutoff``.
    """
    if not volumes:
        raise InputError("need at least one volume to evaluate")
    shape = tuple(np.shape(volumes[0]))
    if any(np.ndim(v) != 3 or np.shape(v) != shape for v in volumes):
        raise ShapeError("all evaluated volumes must be 3D and of one shape")
    if opts.cutoff != reference.cutoff:
        raise InputError(f"S2 cutoff {opts.cutoff} differs from the reference's {reference.cutoff}")
    names = tuple(names) if names is not None else tuple(f"volume {i}" for i in range(len(volumes)))
    t0 = time.perf_counter()
    per_volume = []
    t_vae = 0.0
    iterator = volumes
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(volumes, desc="evaluate", unit="volume", leave=False)
    for vol in iterator:
        m = volume_metrics(np.asarray(vol), opts)
        m["s2_error"] = s2_errors(m["s2"], reference.mean["s2"])
        m["s2_small_r"] = s2_small_r_errors(m["s2"], reference.mean["s2"])
        if model is not None:
            t1 = time.perf_counter()
            m["vae_accuracy"] = vae_round_trip(model, np.asarray(vol))
            t_vae += time.perf_counter() - t1
        per_volume.append(m)
    keys = [k for k in per_volume[0] if all(k in m for m in per_volume)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN tortuosity of a non-percolating phase
        stacked = {k: np.stack([m[k] for m in per_volume]) for k in keys}
        mean = {k: np.nanmean(v, axis=0) for k, v in stacked.items()}
        std = {k: (np.nanstd(v, axis=0, ddof=1) if len(volumes) > 1 else np.full(v.shape[1:], np.nan)) for k, v in stacked.items()}
    # the S2 errors of the mean curves (as the paper and s2_fidelity): not the mean of the errors
    mean["s2_error"] = s2_errors(mean["s2"], reference.mean["s2"])
    mean["s2_small_r"] = s2_small_r_errors(mean["s2"], reference.mean["s2"])
    checks = compare(mean, std, reference, sample_volume=float(np.prod(shape)) * opts.voxel_size**3)
    timings = {"volumes": time.perf_counter() - t0}
    if model is not None:
        timings["vae_round_trip"] = t_vae
    return Evaluation(names=names, shape=shape, options=opts, per_volume=tuple(per_volume), mean=mean, std=std,
                      reference=reference, checks=tuple(checks), verdict=verdict(checks), timings=timings,
                      metadata=dict(metadata or {}), length_unit=length_unit)


def format_verdict(ev: Evaluation) -> str:
    """A short fixed-width table: per metric and phase the worst status, values and reference."""
    lines = [f"{len(ev.names)} volume(s) {'x'.join(map(str, ev.shape))} vs {ev.reference.kind} reference "
             f"({', '.join(ev.reference.sources) or '-'}); S2 error (max over phases and axes): {100 * ev.s2_error:.2f} %"]
    lines.append(f"{'metric':<28} {'phase':>5} {'volumes (mean over axes)':>26} {'reference ± spread':>22}  status")
    order = {"fail": 0, "warn": 1, "pass": 2, "info": 3, "n/a": 4}
    groups: dict[tuple[str, Any], list[Check]] = {}
    for c in ev.checks:
        groups.setdefault((c.metric, c.phase), []).append(c)
    for (name, phase), cs in groups.items():
        worst = min(cs, key=lambda c: order[c.status]).status
        v = np.nanmean([c.value for c in cs]) if any(math.isfinite(c.value) for c in cs) else math.nan
        vs = np.nanmean([c.value_std for c in cs]) if any(math.isfinite(c.value_std) for c in cs) else math.nan
        if name in ("s2_error", "s2_small_r"):
            v = max((c.value for c in cs if math.isfinite(c.value)), default=math.nan)
            tol = min((c.tolerance for c in cs if math.isfinite(c.tolerance)), default=math.nan)
            left, right = f"max {_fmt(v)}", f"tolerance {_fmt(tol)}"
        else:
            r = np.nanmean([c.reference for c in cs]) if any(math.isfinite(c.reference) for c in cs) else math.nan
            rs = np.nanmean([c.reference_std for c in cs]) if any(math.isfinite(c.reference_std) for c in cs) else math.nan
            left, right = f"{_fmt(v)} ± {_fmt(vs)}", f"{_fmt(r)} ± {_fmt(rs)}"
        lines.append(f"{SPECS[name].label:<28} {'' if phase is None else phase:>5} {left:>26} {right:>22}  {worst}")
    counts = {s: sum(c.status == s for c in ev.checks) for s in ("pass", "warn", "fail", "n/a")}
    lines.append(f"verdict: {ev.verdict.upper()} ({counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail, "
                 f"{counts['n/a']} without reference)")
    return "\n".join(lines)


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "-"
    return f"{v:.4g}"
