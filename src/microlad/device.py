"""Device selection shared by the model, training and the CLI."""
from __future__ import annotations

import torch

from microlad.errors import InputError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA if available else CPU; otherwise check that the device exists here.

    Raises :class:`~microlad.errors.InputError` for an unknown name or an unavailable
    backend (CUDA, MPS).
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {str(dev)!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {str(dev)!r} requested but MPS is not available; use 'cpu' or 'auto'")
    return dev
