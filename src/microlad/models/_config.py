"""Dataclass <-> JSON-dict helpers shared by the model configs."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from microlad.errors import InputError

T = TypeVar("T")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON-serialisable dict of a config dataclass (tuples become lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def config_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build ``cls`` from a dict, rejecting unknown keys (a silent drop would change the model)."""
    if not isinstance(data, Mapping):
        raise InputError(f"{cls.__name__}.from_dict expects a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"unknown {cls.__name__} keys {unknown}; known keys are {sorted(names)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # missing required fields
        raise InputError(f"cannot build {cls.__name__} from {dict(data)}: {exc}") from None
