"""Readers for TIFF (pages and stacks), PNG, NPY and NPZ, and the grey → phase mapping."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from microlad.errors import InputError, ShapeError

MAX_PHASES = 8
"""More distinct grey values than this means the image is not segmented (pass thresholds)."""

_TIFF = {".tif", ".tiff"}
_RASTER = {".png", ".bmp", ".jpg", ".jpeg"}


@dataclass(frozen=True)
class Segmented:
    """A segmented image or volume.

    Attributes
    ----------
    labels : uint8 array, (Y, X) or (Z, Y, X), phases 0..P-1.
    grey_values : original grey value of each phase (ascending). With thresholds, the
        mean grey value of the pixels assigned to the phase.
    source : file it was read from ('' for in-memory arrays).
    thresholds : the thresholds used, if any.
    """

    labels: np.ndarray
    grey_values: tuple[float, ...]
    source: str = ""
    thresholds: tuple[float, ...] | None = field(default=None)

    @property
    def n_phases(self) -> int:
        return len(self.grey_values)

    @property
    def ndim(self) -> int:
        return self.labels.ndim


def read_image(path: str | Path, *, key: str | None = None, thresholds: Sequence[float] | None = None) -> Segmented:
    """Read a segmented 2D image or 3D volume and map its grey values to phases.

    Parameters
    ----------
    path : .tif/.tiff (single page or stack), .png/.bmp/.jpg, .npy, or .npz.
    key : array name inside an .npz (default: the first array).
    thresholds : ascending grey-value thresholds for an unsegmented image; phase i holds
        values in [t_{i-1}, t_i). Required when the image has more than 8 grey values.

    Singleton axes are dropped. RGB(A) images are accepted only when all colour
    channels are equal. Raises :class:`~microlad.errors.InputError` with a one-line
    message on anything unusable.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an image or volume file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    try:
        if suffix in _TIFF:
            arr = _read_tiff(path)
        elif suffix in _RASTER:
            arr = _read_raster(path)
        elif suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            arr = _read_npz(path, key)
        else:
            raise InputError(f"{path}: unsupported file type '{suffix}' (use .tif, .png, .npy or .npz)")
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InputError(f"{path}: cannot read file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'corrupt'})") from exc
    return map_phases(arr, thresholds=thresholds, source=str(path))


