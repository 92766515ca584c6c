"""Training: stage 1 categorical VAE, stage 2 latent DDPM, checkpoints and resume, torchrun/DDP.

>>> from microlad.training import train          # doctest: +SKIP
>>> model = train(labels, "runs/sofc", vae_steps=1500, ldm_steps=3000)  # doctest: +SKIP

Checkpoints are ``train_state.safetensors`` + ``train_state.json`` beside the model files
(no pickle); see :mod:`microlad.training._checkpoint` for the layout.
"""
from typing import Any

from microlad.training._options import (
    DEFAULT_BATCH,
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_LDM_STEPS,
    DEFAULT_PATCH,
    DEFAULT_VAE_STEPS,
    TrainOptions,
    lr_at,
)

__all__ = [
    "train",
    "TrainOptions",
    "lr_at",
    "load_train_state",
    "STATE_JSON",
    "STATE_TENSORS",
    "DEFAULT_PATCH",
    "DEFAULT_VAE_STEPS",
    "DEFAULT_LDM_STEPS",
    "DEFAULT_BATCH",
    "DEFAULT_CHECKPOINT_EVERY",
]

# torch-heavy parts are imported on first use, so `microlad --help` and the options
# module stay fast to import
_LAZY = {"train": "_loop", "load_train_state": "_checkpoint", "STATE_JSON": "_checkpoint", "STATE_TENSORS": "_checkpoint"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"microlad.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'microlad.training' has no attribute {name!r}")
