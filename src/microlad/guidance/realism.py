"""Realism check: VAE round-trip pixel accuracy of a volume's slices.

A slice the VAE has learned to represent comes back almost unchanged from encode →
decode → argmax; off-manifold slices (noise, artefacts) do not. The score is the mean
pixel accuracy over every ``every``-th slice normal to each axis.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from microlad.reconstruct import to_slices
from microlad.reconstruct.decode import decode_slices, encode_slices

__all__ = ["roundtrip_accuracy"]


@torch.inference_mode()
def roundtrip_accuracy(vae, labels: np.ndarray, *, every: int = 4) -> dict[str, float]:
    """{"z", "y", "x", "mean"}: pixel accuracy of encode (posterior mean) → decode → argmax
    of every ``every``-th slice normal to each axis of ``labels`` (Z, Y, X)."""
    device = next(vae.parameters()).device
    lab = torch.as_tensor(np.ascontiguousarray(labels), dtype=torch.long, device=device)
    onehot = F.one_hot(lab, vae.config.n_phases).permute(3, 0, 1, 2).float()
    out = {}
    for a, name in enumerate("zyx"):
        sl = to_slices(onehot, a)[::every]
        rec = decode_slices(vae, encode_slices(vae, sl)).argmax(1)
        out[name] = float((rec == sl.argmax(1)).float().mean())
    out["mean"] = float(np.mean([out[k] for k in "zyx"]))
    return out
