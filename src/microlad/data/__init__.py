"""Training data: random square patches of segmented images, one-hot encoding, D4 augmentation.

>>> import numpy as np, torch
>>> from microlad.data import PatchSampler
>>> img = (np.random.default_rng(0).random((128, 128)) > 0.5).astype(np.uint8)
>>> x = PatchSampler(img, patch=64).sample(8, torch.Generator().manual_seed(0))
>>> tuple(x.shape)
(8, 2, 64, 64)
"""
from microlad.data._encoding import N_DIHEDRAL, dihedral, dihedral_batch, dihedral_inverse, from_onehot, onehot
from microlad.data._patches import LabelImages, PatchSampler, as_label_images, grid_tiles

__all__ = [
    "N_DIHEDRAL",
    "LabelImages",
    "PatchSampler",
    "as_label_images",
    "dihedral",
    "dihedral_batch",
    "dihedral_inverse",
    "from_onehot",
    "grid_tiles",
    "onehot",
]
