"""Per-sample metrics of ``microlad evaluate``: one label volume or one 2-D patch → arrays.

Every metric is a numpy array whose dimensions are named in :data:`SPECS` (``phase``
P, ``axis`` 3 in the order z, y, x, ``r`` the S2 lags 0..cutoff). A generated volume, a
sub-volume of a 3-D reference and a 2-D reference patch all go through the same
descriptor functions (:mod:`microlad.descriptors`, :func:`microlad.evaluate.properties`),
so a reference compared with itself differs by exactly zero. 2-D patches have no axis:
their per-axis metrics are the same for the three axes (the reference for the slices
normal to each axis); 3-D-only metrics (transport, TPB, isolated clusters, Euler characteristic) are absent.

Conventions: S2 is non-periodic (overlap-normalised), as in the training statistics;
``s2`` of a volume along axis a is the radial S2 of its 2-D slices normal to a;
``s2_line`` is the line S2 with the lag along a (used for the isotropy check). Lengths
in units of ``voxel_size``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from microlad import descriptors as d

__all__ = ["AXES", "SMALL_R", "SPECS", "MetricSpec", "MetricOptions", "image_metrics", "volume_metrics", "vae_round_trip", "anisotropy"]

AXES = ("z", "y", "x")
#: Pointwise S2 comparison runs over r = 0..SMALL_R voxels (the fine scale the sum hides).
SMALL_R = 8


@dataclass(frozen=True)
class MetricSpec:
    """What a metric array holds: named dimensions, a label, its unit as a power of length."""

    dims: tuple[str, ...]
    label: str
    length_power: int  # unit = length**length_power (0: dimensionless)
    description: str


SPECS: dict[str, MetricSpec] = {
    "vf": MetricSpec(("phase",), "volume fraction", 0, "fraction of voxels in the phase"),
    "s2": MetricSpec(("phase", "axis", "r"), "S2 of slices", 0, "radial S2 of the slices normal to the axis"),
    "s2_line": MetricSpec(("phase", "axis", "r"), "line S2", 0, "S2 with the lag along the axis"),
    "s2_error": MetricSpec(("phase", "axis"), "S2 error", 0, "paper metric |A - A_ref| / A_ref, A = sum of S2 up to the cutoff"),
    "s2_small_r": MetricSpec(("phase", "axis"), "max |dS2| (r <= 8)", 0, "largest pointwise |S2 - S2_ref| for r = 0..8"),
    "perimeter_density": MetricSpec(("phase", "axis"), "slice perimeter density", -1, "boundary length per unit area of the slices normal to the axis"),
    "surface_area": MetricSpec(("phase",), "surface area S_V", -1, "3-D interface area per unit volume (2-D reference: 4/pi L_A)"),
    "cluster_density": MetricSpec(("phase", "axis"), "slice clusters / area", -2, "4-connected clusters per unit slice area"),
    "cluster_mean_area": MetricSpec(("phase", "axis"), "mean slice cluster area", 2, "mean area of the slice clusters"),
    "cluster_weighted_area": MetricSpec(("phase", "axis"), "weighted slice cluster area", 2,
                                        "mean area of the slice cluster a random pixel of the phase lies in (how split the phase is)"),
    "anisotropy": MetricSpec(("phase",), "anisotropy", 0, "(max - min) / mean over axes of the line-S2 sums"),
    "spanning_fraction": MetricSpec(("phase", "axis"), "spanning fraction", 0, "fraction of the phase in clusters touching both faces normal to the axis"),
    "isolated_cluster_density": MetricSpec(("phase",), "isolated clusters / volume", -3, "6-connected clusters touching no face, per unit volume"),
    "euler_density": MetricSpec(("phase",), "Euler number / volume", -3,
                                "6-connected components - tunnels + cavities per unit volume (negative: a looped network); not a section statistic"),
    "tpb_density": MetricSpec((), "TPB density", -2, "triple-phase boundary length per unit volume"),
    "tortuosity": MetricSpec(("phase", "axis"), "tortuosity", 0, "tortuosity factor eps D/D_eff (NaN: does not percolate)"),
    "effective_diffusivity": MetricSpec(("phase", "axis"), "D_eff / D", 0, "effective diffusivity relative to the bulk"),
    "vae_accuracy": MetricSpec(("phase", "axis"), "VAE round-trip accuracy", 0, "encode -> decode -> argmax of every 4th slice normal to the axis"),
}


@dataclass(frozen=True)
class MetricOptions:
    """Options shared by every sample of one evaluation (so all are comparable).

    cutoff : largest S2 lag in voxels. n_phases : P. voxel_size : voxel edge length.
    transport : solve tortuosity / D_eff (volumes only). workers : transport processes
    (``None``: :func:`microlad.evaluate.properties` decides).
    """

    cutoff: int
    n_phases: int
    voxel_size: float = 1.0
    transport: bool = True
    workers: int | None = None


def anisotropy(line_s2: np.ndarray) -> np.ndarray:
    """(max - min) / mean over axes of ``A = sum_r S2(r)``; ``line_s2`` (P, n_axes, K) → (P,)."""
    a = np.asarray(line_s2).sum(axis=-1)
    mean = a.mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, (a.max(axis=-1) - a.min(axis=-1)) / np.where(mean > 0, mean, 1.0), 0.0)


def _slice_metrics(labels: np.ndarray, opts: MetricOptions, axes: range) -> dict[str, np.ndarray]:
    """Perimeter and slice-cluster metrics, (P, len(axes))."""
    p_, vs = opts.n_phases, opts.voxel_size
    per = np.zeros((p_, len(axes)))
    dens = np.zeros((p_, len(axes)))
    area = np.zeros((p_, len(axes)))
    weighted = np.zeros((p_, len(axes)))
    for p in range(p_):
        for j, a in enumerate(axes):
            per[p, j] = d.slice_perimeter_density(labels, phase=p, axis=a, voxel_size=vs)
            c = d.slice_clusters(labels, phase=p, axis=a, voxel_size=vs)
            dens[p, j], area[p, j], weighted[p, j] = c.density, c.mean_area, c.weighted_area
    return {"perimeter_density": per, "cluster_density": dens, "cluster_mean_area": area, "cluster_weighted_area": weighted}


def image_metrics(image: np.ndarray, opts: MetricOptions) -> dict[str, np.ndarray]:
    """Metrics of one 2-D reference patch (Y, X); per-axis metrics repeated for z, y, x.

    ``surface_area`` is the stereological estimate ``4/pi L_A`` of the patch.
    """
    p_, c = opts.n_phases, opts.cutoff
    s2 = np.stack([d.s2_radial(image, phase=p, cutoff=c, periodic=False) for p in range(p_)])
    line = np.stack([[d.s2_axis(image, phase=p, axis=a, cutoff=c, periodic=False) for a in (0, 1)] for p in range(p_)])
    sl = _slice_metrics(image, opts, range(1))
    out = {
        "vf": d.volume_fraction(image, n_phases=p_),
        "s2": np.repeat(s2[:, None, :], 3, axis=1),
        "anisotropy": anisotropy(line),
        "surface_area": d.stereological_surface_area(sl["perimeter_density"][:, 0]),
    }
    out.update({k: np.repeat(v, 3, axis=1) for k, v in sl.items()})
    return out


def volume_metrics(volume: np.ndarray, opts: MetricOptions) -> dict[str, np.ndarray]:
    """Metrics of one label volume (Z, Y, X): every key of :data:`SPECS` except the
    comparisons (``s2_error``, ``s2_small_r``) and ``vae_accuracy``; transport keys
    only with ``opts.transport``, ``tpb_density`` only for three phases."""
    from microlad.evaluate.properties import properties

    p_, c = opts.n_phases, opts.cutoff
    rep = properties(volume, voxel_size=opts.voxel_size, cutoff=c, periodic=False, transport=opts.transport, workers=opts.workers)
    phases = rep["phases"]
    k = c + 1

    def per_phase(fn, shape, fill=0.0):
        arr = np.full((p_,) + shape, fill, dtype=np.float64)
        for p in range(p_):
            if str(p) in phases:  # a phase absent from the volume keeps ``fill``
                arr[p] = fn(phases[str(p)])
        return arr

    out: dict[str, np.ndarray] = {
        "vf": d.volume_fraction(volume, n_phases=p_),
        "s2": per_phase(lambda e: [e["s2_slices"][a] for a in AXES], (3, k)),
        "s2_line": per_phase(lambda e: [e["s2"][a] for a in AXES], (3, k)),
        "surface_area": per_phase(lambda e: e["specific_surface_area"], ()),
        "spanning_fraction": per_phase(lambda e: [e["spanning_fraction"][a] for a in AXES], (3,)),
        "isolated_cluster_density": np.array([d.isolated_cluster_density(volume, phase=p, voxel_size=opts.voxel_size) for p in range(p_)]),
        "euler_density": np.array([d.euler_characteristic_density(volume, phase=p, voxel_size=opts.voxel_size) for p in range(p_)]),
    }
    out["anisotropy"] = anisotropy(out["s2_line"])
    out.update(_slice_metrics(volume, opts, range(3)))
    if opts.transport:
        out["tortuosity"] = per_phase(lambda e: [np.nan if e["tortuosity"][a] is None else e["tortuosity"][a] for a in AXES], (3,), np.nan)
        out["effective_diffusivity"] = per_phase(lambda e: [e["effective_diffusivity"][a] for a in AXES], (3,))
    if rep.get("triple_phase_boundary_density") is not None and p_ == 3:
        out["tpb_density"] = np.asarray(rep["triple_phase_boundary_density"], dtype=np.float64)
    return out


def vae_round_trip(model: Any, volume: np.ndarray, *, every: int = 4, batch: int = 32) -> np.ndarray:
    """Per-phase accuracy of the model's VAE on the volume's slices, (P, 3) for z, y, x.

    Every ``every``-th slice normal to each axis is one-hot encoded, encoded (posterior
    mean), decoded and arg-maxed; accuracy[p, a] is the fraction of the phase's pixels
    in those slices that come back as p (NaN where the phase is absent). Slices are
    cropped to multiples of the VAE's downsample factor. An on-manifold check: slices
    the 2-D model could have produced come back almost unchanged.
    """
    import torch

    from microlad.data import onehot

    p_ = model.n_phases
    f = model.downsample_factor
    device = model.device
    acc = np.full((p_, 3), np.nan)
    with torch.inference_mode():
        for a in range(3):
            stack = np.moveaxis(volume, a, 0)[::every]
            h, w = (stack.shape[1] // f) * f, (stack.shape[2] // f) * f
            stack = np.ascontiguousarray(stack[:, :h, :w])
            hits, counts = np.zeros(p_), np.zeros(p_)
            for start in range(0, len(stack), batch):
                lab = torch.as_tensor(stack[start:start + batch].astype(np.int64))
                mean, _ = model.vae.encode(onehot(lab, p_, dim=1).to(device))
                pred = model.vae.decode(mean).argmax(1).cpu().numpy()
                true = lab.numpy()
                for p in range(p_):
                    t = true == p
                    counts[p] += t.sum()
                    hits[p] += (t & (pred == p)).sum()
            acc[:, a] = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    return acc
