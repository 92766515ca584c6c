"""Random square training patches from 2D label images and 2D slices of 3D volumes."""
from __future__ import annotations

import os

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from microlad.data._encoding import N_DIHEDRAL, dihedral_batch, onehot
from microlad.errors import InputError, ShapeError

__all__ = ["LabelImages", "PatchSampler", "as_label_images", "grid_tiles"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelImages:
    """Validated training inputs: label arrays that share one phase count.

    Attributes
    ----------
    arrays
        uint8 label arrays, each (Y, X) or (Z, Y, X), values 0..n_phases-1.
    n_phases
        Number of phases P shared by all inputs.
    grey_values
        Grey value of each phase in the source files (from :func:`microlad.io.read_image`),
        or ``None`` when the inputs were plain arrays.
    names
        A printable name per input (file path or ``"array 0"``), used in messages.
    """

    arrays: tuple[np.ndarray, ...]
    n_phases: int
    grey_values: tuple[float, ...] | None
    names: tuple[str, ...]

    def fingerprint(self) -> str:
        """sha256 over shapes and label bytes: identifies the training inputs in checkpoints."""
        h = hashlib.sha256()
        for a in self.arrays:
            h.update(repr(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def phase_fractions(self) -> np.ndarray:
        """Pixel-weighted fraction of each phase over all inputs, shape (P,)."""
        counts = np.zeros(self.n_phases, dtype=np.float64)
        for a in self.arrays:
            counts += np.bincount(a.ravel(), minlength=self.n_phases)[: self.n_phases]
        return counts / counts.sum()


def as_label_images(images: Any) -> LabelImages:
    """Validate training inputs and bring them to uint8 label arrays.

    ``images`` is one array / :class:`~microlad.io.Segmented` / file path, or a sequence of
    them; paths are read with :func:`microlad.io.read_image`.
    Arrays hold integer phases 0..P-1 in (Y, X) or (Z, Y, X). The phase count of an input
    is ``len(grey_values)`` for a Segmented and ``max + 1`` for an array; it must be the
    same for every input (:class:`InputError` otherwise).
    """
    if isinstance(images, (np.ndarray, torch.Tensor, str, os.PathLike)) or hasattr(images, "labels"):
        items = [images]
    else:
        try:
            items = list(images)
        except TypeError:
            raise InputError(f"expected a label array or a list of them, got {type(images).__name__}") from None
    if not items:
        raise InputError("no training images given; pass at least one segmented 2D image or 3D volume")

    arrays: list[np.ndarray] = []
    names: list[str] = []
    counts: list[int] = []
    greys: list[tuple[float, ...] | None] = []
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            from microlad.io import read_image

            item = read_image(item)
        grey = None
        name = f"array {i}"
        if hasattr(item, "labels"):
            grey = tuple(float(g) for g in item.grey_values) if getattr(item, "grey_values", None) is not None else None
            if getattr(item, "source", None):
                name = str(item.source)
            arr = item.labels
        else:
            arr = item
        arr = arr.detach().cpu().numpy() if isinstance(arr, torch.Tensor) else np.asarray(arr)
        arr = np.squeeze(arr)
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        if not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"{name}: expected integer phase labels, got dtype {arr.dtype}; segment it first (microlad.io.read_image does)")
        if arr.ndim not in (2, 3):
            raise ShapeError(f"{name}: expected a 2D image (Y, X) or 3D volume (Z, Y, X), got shape {arr.shape}")
        if arr.size == 0:
            raise ShapeError(f"{name}: empty array of shape {arr.shape}")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise InputError(f"{name}: labels span {lo}..{hi}; expected phases 0..P-1 (P <= 256)")
        n = len(grey) if grey is not None else hi + 1
        if hi >= n:
            raise InputError(f"{name}: label {hi} exceeds its {n} grey values")
        arrays.append(np.ascontiguousarray(arr, dtype=np.uint8))
        names.append(name)
        counts.append(n)
        greys.append(grey)

    if len(set(counts)) > 1:
        desc = ", ".join(f"{nm}: {c}" for nm, c in zip(names, counts))
        raise InputError(f"inputs have different phase counts ({desc}); segment all images into the same phases")
    n_phases = counts[0]
    if n_phases < 2:
        raise InputError(f"{names[0]}: only one phase found; training needs at least two phases")
    known = [g for g in greys if g is not None]
    if known and any(g != known[0] for g in known):
        log.warning("inputs have different grey values per phase (%s); using %s", known, known[0])
    for nm, a in zip(names, arrays):
        present = np.bincount(a.ravel(), minlength=n_phases)
        missing = [p for p in range(n_phases) if present[p] == 0]
        if missing:
            log.warning("%s: phase(s) %s do not occur", nm, missing)
    return LabelImages(tuple(arrays), n_phases, known[0] if known else None, tuple(names))


def tile_starts(length: int, patch: int) -> np.ndarray:
    """Starts of the fewest ``patch``-wide tiles that cover ``length`` pixels: ``ceil(length /
    patch)`` tiles spread evenly from 0 to ``length - patch``. When ``length`` is a multiple
    of ``patch`` they do not overlap; otherwise neighbours overlap by less than a patch, so
    every pixel is in one or two tiles. Empty when ``length < patch``."""
    if length < patch:
        return np.zeros(0, dtype=np.int64)
    n = -(-length // patch)
    return np.round(np.linspace(0, length - patch, n)).astype(np.int64)


def grid_tiles(planes: np.ndarray, patch: int) -> np.ndarray:
    """``patch`` × ``patch`` tiles covering the whole of a (H, W) image or of each (H, W)
    plane of an (N, H, W) stack: (n, patch, patch). Tile starts per axis from
    :func:`tile_starts`: a regular non-overlapping grid when the sides are multiples of
    ``patch`` (every pixel in exactly one tile), otherwise the fewest tiles that reach every
    pixel (a grid anchored at the origin would leave out the last ``H mod patch`` rows,
    e.g. 36 % of each axis of a 100² slice)."""
    arr = np.asarray(planes)
    arr = arr[None] if arr.ndim == 2 else arr
    win = np.lib.stride_tricks.sliding_window_view(arr, (patch, patch), axis=(1, 2))
    ys, xs = tile_starts(arr.shape[1], patch), tile_starts(arr.shape[2], patch)
    return win[:, ys[:, None], xs[None, :]].reshape(-1, patch, patch)  # only the chosen tiles are copied


class PatchSampler:
    """Draws random square label patches (optionally augmented by D4) from training inputs.

    2D inputs contribute patches from the image itself; 3D volumes contribute patches from
    2D slices along all three axes (axes whose slices are smaller than the patch are
    skipped with a warning). A patch source (image, or volume + axis) is picked with
    probability proportional to its number of pixels (slices × slice area), then a slice
    and an offset uniformly.

    Every pixel is drawn equally often: each plane is extended by half a patch on every
    side with its mirror image (``numpy.pad(mode="symmetric")``) and offsets are uniform
    over the extended plane. Uniform offsets inside the image alone would cover a pixel
    at the border once per axis and a central one ``patch`` times, so a small image's
    centre would dominate what the model learns (on the 256² carbonate image the centre-
    weighted patches had 10 % more pore than the image). With the mirror, a pixel within
    half a patch of the border is covered ``patch + 1`` times instead of ``patch``. With ``augment=True`` (default) each patch gets one of the
    eight dihedral symmetries uniformly at random; turn it off for anisotropic materials.

    Sampling is vectorised (one gather per source and one transform per symmetry) and
    reproducible: every random number comes from the ``torch.Generator`` passed in, and
    each call draws the same amount of random numbers for a given ``n``.

    Parameters
    ----------
    images
        Anything :func:`as_label_images` accepts, or a :class:`LabelImages`.
    patch
        Side of the square patches in pixels.
    augment
        Apply random dihedral symmetries.
    """

    def __init__(self, images: Any, *, patch: int = 64, augment: bool = True) -> None:
        self.images = images if isinstance(images, LabelImages) else as_label_images(images)
        if patch < 1:
            raise InputError(f"patch size must be positive, got {patch}")
        self.patch = int(patch)
        self.augment = bool(augment)
        self.n_phases = self.images.n_phases
        self._sources: list[np.ndarray] = []  # each a (n_slices, h+1, w+1, p, p) window view of the padded plane
        self._planes: list[np.ndarray] = []  # each (n_slices, h, w), unpadded (the tiles' source)
        weights: list[float] = []
        self.descriptions: list[str] = []
        for name, arr in zip(self.images.names, self.images.arrays):
            if arr.ndim == 2:
                if min(arr.shape) < patch:
                    raise ShapeError(f"{name}: image {arr.shape[0]}x{arr.shape[1]} is smaller than the patch size {patch}; use a smaller --patch or a larger image")
                planes = [arr[None]]
                self.descriptions.append(name)
            else:
                planes = []
                for axis in range(3):
                    if min(s for a, s in enumerate(arr.shape) if a != axis) >= patch:
                        planes.append(np.moveaxis(arr, axis, 0))
                        self.descriptions.append(f"{name} (slices normal to axis {axis})")
                if not planes:
                    raise ShapeError(f"{name}: no slice of volume {arr.shape} holds a {patch}x{patch} patch; use a smaller --patch")
                if len(planes) < 3:
                    log.warning("%s: slices along %d of 3 axes are smaller than the patch %d and are not used", name, 3 - len(planes), patch)
            half = patch // 2
            for plane in planes:
                # view of every patch position: [slice, y0, x0] -> (p, p) patch, over the plane
                # mirrored by half a patch at its borders (uniform pixel coverage, see above)
                padded = np.pad(plane, ((0, 0), (half, half), (half, half)), mode="symmetric")
                self._sources.append(np.lib.stride_tricks.sliding_window_view(padded, (patch, patch), axis=(1, 2)))
                self._planes.append(plane)
                weights.append(float(arr.size))
        w = torch.tensor(weights, dtype=torch.float64)
        self._weights = w / w.sum()
        self._dims = torch.tensor([s.shape[:3] for s in self._sources], dtype=torch.float64)

    def __repr__(self) -> str:
        return f"PatchSampler({len(self._sources)} sources, patch={self.patch}, n_phases={self.n_phases}, augment={self.augment})"

    def sample_labels(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random label patches, uint8 tensor (n, patch, patch)."""
        src = torch.multinomial(self._weights, n, replacement=True, generator=generator)
        u = torch.rand((n, 3), generator=generator, dtype=torch.float64)
        ks = torch.randint(0, N_DIHEDRAL, (n,), generator=generator).numpy()
        # slice index, y0, x0 = floor(u * count); the clamp guards u * count rounding up to count
        dims = self._dims[src]
        idx = torch.minimum((u * dims).long(), dims.long() - 1).numpy()
        src = src.numpy()
        out = np.empty((n, self.patch, self.patch), dtype=np.uint8)
        for j in np.unique(src):  # one vectorised gather per source
            sel = np.nonzero(src == j)[0]
            out[sel] = self._sources[j][idx[sel, 0], idx[sel, 1], idx[sel, 2]]
        if self.augment:
            out = dihedral_batch(out, ks)
        return torch.from_numpy(out)

    def tile_labels(self, max_n: int, generator: torch.Generator) -> np.ndarray:
        """``patch`` × ``patch`` tiles covering every source plane (:func:`grid_tiles`), uint8 (n, patch, patch).

        Random patch offsets cover the pixels near an image's centre more often than those
        near its border (a pixel at the border lies in one offset per axis, a central one in
        ``patch``), which biases statistics on small images. Tiles cover every pixel once
        (twice where a side is not a multiple of ``patch`` and neighbouring tiles overlap),
        so their mean statistics are the images' own (in the patch-size convention). When there are
        more than ``max_n`` tiles, ``max_n`` of them are drawn uniformly without replacement
        (with ``generator``). No augmentation (the statistics are rotation-averaged anyway).
        """
        tiles = [grid_tiles(plane, self.patch) for plane in self._planes]
        counts = [len(t) for t in tiles]
        total = sum(counts)
        if total <= max_n:
            return np.ascontiguousarray(np.concatenate(tiles))
        pick = np.sort(torch.randperm(total, generator=generator)[:max_n].numpy())
        offsets = np.cumsum([0] + counts)
        out = np.empty((max_n, self.patch, self.patch), dtype=np.uint8)
        for j, t in enumerate(tiles):
            sel = (pick >= offsets[j]) & (pick < offsets[j + 1])
            out[sel] = t[pick[sel] - offsets[j]]
        return out

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random one-hot patches, float32 tensor (n, P, patch, patch)."""
        return onehot(self.sample_labels(n, generator), self.n_phases, dim=1)
