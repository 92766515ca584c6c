"""Atomic writers: label volumes as uint8 TIFF plus a JSON sidecar."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from microlad._version import __version__
from microlad.errors import InputError, OutputExistsError


@contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Nothing is left behind on failure, so a reader never sees a half-written file.
    Raises :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (pass --overwrite to replace it)")
    if path.exists() and path.is_dir():
        raise InputError(f"{path}: is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    mode = _file_mode()
    os.chmod(tmp_path, mode)  # mkstemp makes 0600; outputs get normal permissions
    try:
        yield tmp_path
        # again: writers that replace the file (safetensors' save_file) create it 0600
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _file_mode() -> int:
    """``0o666`` less the process umask (what ``open(..., 'w')`` would give)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_dir(directory: Path, what: str) -> None:
    """Raise unless a file can be created in the existing ``directory`` (tries one)."""
    try:
        probe = tempfile.mkdtemp(prefix=".microlad-probe-", dir=directory)
    except OSError as exc:
        raise InputError(f"{what}: cannot create files in {directory} ({exc.strerror or exc})") from None
    os.rmdir(probe)


def check_output_dir(path: str | Path, *, what: str | None = None) -> Path:
    """Check, before any work, that the folder ``path`` exists or can be created.

    Raises :class:`InputError` when ``path`` is an existing non-folder, when one of its
    parents is a file, or when its nearest existing parent does not accept new files
    (read-only, ``/proc``...). Creates nothing (the probe it writes is removed).
    """
    path = Path(path)
    what = what or str(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what}: exists and is not a folder" if what == str(path) else f"{what}: {path} is a file, not a folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise InputError(f"{what}: cannot create a folder under {base}, which is a file")
    _probe_dir(base, what)
    return path


def check_output_file(path: str | Path, *, overwrite: bool = False) -> Path:
    """Check, before any work, that the file ``path`` can be written (atomically).

    Raises :class:`OutputExistsError` when it exists and ``overwrite`` is False, and
    :class:`InputError` when it is a folder or its folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a file name")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (pass --overwrite to replace it)")
    check_output_dir(path.parent, what=str(path))
    return path


def write_json(path: str | Path, obj: Any, *, overwrite: bool = False) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=json_default) + "\n")
    return path


def sidecar_path(path: str | Path) -> Path:
    """JSON sidecar of a volume file: ``volume_000.tif`` → ``volume_000.json``."""
    return Path(path).with_suffix(".json")


def write_volume(
    path: str | Path,
    labels: np.ndarray,
    *,
    grey_values: tuple[float, ...] | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a label volume (Z, Y, X) or image (Y, X) as uint8 TIFF plus a JSON sidecar.

    The sidecar records the phase mapping (label → original grey value), shape, axis
    convention, microlad version and any ``metadata`` given (seed, command, config...).
    Both files are written atomically; existing files are kept unless ``overwrite``.
    """
    path = Path(path)
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InputError(f"{path}: expected a 2D or 3D label array, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise InputError(f"{path}: labels must lie in 0..255")
    side = sidecar_path(path)
    if not overwrite:
        for p in (path, side):
            if p.exists():
                raise OutputExistsError(f"{p}: already exists (pass --overwrite to replace it)")
    import tifffile

    n_phases = int(labels.max()) + 1 if labels.size else 0
    if grey_values is None:
        grey_values = tuple(float(i) for i in range(n_phases))
    info = {
        "file": path.name,
        "shape": list(labels.shape),
        "axes": "ZYX" if labels.ndim == 3 else "YX",
        "dtype": "uint8",
        "phases": {str(i): {"grey_value": g} for i, g in enumerate(grey_values)},
        "microlad_version": __version__,
        **(metadata or {}),
    }
    with atomic_path(path, overwrite=True) as tmp:
        tifffile.imwrite(tmp, labels.astype(np.uint8), photometric="minisblack", metadata={"axes": info["axes"]})
        write_json(side, info, overwrite=True)
    return path


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` hook: numpy and torch values and paths → JSON values."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "detach") and hasattr(obj, "numpy"):  # torch.Tensor, without importing torch here
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()  # numpy scalars and 0-d arrays become Python scalars
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
