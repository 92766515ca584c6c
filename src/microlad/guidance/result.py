"""What guidance returns, and how the CLI writes it (volume + JSON sidecar + per-step CSV)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["GuidanceResult", "TermReport", "log_csv"]


@dataclass(frozen=True)
class TermReport:
    """Target vs achieved for one term, measured on hard labels with the report's code.

    name : target name (``vf:1``). target : the requested value (s2: 0.0, the ideal error).
    start : the value on the finished starting volume (before guidance; NaN if not measured).
    achieved : the value on the final labels. weight : the user weight.
    extra : kind-specific extras (s2: ``max_pointwise``).
    """

    name: str
    target: float
    start: float
    achieved: float
    weight: float
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return None if not np.isfinite(v) else float(v)

        return {"name": self.name, "target": num(self.target), "start": num(self.start), "achieved": num(self.achieved),
                "weight": self.weight, **{k: num(v) for k, v in self.extra.items()}}


@dataclass(frozen=True)
class GuidanceResult:
    """One guided volume.

    labels : uint8 (Z, Y, X), the finished volume (decoded, refined, argmax).
    seed : the seed (same seed and machine ⇒ identical volume; the start is the latent
        ``reconstruct`` samples for this seed).
    terms : target vs achieved per term. log : one dict per optimisation step (every
        term's surrogate value, residual, gradient norms). timings : seconds per stage.
    config : the guidance settings used (JSON-able). smoothing_sigma : the per-phase widths (voxels)
        of the perimeter-calibrated blur of the finish, set on the start volume and kept
        for the whole run (0: none). steps_run : optimisation steps taken (more than
        ``steps`` when the run was extended). selected_step : the checkpoint returned (the
        step count after which its latent was measured). phase_fractions : per phase, the
        fraction of the finished starting volume (``"start"``) and of the returned labels
        (``"final"``): what the run did to the fractions no target pins (a transport target
        alone may move them). polish : what the label polish did (loss before / after,
        voxels flipped, iterations, seconds; ``reverted``: how often it lost a spanning and went back to
        the last state that kept them all); empty when it did not run. ``probabilities`` are those before the polish.
    """

    labels: np.ndarray
    seed: int
    terms: list[TermReport]
    log: list[dict[str, Any]]
    timings: dict[str, float]
    config: dict[str, Any]
    probabilities: np.ndarray | None = None
    smoothing_sigma: tuple[float, ...] = ()
    steps_run: int = 0
    selected_step: int = 0
    phase_fractions: dict[str, list[float]] = field(default_factory=dict)
    polish: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """``name target→achieved`` per term on one line."""
        return ", ".join(f"{t.name} {t.target:.4g} (start {t.start:.4g}) -> {t.achieved:.4g}" for t in self.terms)


def log_csv(log: list[dict[str, Any]]) -> str:
    """CSV text of the per-step log (columns: union of the rows' keys, in first-seen order)."""
    cols: list[str] = []
    for row in log:
        cols.extend(k for k in row if k not in cols)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, restval="")
    w.writeheader()
    for row in log:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()
