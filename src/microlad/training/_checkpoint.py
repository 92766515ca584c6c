"""Training-state checkpoints without pickle: ``train_state.safetensors`` + ``train_state.json``.

Layout
------
``train_state.safetensors`` holds every tensor, under flat names:

- ``vae/<param>``, ``unet/<param>``, ``ema/<param>``: module state dicts (unwrapped, so a
  checkpoint is the same whether 1 or N processes wrote it);
- ``opt_vae/state/<i>/<key>``, ``opt_unet/state/<i>/<key>``: optimizer per-parameter state
  (Adam ``step``, ``exp_avg``, ``exp_avg_sq``);
- ``rng/<name>``: ``torch.Generator`` states as uint8 tensors (one per rank for the
  per-rank data/noise generators).

Its safetensors header metadata carries, under ``microlad_train_state``, the JSON document
that is also written to ``train_state.json``: format tag and version, stage, step counters,
run settings, model configs, optimizer ``param_groups`` and non-tensor state, numpy
bit-generator states, running losses, timings and (after stage 1) the training statistics.

Both files are written to temporary names, fsynced and moved into place with
:func:`os.replace`, tensors first. The copy inside the safetensors header is authoritative:
if a process dies between the two renames, the JSON beside it is one checkpoint older and
is ignored with a warning.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from microlad.errors import CheckpointError
from microlad.io._write import json_default

__all__ = [
    "STATE_JSON",
    "STATE_TENSORS",
    "FORMAT",
    "VERSION",
    "atomic_write_bytes",
    "flatten_optimizer",
    "unflatten_optimizer",
    "save_train_state",
    "load_train_state",
    "has_train_state",
]

log = logging.getLogger(__name__)

STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"
FORMAT = "microlad-train-state"
VERSION = 1
_META_KEY = "microlad_train_state"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory + os.replace."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temporaries(out_dir: Path) -> None:
    """Delete temporary files a killed writer left behind (``.train_state.*.tmp`` etc.)."""
    for p in Path(out_dir).glob(".*.tmp"):
        try:
            p.unlink()
        except OSError:  # pragma: no cover - best effort
            pass


def flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``opt.state_dict()`` into flat tensors and a JSON-able structure."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}/state/{idx}/{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`: an optimizer ``state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    head = f"{prefix}/state/"
    for name, value in tensors.items():
        if name.startswith(head):
            idx, key = name[len(head):].split("/", 1)
            state.setdefault(int(idx), {})[key] = value
    for idx, extra in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(extra)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def save_train_state(out_dir: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Atomically write ``train_state.safetensors`` (+ embedded JSON) and ``train_state.json``."""
    out_dir = Path(out_dir)
    doc = {"format": FORMAT, "version": VERSION, **state}
    text = json.dumps(doc, indent=1, sort_keys=True, default=json_default)
    # safetensors refuses shared / non-contiguous storage: give every tensor its own copy
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    blob = st_save(flat, metadata={_META_KEY: text})
    atomic_write_bytes(out_dir / STATE_TENSORS, blob)
    atomic_write_bytes(out_dir / STATE_JSON, text.encode())


def has_train_state(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a training checkpoint (possibly a damaged one)."""
    return (Path(out_dir) / STATE_TENSORS).exists() or (Path(out_dir) / STATE_JSON).exists()


def load_train_state(out_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_train_state`.

    Raises :class:`CheckpointError` (one line) for a missing, truncated or foreign file.
    """
    out_dir = Path(out_dir)
    path = out_dir / STATE_TENSORS
    if not path.exists():
        raise CheckpointError(f"{path}: no training checkpoint here; start without --resume")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: unreadable training checkpoint ({first}); it is truncated or not microlad's - restart without --resume (and --overwrite)") from None
    text = meta.get(_META_KEY)
    if text is None:
        raise CheckpointError(f"{path}: not a microlad training checkpoint (no '{_META_KEY}' metadata); restart without --resume")
    try:
        state = json.loads(text)
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: corrupt training-state metadata; restart without --resume") from None
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {state.get('format')!r} is not {FORMAT!r}; restart without --resume")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: training-state version {state.get('version')} is not supported (expected {VERSION})")
    side = out_dir / STATE_JSON
    try:
        side_state = json.loads(side.read_text())
    except FileNotFoundError:
        log.warning("%s is missing; using the copy inside %s", side, STATE_TENSORS)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        raise CheckpointError(f"{side}: corrupt JSON (the tensor file is intact); delete it to resume from {STATE_TENSORS}") from None
    else:
        if side_state.get("checkpoint_id") != state.get("checkpoint_id"):
            log.warning("%s is from another checkpoint than %s (interrupted write); using the latter", side, STATE_TENSORS)
    return tensors, state
