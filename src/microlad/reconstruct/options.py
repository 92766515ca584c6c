"""How the batched 2D network calls over a volume's slices run: one frozen options object.

L-MPDD, decoding and refinement all cut a (C, Z, Y, X) volume into slices and run a 2D
network on batches of them. The settings those calls share travel together as a
:class:`SliceOptions` instead of as keywords threaded through every function.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from microlad.errors import InputError

__all__ = ["SliceOptions"]


@dataclass(frozen=True)
class SliceOptions:
    """Settings of slice-wise network calls.

    periodic : the volume is periodic: slices are padded circularly (wrap-around), and
        interpolation and coupling wrap across the borders; otherwise borders are mirrored.
    memory_budget : bytes of activations one batched network call may use; ``None``: the
        default of :data:`microlad.reconstruct._chunks.DEFAULT_MEMORY_BUDGET` (1 GiB).
    progress : show tqdm progress bars.
    device : where L-MPDD keeps the latent volume (``None``: CPU); decoding and refinement
        run where their input tensors are.
    """

    periodic: bool = False
    memory_budget: int | None = None
    progress: bool = False
    device: torch.device | str | None = None

    def __post_init__(self) -> None:
        if self.memory_budget is not None and (not isinstance(self.memory_budget, int) or self.memory_budget < 1):
            raise InputError(f"memory_budget must be a positive number of bytes, got {self.memory_budget!r}")

    @classmethod
    def merge(cls, options: SliceOptions | None = None, **keywords: Any) -> SliceOptions:
        """``options`` (default ``SliceOptions()``) with any of its fields given as keywords
        replaced; lets the public functions also take ``periodic=...`` etc. directly."""
        base = cls() if options is None else options
        if not isinstance(base, cls):
            raise InputError(f"options must be a SliceOptions, got {type(base).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(keywords) - names)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {unknown}; SliceOptions fields are {sorted(names)}")
        return dataclasses.replace(base, **keywords) if keywords else base
