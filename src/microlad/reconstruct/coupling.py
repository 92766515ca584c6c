"""Isotropic slice coupling for L-MPDD (ours; not in the paper).

At each L-MPDD step the 2D denoiser predicts the clean estimate x̂0 of every slice on its
own, so at high noise x̂0 has almost no correlation *across* the slicing axis. Cycling the
axis ties the slices together only partly: the volumes end with shorter-range
correlation than the training images (their slices show smaller features; BENCHMARKS.md,
"L-MPDD variants").

L-MPDD assumes a statistically isotropic medium (one 2D model for slices along every
axis), so correlation across slices should equal correlation within them. Coupling
enforces that on x̂0 at every step: if its lag-1 autocorrelation along the slicing axis
is below the mean of the two in-plane ones, x̂0 is smoothed along the slicing axis with
the smallest Gaussian (σ on a grid of 0.25 latent cells, up to 4) that lifts it to the
in-plane value; per-channel mean and std are restored, and the model output is
re-derived from the coupled x̂0 so any sampler step applies unchanged. Turn it off
(``slice_coupling=False``) for the paper's plain L-MPDD.

Why the σ grid is coarse: its first steps (σ = 0.25 → 0.5) lift the cross-slice
correlation past the target, most at low noise, and that overshoot is what removes the
feature-size bias; matching the target exactly (bisection on σ) removes only part of it.
The grid therefore acts as the coupling strength; it is not tuned per material. The
overshoot of the last step leaves the latent volume slightly anisotropic along the
last-coupled axis, which the decoded slices' S2 does not show. The figures are in
BENCHMARKS.md ("L-MPDD variants", "Design measurements").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SIGMAS = tuple(0.25 * k for k in range(1, 17))
"""Gaussian widths tried, in latent cells (smallest first)."""


def lag1_correlation(x: torch.Tensor, dim: int, *, periodic: bool = False) -> float:
    """Lag-1 autocorrelation of (C, d, h, w) along spatial ``dim`` (1, 2, 3), channels pooled."""
    x = x - x.mean(dim=(1, 2, 3), keepdim=True)
    var = float((x * x).mean())
    if var == 0.0:
        return 1.0
    if periodic:
        return float((x * torch.roll(x, 1, dims=dim)).mean()) / var
    n = x.shape[dim]
    return float((x.narrow(dim, 0, n - 1) * x.narrow(dim, 1, n - 1)).mean()) / var


def smooth_along(x: torch.Tensor, dim: int, sigma: float, *, periodic: bool = False) -> torch.Tensor:
    """Gaussian filter (σ in cells) of (C, d, h, w) along ``dim``, keeping per-channel mean and std."""
    half = max(1, int(3 * sigma + 0.999))
    k = torch.arange(-half, half + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (k / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    moved = x.movedim(dim, -1)
    shape = moved.shape
    flat = moved.reshape(-1, 1, shape[-1])
    if periodic:
        flat = torch.cat([flat[..., -half:], flat, flat[..., :half]], dim=-1)
    else:
        flat = F.pad(flat, (half, half), mode="replicate")
    out = F.conv1d(flat, kernel).reshape(shape).movedim(-1, dim)
    mean, std = x.mean(dim=(1, 2, 3), keepdim=True), x.std(dim=(1, 2, 3), keepdim=True)
    out_mean, out_std = out.mean(dim=(1, 2, 3), keepdim=True), out.std(dim=(1, 2, 3), keepdim=True)
    return (out - out_mean) * (std / out_std.clamp_min(1e-12)) + mean


def couple_slices(x0: torch.Tensor, axis: int, *, periodic: bool = False) -> torch.Tensor:
    """Smooth x̂0 (C, d, h, w) along slicing ``axis`` (0, 1, 2) until its cross-slice lag-1
    correlation reaches the in-plane one; unchanged if it already does (or the axis is < 3 long)."""
    dim = axis + 1
    if x0.shape[dim] < 3:
        return x0
    target = sum(lag1_correlation(x0, d, periodic=periodic) for d in (1, 2, 3) if d != dim) / 2.0
    if lag1_correlation(x0, dim, periodic=periodic) >= target:
        return x0
    out = x0
    for sigma in SIGMAS:
        out = smooth_along(x0, dim, sigma, periodic=periodic)
        if lag1_correlation(out, dim, periodic=periodic) >= target:
            break
    return out


def coupled_output(schedule, sample: torch.Tensor, model_output: torch.Tensor, t: int, axis: int, *, periodic: bool = False) -> torch.Tensor:
    """The model output that corresponds to the slice-coupled x̂0 at (x_t = ``sample``, t)."""
    x0, _ = schedule.predict_x0_eps(sample, model_output, t)
    coupled = couple_slices(x0, axis, periodic=periodic)
    if coupled is x0:
        return model_output
    return schedule.output_for_x0(sample, coupled, int(t))
