"""One-hot encoding and the eight dihedral symmetries of a square."""
from __future__ import annotations

import numpy as np
import torch

from microlad.errors import InputError, ShapeError

__all__ = ["onehot", "from_onehot", "dihedral", "dihedral_inverse", "dihedral_batch", "N_DIHEDRAL"]

#: Number of elements of the dihedral group D4 (4 rotations, 4 reflections).
N_DIHEDRAL = 8


def onehot(labels: np.ndarray | torch.Tensor, n_phases: int, *, dim: int | None = None) -> torch.Tensor:
    """One-hot encode integer phase labels.

    Parameters
    ----------
    labels
        Integer array of phases 0..P-1: (H, W), a batch (B, H, W), or a volume (Z, Y, X).
    n_phases
        Number of phases P (>= 2).
    dim
        Position of the new phase axis in the output. Default: 0 for 2D input
        ((H, W) -> (P, H, W)), 1 for 3D and higher input ((B, H, W) -> (B, P, H, W)).
        Pass ``dim=0`` for a volume to get (P, Z, Y, X).

    Returns
    -------
    torch.Tensor
        float32 tensor with exactly one 1 per pixel along ``dim``, on the input's device.
    """
    if isinstance(labels, torch.Tensor):
        t = labels
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise InputError(f"onehot expects integer phase labels, got dtype {t.dtype}; segment the image first")
    else:
        t = None
        a = np.asarray(labels)
        if not np.issubdtype(a.dtype, np.integer):
            raise InputError(f"onehot expects integer phase labels, got dtype {a.dtype}; segment the image first")
    if n_phases < 2:
        raise InputError(f"n_phases must be >= 2, got {n_phases}")
    if t is not None and t.device.type == "cpu":
        a, t = t.numpy(), None  # numpy is much faster than torch for this on a busy CPU
    ndim = t.ndim if t is not None else a.ndim
    if ndim < 2:
        raise ShapeError(f"onehot expects an array with >= 2 dimensions, got shape {tuple((t if t is not None else a).shape)}")
    if dim is None:
        dim = 0 if ndim == 2 else 1
    shape = [1] * (ndim + 1)
    shape[dim] = n_phases
    if t is None:
        if a.size:
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 or hi >= n_phases:
                raise InputError(f"labels span {lo}..{hi} but n_phases={n_phases}; labels must be 0..{n_phases - 1}")
        out = np.expand_dims(a, dim) == np.arange(n_phases, dtype=a.dtype).reshape(shape)
        return torch.from_numpy(out.astype(np.float32))
    if t.numel():
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= n_phases:
            raise InputError(f"labels span {lo}..{hi} but n_phases={n_phases}; labels must be 0..{n_phases - 1}")
    classes = torch.arange(n_phases, device=t.device, dtype=t.dtype).reshape(shape)
    return (t.unsqueeze(dim) == classes).to(torch.float32)


def from_onehot(x: torch.Tensor, *, dim: int | None = None) -> torch.Tensor:
    """Inverse of :func:`onehot` (also maps probabilities/logits to labels): argmax along ``dim``.

    ``dim`` defaults as in :func:`onehot`, judged from the *output* rank: 0 for (P, H, W),
    1 for (B, P, H, W). Returns uint8 labels.
    """
    if dim is None:
        dim = 0 if x.ndim == 3 else 1
    return x.argmax(dim=dim).to(torch.uint8)


def dihedral(x: np.ndarray | torch.Tensor, k: int):
    """Apply the k-th element (k = 0..7) of D4 to the last two axes of ``x``.

    k = 0..3 rotate by k·90° (counter-clockwise, as :func:`torch.rot90`); k = 4..7 rotate by
    (k-4)·90° and then transpose the last two axes (a reflection). k = 0 is the identity.
    The eight results of a patch without symmetry are all distinct. Works on numpy arrays
    and torch tensors; the square-ness of the last two axes is only needed for batching.
    """
    k = int(k)
    if not 0 <= k < N_DIHEDRAL:
        raise InputError(f"dihedral index must be 0..7, got {k}")
    if isinstance(x, torch.Tensor):
        y = torch.rot90(x, k % 4, dims=(-2, -1))
        return y.transpose(-2, -1) if k >= 4 else y
    y = np.rot90(x, k % 4, axes=(-2, -1))
    return np.swapaxes(y, -2, -1) if k >= 4 else y


def dihedral_inverse(x: np.ndarray | torch.Tensor, k: int):
    """Undo :func:`dihedral` with the same ``k`` (reflections are their own inverse)."""
    k = int(k)
    if k >= 4:
        return dihedral(x, k)
    return dihedral(x, (4 - k) % 4)


def dihedral_batch(x: np.ndarray | torch.Tensor, ks: np.ndarray | torch.Tensor):
    """Apply a different D4 element to each item of a batch of square images.

    ``x`` has shape (B, ..., H, H) (numpy or torch) and ``ks`` (B,) integers 0..7.
    Vectorised: one rotation/transposition per distinct k (at most eight array ops), no
    per-pixel loops.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ShapeError(f"dihedral_batch needs square images, got {tuple(x.shape[-2:])}")
    ks = ks.cpu().numpy() if isinstance(ks, torch.Tensor) else np.asarray(ks)
    out = torch.empty_like(x) if isinstance(x, torch.Tensor) else np.empty_like(x)
    for k in np.unique(ks):
        sel = np.nonzero(ks == k)[0]
        if isinstance(x, torch.Tensor):
            sel = torch.from_numpy(sel).to(x.device)
        out[sel] = dihedral(x[sel], int(k))
    return out
