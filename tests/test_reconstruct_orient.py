"""Orientation bookkeeping of L-MPDD: every axis returns to its place."""
from __future__ import annotations

import itertools

import pytest
import torch

from microlad.reconstruct._orient import axis_schedule, from_slices, to_slices


@pytest.mark.parametrize("shape", [(4, 8, 8, 8), (4, 2, 4, 6), (3, 16, 32, 64), (1, 5, 3, 7)])
def test_slices_are_the_planes_normal_to_each_axis(shape):
    vol = torch.arange(torch.tensor(shape).prod().item(), dtype=torch.float32).reshape(shape)
    _, z, y, x = shape
    s0, s1, s2 = to_slices(vol, 0), to_slices(vol, 1), to_slices(vol, 2)
    assert s0.shape == (z, shape[0], y, x) and s1.shape == (y, shape[0], x, z) and s2.shape == (x, shape[0], z, y)
    # independent indexing: the k-th slice along an axis is the plane index k on that axis
    for k in range(z):
        assert torch.equal(s0[k], vol[:, k, :, :])
    for k in range(y):
        assert torch.equal(s1[k], vol[:, :, k, :].transpose(1, 2))  # laid out (X, Z)
    for k in range(x):
        assert torch.equal(s2[k], vol[:, :, :, k])
    for a in range(3):
        assert torch.equal(from_slices(to_slices(vol, a), a), vol)


@pytest.mark.parametrize("shape", [(2, 4, 4, 4), (3, 2, 4, 6)])
def test_slice_layouts_are_cyclic(shape):
    """Relabelling z → y → x → z maps each slicing onto the next with the same layout, so
    every axis is the height of one slicing and the width of another (none is special)."""
    vol = torch.randn(shape)
    relabelled = vol.permute(0, 3, 1, 2)  # new z = old x, new y = old z, new x = old y
    for a in range(3):
        assert torch.equal(to_slices(vol, a), to_slices(relabelled, (a + 1) % 3))


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 7, 10, 25, 999, 1000])
@pytest.mark.parametrize("shape", [(2, 4, 6, 8), (2, 8, 8, 8)])
def test_any_number_of_steps_returns_the_volume_to_canonical_order(steps, shape):
    vol = torch.randn(shape)
    cur = vol.clone()
    axes = axis_schedule(steps)
    assert axes[:4] == [0, 1, 2, 0][: len(axes[:4])]
    for a in axes:
        # a step that only reads positions: add a position-dependent ramp along the slice
        # batch axis and remove it again in the canonical frame
        sl = to_slices(cur, a)
        ramp = torch.arange(sl.shape[0], dtype=sl.dtype).view(-1, 1, 1, 1)
        cur = from_slices(sl + ramp, a)
        cur = cur - torch.arange(shape[a + 1], dtype=sl.dtype).view(*[shape[a + 1] if i == a + 1 else 1 for i in range(4)])
    assert cur.shape == vol.shape
    assert torch.allclose(cur, vol, atol=1e-5)


def test_axis_schedule_cycles_all_axes():
    for n in range(1, 12):
        sched = axis_schedule(n)
        assert len(sched) == n
        assert all(b == (a + 1) % 3 for a, b in itertools.pairwise(sched))
