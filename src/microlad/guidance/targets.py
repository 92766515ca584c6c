"""Guidance targets: parsing ``KIND[:PHASE][@AXIS]=VALUE`` and validation before any work.

Kinds (phase P is a label 0..P-1, axis one of z, y, x; volumes are (Z, Y, X)):

=========  =========================  ==================================================
kind       syntax                     value
=========  =========================  ==================================================
vf         ``vf:P=V``                 volume fraction of phase P, 0 < V < 1
sa         ``sa:P=V``                 specific surface area of phase P, 1/voxel (area per
                                      total volume, the report's marching-cubes estimator)
s2         ``s2=train`` / ``s2:P=train``  slice S2 of every phase (or of P) = the training
                                      images' S2 stored in the model
           ``s2=FILE`` / ``s2:P=FILE``    = the S2 of a segmented image or volume file
                                      (same grey values as the training images)
deff       ``deff:P@A=V``             D_eff/D_bulk of phase P along axis A, 0 < V <= 1,
                                      whole 3D volume
tau        ``tau:P@A=V``              tortuosity factor ε·D_bulk/D_eff of P along A, V >= 1
deff2d     ``deff2d:P@A=V``           the paper's variant: mean 2D D_eff of the slices
                                      that contain axis A, 0 < V <= 1
=========  =========================  ==================================================

Every target has a :attr:`Target.name` (``"vf:1"``, ``"s2"``, ``"deff:0@x"``) that
``--weight NAME=W`` and the per-step log refer to.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from microlad.errors import InputError

__all__ = ["KINDS", "TRANSPORT_KINDS", "Target", "parse_target", "parse_targets", "parse_weights", "validate_targets"]

KINDS = ("vf", "sa", "s2", "deff", "tau", "deff2d")
TRANSPORT_KINDS = ("deff", "tau", "deff2d")
AXES = {"z": 0, "y": 1, "x": 2}
_SYNTAX = re.compile(r"^\s*([a-z0-9]+)(?::\s*([^@=\s]+))?(?:@\s*([^=\s]+))?\s*=\s*(\S+)\s*$")
_NAME = re.compile(r"^\s*([a-z0-9]+)(?::\s*([^@=\s]+))?(?:@\s*([^=\s]+))?\s*$")
_HELP = "expected KIND[:PHASE][@AXIS]=VALUE, e.g. vf:1=0.40, sa:0=0.08, s2=train, s2=image.tif, deff:0@x=0.05, tau:0@z=5.0"


@dataclass(frozen=True)
class Target:
    """One guidance target.

    kind : one of :data:`KINDS`.
    phase : phase label, or None (``s2`` over every phase).
    axis : 0 (z), 1 (y), 2 (x) for transport kinds, else None.
    value : the target number; for ``s2`` None (the curve is in ``curve``).
    curve : ``s2`` only: target curves (P, K) or (K,) for one phase, or None for
        "the training images' S2" or for ``source`` (resolved from the model before
        guidance starts, :func:`microlad.guidance.prepare`).
    source : ``s2`` only: the image or volume file whose S2 is the target, or None.
    """

    kind: str
    phase: int | None = None
    axis: int | None = None
    value: float | None = None
    curve: np.ndarray | None = None
    source: str | None = None

    @property
    def name(self) -> str:
        """``kind[:phase][@axis]``, the key for weights and logs."""
        out = self.kind if self.phase is None else f"{self.kind}:{self.phase}"
        return out if self.axis is None else f"{out}@{'zyx'[self.axis]}"

    def describe(self) -> str:
        """``name=value`` as the user would type it."""
        if self.kind == "s2":
            return f"{self.name}={self.source or ('train' if self.curve is None else 'curve')}"
        return f"{self.name}={self.value:g}"


def _phase(text: str | None, spec: str) -> int | None:
    if text is None:
        return None
    try:
        p = int(text)
    except ValueError:
        raise InputError(f"target {spec!r}: phase must be an integer label, got {text!r}") from None
    if p < 0:
        raise InputError(f"target {spec!r}: phase must be >= 0, got {p}")
    return p


def _axis(text: str | None, spec: str) -> int | None:
    if text is None:
        return None
    if text.lower() not in AXES:
        raise InputError(f"target {spec!r}: unknown axis {text!r}; use z, y or x")
    return AXES[text.lower()]


def _split(spec: str, pattern: re.Pattern[str]) -> tuple[str, int | None, int | None, str | None]:
    m = pattern.match(spec)
    if not m:
        raise InputError(f"malformed target {spec!r}: {_HELP}")
    kind = m.group(1)
    if kind not in KINDS:
        raise InputError(f"target {spec!r}: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    value = m.group(4) if pattern is _SYNTAX else None
    return kind, _phase(m.group(2), spec), _axis(m.group(3), spec), value


def parse_target(spec: str) -> Target:
    """Parse one ``KIND[:PHASE][@AXIS]=VALUE`` string (syntax and value ranges only;
    phases are checked against a model by :func:`validate_targets`)."""
    if not isinstance(spec, str):
        raise InputError(f"a target must be a string like 'vf:1=0.4', got {type(spec).__name__}")
    kind, phase, axis, text = _split(spec, _SYNTAX)
    return _make(kind, phase, axis, text, spec)


def _make(kind: str, phase: int | None, axis: int | None, value: object, spec: str) -> Target:
    if kind == "s2":
        if axis is not None:
            raise InputError(f"target {spec!r}: s2 takes no axis (it constrains the slices along every axis)")
        if isinstance(value, str):
            text = value.strip()
            if text.lower() == "train":
                return Target("s2", phase)
            if not text:
                raise InputError(f"target {spec!r}: s2 takes 'train' (the training images' S2) or an image file")
            return Target("s2", phase, source=text)
        curve = np.asarray(value, dtype=np.float64)
        if curve.ndim not in (1, 2) or curve.shape[-1] < 2 or not np.isfinite(curve).all() or (curve < 0).any():
            raise InputError(f"target {spec!r}: an S2 curve must be a finite non-negative (K,) or (P, K) array")
        if curve.ndim == 2 and phase is not None:
            raise InputError(f"target {spec!r}: give one (K,) curve for a single phase")
        return Target("s2", phase, curve=curve)
    if phase is None:
        raise InputError(f"target {spec!r}: {kind} needs a phase, e.g. {kind}:0" + ("@x=..." if kind in TRANSPORT_KINDS else "=..."))
    if kind in TRANSPORT_KINDS and axis is None:
        raise InputError(f"target {spec!r}: {kind} needs a transport axis, e.g. {kind}:{phase}@x=...")
    if kind not in TRANSPORT_KINDS and axis is not None:
        raise InputError(f"target {spec!r}: {kind} takes no axis")
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"target {spec!r}: value must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InputError(f"target {spec!r}: value must be finite, got {value!r}")
    if kind == "vf" and not 0.0 < v < 1.0:
        raise InputError(f"target {spec!r}: a volume fraction must lie in (0, 1), got {v:g}")
    if kind == "sa" and v < 0.0:
        raise InputError(f"target {spec!r}: a surface area cannot be negative, got {v:g}")
    if kind in ("deff", "deff2d") and not 0.0 < v <= 1.0:
        raise InputError(f"target {spec!r}: D_eff/D_bulk must lie in (0, 1], got {v:g}")
    if kind == "tau" and v < 1.0:
        raise InputError(f"target {spec!r}: a tortuosity factor is >= 1, got {v:g}")
    return Target(kind, phase, axis, v)


def parse_targets(targets: Iterable[str | Target] | Mapping[str, object] | None) -> list[Target]:
    """Targets from strings (``["vf:1=0.4", ...]``), :class:`Target` objects or a mapping
    ``{"vf:1": 0.4, "s2": "train", "deff:0@x": 0.05}``; duplicates are an error."""
    if targets is None:
        return []
    out: list[Target] = []
    if isinstance(targets, Mapping):
        for key, value in targets.items():
            if not isinstance(key, str):
                raise InputError(f"target names must be strings like 'vf:1', got {key!r}")
            kind, phase, axis, _ = _split(key, _NAME)
            out.append(_make(kind, phase, axis, value, f"{key}={value!r}"))
    else:
        if isinstance(targets, (str, Target)):
            targets = [targets]
        for t in targets:
            out.append(t if isinstance(t, Target) else parse_target(t))
    names = [t.name for t in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"target {dup[0]!r} given more than once")
    return out


def validate_targets(targets: Sequence[Target], n_phases: int, *, has_training_s2: bool) -> None:
    """Check targets against a model with ``n_phases`` phases: phase labels in range,
    per-phase VF targets summing to at most 1 (below 1 when not every phase has one),
    an ``s2=train`` target only when the model stores the training S2, an s2 curve with
    one row per phase."""
    if not targets:
        raise InputError("no targets given; pass at least one, e.g. --target vf:1=0.40")
    for t in targets:
        if t.phase is not None and t.phase >= n_phases:
            raise InputError(f"target {t.describe()!r}: unknown phase {t.phase}; this model has phases 0..{n_phases - 1}")
        if t.kind == "s2" and t.curve is None and not has_training_s2:
            raise InputError(f"target {t.describe()!r}: this model stores no training S2; give a curve instead")
        if t.kind == "s2" and t.curve is not None and t.curve.ndim == 2 and t.curve.shape[0] != n_phases:
            raise InputError(f"target {t.name!r}: the S2 curves need one row per phase ({n_phases}), got {t.curve.shape[0]}")
    vf = [t for t in targets if t.kind == "vf"]
    total = sum(t.value for t in vf)  # type: ignore[misc]
    if total > 1.0 + 1e-9 or (len(vf) == n_phases and abs(total - 1.0) > 1e-6):
        raise InputError(
            f"volume-fraction targets sum to {total:g} ("
            + ", ".join(t.describe() for t in vf)
            + "); they must sum to at most 1 (exactly 1 if every phase has one)"
        )


def parse_weights(specs: Iterable[str] | Mapping[str, float] | None, targets: Sequence[Target]) -> dict[str, float]:
    """``NAME=W`` strings (or a mapping) → {target name: weight}. NAME is a target name
    (``vf:1``), a kind (``vf``: every target of that kind) or ``prior``. Default weight 1."""
    weights = {t.name: 1.0 for t in targets}
    weights["prior"] = 1.0
    if not specs:
        return weights
    items = specs.items() if isinstance(specs, Mapping) else [_split_weight(s) for s in specs]
    for name, w in items:
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise InputError(f"weight {name!r}: must be a number, got {w!r}") from None
        if not math.isfinite(w) or w < 0:
            raise InputError(f"weight {name!r}: must be a finite number >= 0, got {w:g}")
        hits = [k for k in weights if k == name or k.split(":")[0] == name]
        if not hits:
            raise InputError(f"weight {name!r} matches no target; targets: {', '.join(t.name for t in targets)} (and 'prior')")
        for k in hits:
            weights[k] = w
    return weights


def _split_weight(spec: str) -> tuple[str, str]:
    if not isinstance(spec, str) or spec.count("=") != 1:
        raise InputError(f"malformed weight {spec!r}: expected NAME=W, e.g. vf:1=2 or prior=0.5")
    name, value = (s.strip() for s in spec.split("="))
    if not name:
        raise InputError(f"malformed weight {spec!r}: expected NAME=W")
    return name, value
