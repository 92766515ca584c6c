"""Shared fixtures: real data from ../shared/data (tests skip cleanly if it is absent)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(os.environ.get("MICROLAD_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


def shared_file(rel: str) -> Path:
    """Path to a file under ../shared/data, or skip the test if it is absent."""
    path = SHARED_DATA / rel
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(scope="session")
def leopard() -> np.ndarray:
    """Leopard sandstone 100^3, labels: 1 = pore, 0 = grain (int8 -> uint8)."""
    return np.load(shared_file("3d/leopard_100.npy")).astype(np.uint8)


@pytest.fixture(scope="session")
def berea() -> np.ndarray:
    """Berea sandstone 400^3, labels: 0 = pore, 1 = grain (uint8)."""
    with np.load(shared_file("3d/berea_400.npz")) as z:
        return z["labels"].astype(np.uint8)


@pytest.fixture(scope="session")
def sofc() -> np.ndarray:
    """SOFC anode 1024^2, three phases 0/1/2."""
    import tifffile

    return np.squeeze(tifffile.imread(shared_file("2d/sofc_anode_1024.tif"))).astype(np.uint8)


@pytest.fixture(scope="session")
def carbonate() -> np.ndarray:
    """Carbonate 256^2, binary 0/1."""
    return np.load(shared_file("2d/carbonate_256.npy")).astype(np.uint8)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one intra-op thread avoids OpenMP spin contention on shared CPUs."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
