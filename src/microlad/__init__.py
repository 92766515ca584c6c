"""microlad: 2D micrographs to statistically equivalent 3D microstructures (MicroLad).

Pipeline (one subpackage per stage)::

    io → descriptors → physics → models → diffusion → data/training → reconstruct → guidance → evaluate → cli

Top-level shortcuts (imported lazily so ``import microlad`` stays light)::

    microlad.read_image(path)              # segmented image/volume + phase mapping
    microlad.properties(labels)            # descriptor report (dict)
    microlad.train(images, out_dir, ...)   # VAE + latent DDPM on 2D patches
    microlad.load_model(model_dir)         # -> MicroladModel; .reconstruct(shape, n=1, seed=0),
                                           #    .generate(shape, targets={...}, n=1, seed=0)
"""
from __future__ import annotations

from typing import Any

from microlad._version import __version__
from microlad.errors import MicroladError

_LAZY = {
    "read_image": ("microlad.io", "read_image"),
    "write_volume": ("microlad.io", "write_volume"),
    "properties": ("microlad.evaluate", "properties"),
    "load_model": ("microlad.model", "load_model"),
    "train": ("microlad.training", "train"),
}

__all__ = ["__version__", "MicroladError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'microlad' has no attribute {name!r}")
