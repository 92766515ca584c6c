"""Differentiable effective diffusivity of a soft diffusivity field (adjoint gradient).

Forward: solve ``K(D) c = b(D)`` (see ``_operator``) and return
``D_eff = (L / A) E(c; D)`` where ``E`` is the discrete dissipation (sum over faces of
``g (dc)^2``, Dirichlet half-faces included). At the solution ``E`` equals the flux ``J``
through the inlet face (Thomson's principle), and evaluated at an approximate solution
its error is second order in the error of ``c``.

Backward (adjoint method): take ``J(c, D) = sum_inlet g_b (1 - c_i)`` subject to
``K c = b``. The adjoint equation ``K lambda = dJ/dc = -b`` has the same symmetric
operator and, up to sign, the same right-hand side as the primal, so ``lambda = -c``:
the adjoint solve *is* the primal solve (for the direct path the one factorisation
serves both). Substituting gives

    dJ/dD = dJ/dD|_c - lambda^T (dK/dD c - db/dD) = dE/dD|_c,

the explicit derivative of the dissipation at the primal field (``_operator.
dissipation_gradient``): per face ``g = 2 a b / (a + b)``, ``dg/da = 2 b^2 / (a + b)^2``;
per Dirichlet half-face ``dg/dD = 2``. Memory is O(voxels) (the field ``c`` per sample),
no solver iterations are unrolled, and no second solve is needed.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from microlad.errors import InputError, ShapeError
from microlad.physics._linsolve import choose_method, factorize, solve_spd
from microlad.physics._operator import assemble, dissipation, dissipation_gradient
from microlad.descriptors._validate import check_axis

__all__ = ["WarmStart", "effective_diffusivity"]


class WarmStart:
    """The concentration fields of the last solve, kept to start the next one from.

    Pass the same instance to successive :func:`effective_diffusivity` calls on fields
    that change little between calls (an optimisation loop: guidance's transport terms
    keep one per term). Each call starts PCG from the stored field of the same batch
    index and shape (a cold start otherwise) and stores its own. The result is the same
    to the solver's tolerance, with fewer iterations: measured on a 128³ binary pore field
    (D = 1e-3 / 1) with 1 % / 5 % of its interface voxels flipped, 15 → 5 / 9 PCG
    iterations, about a third of the solve's time (the rest is assembly and the AMG
    setup, which depend on the new field and are rebuilt; BENCHMARKS.md, guidance).
    """

    def __init__(self) -> None:
        self.fields: list[np.ndarray] = []

    def get(self, b: int, shape: tuple[int, ...]) -> np.ndarray | None:
        if b < len(self.fields) and self.fields[b].shape == shape:
            return self.fields[b]
        return None

    def put(self, fields: list[np.ndarray]) -> None:
        self.fields = list(fields)


def _solve_soft(D: np.ndarray, axis: int, periodic: bool, rtol: float, start: np.ndarray | None = None
                ) -> tuple[np.ndarray, float]:
    """Concentration field and D_eff for one field ``D > 0`` (float64); ``start``: a
    concentration field of the same shape to start the iterative solver from."""
    asm = assemble(D, axis, periodic)
    n = asm.matrix.shape[0]
    method = choose_method("auto", n, D.ndim)
    if method == "direct":
        x = factorize(asm.matrix).solve(asm.rhs)
    else:
        x = solve_spd(
            asm.matrix, asm.rhs, method=method, rtol=rtol, flux_rtol=max(rtol * 100, 1e-10),
            flux_imbalance=asm.flux_imbalance, x0=None if start is None else start.ravel()[asm.index],
        ).x
    c = asm.to_grid(x, 0.0)
    length = D.shape[axis]
    return c, dissipation(D, c, axis, periodic) * length / (D.size // length)


class EffectiveDiffusivityFunction(torch.autograd.Function):
    """``D (B, *spatial) -> D_eff (B,)``; see the module docstring for the gradient."""

    @staticmethod
    def forward(ctx, D: torch.Tensor, axis: int, periodic: bool, rtol: float,  # type: ignore[override]
                warm: WarmStart | None = None) -> torch.Tensor:
        Dn = D.detach().to(device="cpu", dtype=torch.float64).numpy()
        fields, out = [], []
        for b in range(Dn.shape[0]):
            start = warm.get(b, Dn[b].shape) if warm is not None else None
            c, d_eff = _solve_soft(Dn[b], axis, periodic, rtol, start)
            fields.append(c)
            out.append(d_eff)
        if warm is not None:
            warm.put(fields)
        ctx.save_for_backward(D)
        ctx.fields = fields
        ctx.axis, ctx.periodic = axis, periodic
        return torch.tensor(out, dtype=D.dtype, device=D.device)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (D,) = ctx.saved_tensors
        Dn = D.detach().to(device="cpu", dtype=torch.float64).numpy()
        go = grad_out.detach().to(device="cpu", dtype=torch.float64).numpy()
        length = Dn.shape[1 + ctx.axis]
        scale = length / (Dn[0].size // length)
        grad = np.zeros_like(Dn)
        for b in range(Dn.shape[0]):
            if go[b] != 0.0:
                grad[b] = (go[b] * scale) * dissipation_gradient(Dn[b], ctx.fields[b], ctx.axis, ctx.periodic)
        return torch.from_numpy(grad).to(dtype=D.dtype, device=D.device), None, None, None, None


def effective_diffusivity(
    D: torch.Tensor,
    *,
    axis: int,
    periodic: bool = False,
    batched: bool = False,
    rtol: float = 1e-8,
    warm_start: WarmStart | None = None,
) -> torch.Tensor:
    """Differentiable ``D_eff / D_bulk`` of a soft diffusivity field.

    Parameters
    ----------
    D : torch.Tensor
        Diffusivity relative to the bulk, strictly positive, float32 or float64:
        (Y, X) or (Z, Y, X), or with ``batched=True`` (B, Y, X) or (B, Z, Y, X). Typically
        ``D = eps + (1 - eps) * p`` with the probability ``p`` of the conducting phase
        and a floor ``eps`` (e.g. 1e-3) so that every cell conducts.
    axis : int
        Transport axis among the spatial axes (0 = first spatial axis).
    periodic : bool
        Periodic instead of no-flux lateral boundaries.
    batched : bool
        Treat the leading axis as a batch of independent fields (2D slices for guidance).
    rtol : float
        Relative residual target of the iterative (AMG-PCG) path; small systems
        (<= 65,536 cells in 2D, <= 8,000 in 3D) are factorised directly (exact).
    warm_start : WarmStart, optional
        Start the iterative solver from the fields this object holds from the previous
        call (same batch index and shape) and store this call's fields in it: for a loop
        whose field changes a little per call (:class:`WarmStart`).

    Returns
    -------
    torch.Tensor
        Shape () or, batched, (B,); dtype and device of ``D``. Differentiable w.r.t.
        ``D`` (adjoint method, one solve per field, see ``microlad.physics._autograd``).
        The tortuosity factor of a field is ``D.mean() / D_eff``.

    Notes
    -----
    Computed on the CPU in float64 (SuperLU for small systems, AMG-PCG otherwise); a CUDA
    tensor is copied to the host and the result copied back.
    """
    if not isinstance(D, torch.Tensor):
        raise InputError(f"D must be a torch.Tensor, got {type(D).__name__}; use solve_field for numpy arrays")
    if not D.is_floating_point():
        raise InputError(f"D must be a float32/float64 tensor, got {D.dtype}")
    spatial = D.ndim - 1 if batched else D.ndim
    if spatial not in (2, 3) or min(D.shape, default=0) < 1:
        want = "(B, Y, X) or (B, Z, Y, X)" if batched else "(Y, X) or (Z, Y, X)"
        raise ShapeError(f"D must have shape {want}, got {tuple(D.shape)}")
    ax = check_axis(axis, spatial)
    if not (isinstance(rtol, (int, float)) and 0.0 < rtol < 1.0):
        raise InputError(f"rtol must be a float in (0, 1), got {rtol!r}")
    with torch.no_grad():
        if not bool(torch.isfinite(D).all()) or float(D.min()) <= 0.0:
            raise InputError(
                f"D must be finite and > 0 everywhere (got min {float(D.min()):.3g}); "
                "floor it, e.g. D = eps + (1 - eps) * p with eps = 1e-3"
            )
    Db = D if batched else D.unsqueeze(0)
    if warm_start is not None and not isinstance(warm_start, WarmStart):
        raise InputError(f"warm_start must be a WarmStart, got {type(warm_start).__name__}")
    out = EffectiveDiffusivityFunction.apply(Db, ax, bool(periodic), float(rtol), warm_start)
    return out if batched else out[0]