def map_phases(arr: np.ndarray, *, thresholds: Sequence[float] | None = None, source: str = "") -> Segmented:
    """Map an array of grey values to labels 0..P-1 in ascending grey order."""
    name = source or "array"
    arr = np.asarray(arr)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "uif":
        raise InputError(f"{name}: unsupported data type {arr.dtype} (expected integer or float grey values)")
    if arr.size == 0:
        raise InputError(f"{name}: image is empty")
    arr = np.squeeze(arr)
    if arr.ndim not in (2, 3):
        raise ShapeError(f"{name}: expected a 2D image or 3D volume, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"{name}: image contains NaN or infinite values")
    if thresholds is not None:
        return _threshold(arr, thresholds, name, source)
    values, labels = _unique_labels(arr)
    if len(values) > MAX_PHASES:
        raise InputError(
            f"{name}: {len(values)} distinct grey values (more than {MAX_PHASES}); segment it into phases first "
            "(`microlad properties` also takes grey thresholds: --threshold T, repeated)"
        )
    if len(values) < 2:
        raise InputError(f"{name}: only one phase (grey value {values[0]:g}); need at least two phases")
    return Segmented(labels=labels, grey_values=tuple(float(v) for v in values), source=source)


_CHUNK = 1 << 24  # elements per chunk of the label mapping (bounded temporaries)
_LUT_RANGE = 1 << 16  # integer grey ranges up to this are mapped by a lookup table


def _unique_labels(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Sorted distinct values of ``arr`` and, when there are at most ``MAX_PHASES``, the
    uint8 label of every element (its rank among the values); otherwise None.

    Integer arrays with a small value range go through a lookup table in chunks (no
    8-byte index copy of the whole array, as ``np.unique(return_inverse=True)`` makes).
    """
    flat = arr.reshape(-1)
    if arr.dtype.kind in "ui":
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo < _LUT_RANGE and -(2**62) < lo and hi < 2**62:
            counts = np.zeros(hi - lo + 1, dtype=np.int64)
            for start in range(0, flat.size, _CHUNK):
                chunk = flat[start : start + _CHUNK].astype(np.int64) - lo
                counts += np.bincount(chunk, minlength=hi - lo + 1)
            present = np.flatnonzero(counts)
            values = (present + lo).astype(arr.dtype)
            if len(values) > MAX_PHASES:
                return values, None
            lut = np.zeros(hi - lo + 1, dtype=np.uint8)
            lut[present] = np.arange(len(present), dtype=np.uint8)
            labels = np.empty(flat.size, dtype=np.uint8)
            for start in range(0, flat.size, _CHUNK):
                labels[start : start + _CHUNK] = lut[flat[start : start + _CHUNK].astype(np.int64) - lo]
            return values, labels.reshape(arr.shape)
    values, inverse = np.unique(arr, return_inverse=True)
    if len(values) > MAX_PHASES:
        return values, None
    return values, inverse.reshape(arr.shape).astype(np.uint8)


def check_patch_size(labels: np.ndarray, patch: int, *, name: str = "image") -> None:
    """Raise if any in-plane side of ``labels`` is smaller than ``patch``."""
    sides = labels.shape[-2:] if labels.ndim == 2 else labels.shape
    if min(sides) < patch:
        raise ShapeError(f"{name}: shape {tuple(labels.shape)} is smaller than the requested patch {patch}x{patch}")


def _threshold(arr: np.ndarray, thresholds: Sequence[float], name: str, source: str) -> Segmented:
    t = np.asarray(list(thresholds), dtype=float)
    if t.ndim != 1 or len(t) == 0 or not np.all(np.isfinite(t)):
        raise InputError(f"{name}: thresholds must be a non-empty list of finite numbers, got {list(thresholds)}")
    if np.any(np.diff(t) <= 0):
        raise InputError(f"{name}: thresholds must be strictly ascending, got {t.tolist()}")
    if len(t) + 1 > MAX_PHASES:
        raise InputError(f"{name}: {len(t)} thresholds give more than {MAX_PHASES} phases")
    labels = np.digitize(arr, t).astype(np.uint8)
    present = np.unique(labels)
    if len(present) < 2:
        raise InputError(f"{name}: thresholds {t.tolist()} put every pixel in one phase")
    if len(present) != len(t) + 1:
        raise InputError(f"{name}: thresholds {t.tolist()} leave phase(s) {sorted(set(range(len(t) + 1)) - set(present.tolist()))} empty")
    flat = labels.ravel()
    sums = np.bincount(flat, weights=arr.ravel().astype(float), minlength=len(t) + 1)
    counts = np.bincount(flat, minlength=len(t) + 1)
    grey = tuple(float(s / c) for s, c in zip(sums, counts))
    return Segmented(labels=labels, grey_values=grey, source=source, thresholds=tuple(float(v) for v in t))


def _collapse_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    channels = arr[..., :3]
    if not (np.array_equal(channels[..., 0], channels[..., 1]) and np.array_equal(channels[..., 0], channels[..., 2])):
        raise InputError(f"{name}: RGB image whose colour channels differ; save the segmentation as a greyscale or label image")
    return channels[..., 0]


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.pages:
            raise InputError(f"{path}: TIFF has no pages")
        page = tif.pages[0]
        rgb = getattr(page, "photometric", None) == tifffile.PHOTOMETRIC.RGB or (page.samplesperpixel or 1) > 1
        arr = tif.asarray()
    if rgb and arr.shape[-1] in (3, 4):
        arr = _collapse_rgb(arr, str(path))
    return arr


def _read_raster(path: Path) -> np.ndarray:
    from skimage import io as skio

    arr = np.asarray(skio.imread(path))
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = _collapse_rgb(arr, str(path))
    elif arr.ndim == 3 and arr.shape[-1] == 2:  # grey + alpha
        arr = arr[..., 0]
    return arr


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as npz:
        names = list(npz.files)
        if not names:
            raise InputError(f"{path}: .npz archive holds no arrays")
        if key is None:
            key = names[0]
        elif key not in names:
            raise InputError(f"{path}: no array named '{key}' (available: {', '.join(names)})")
        return npz[key]
