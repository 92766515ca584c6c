"""microlad.data: patches, one-hot encoding, dihedral augmentation, input validation."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from microlad.data import (
    PatchSampler,
    as_label_images,
    dihedral,
    dihedral_batch,
    dihedral_inverse,
    from_onehot,
    onehot,
)
from microlad.errors import InputError, ShapeError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _asym(n: int = 8, phases: int = 3, seed: int = 0) -> np.ndarray:
    """A random patch: no dihedral symmetry with overwhelming probability."""
    return np.random.default_rng(seed).integers(0, phases, (n, n)).astype(np.uint8)


def test_patch_shapes_2d():
    img = _asym(40, 3)
    s = PatchSampler(img, patch=16)
    x = s.sample(5, _gen())
    assert x.shape == (5, 3, 16, 16) and x.dtype == torch.float32
    assert torch.all(x.sum(1) == 1)
    lab = s.sample_labels(7, _gen())
    assert lab.shape == (7, 16, 16) and lab.dtype == torch.uint8


def test_patch_shapes_3d_volume_uses_all_axes():
    vol = np.random.default_rng(1).integers(0, 2, (20, 24, 28)).astype(np.uint8)
    s = PatchSampler(vol, patch=16)
    assert len(s.descriptions) == 3 and "axis 2" in s.descriptions[2]
    assert s.sample(9, _gen()).shape == (9, 2, 16, 16)


def test_3d_volume_thin_axis_skipped_with_warning(caplog):
    vol = np.random.default_rng(1).integers(0, 2, (4, 32, 32)).astype(np.uint8)
    with caplog.at_level(logging.WARNING):
        s = PatchSampler(vol, patch=16)
    assert len(s.descriptions) == 1 and "2 of 3 axes" in caplog.text
    assert s.sample(3, _gen()).shape == (3, 2, 16, 16)


def test_patches_are_crops_of_the_image_mirrored_by_half_a_patch():
    img = np.arange(30 * 30).reshape(30, 30) % 7
    ext = np.pad(img, 5, mode="symmetric")  # the edge pixel repeated: mirror of i is -1-i
    s = PatchSampler(img.astype(np.uint8), patch=10, augment=False)
    for lab in s.sample_labels(20, _gen(3)).numpy():
        hits = [(y, x) for y in range(31) for x in range(31) if np.array_equal(ext[y:y + 10, x:x + 10], lab)]
        assert hits


def test_sampling_is_reproducible_and_seed_dependent():
    s = PatchSampler(_asym(64, 2), patch=16)
    a, b, c = s.sample(8, _gen(1)), s.sample(8, _gen(1)), s.sample(8, _gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_onehot_round_trip():
    lab = _asym(12, 4)
    x = onehot(lab, 4)
    assert x.shape == (4, 12, 12) and torch.all(x.sum(0) == 1)
    assert np.array_equal(from_onehot(x).numpy(), lab)
    batch = torch.from_numpy(np.stack([lab, lab[::-1].copy()]))
    xb = onehot(batch, 4)
    assert xb.shape == (2, 4, 12, 12)
    assert torch.equal(from_onehot(xb), batch)
    vol = np.stack([lab] * 3)
    assert onehot(vol, 4, dim=0).shape == (4, 3, 12, 12)
    assert torch.equal(onehot(torch.from_numpy(lab), 4), x)  # torch and numpy paths agree


def test_onehot_rejects_bad_labels():
    with pytest.raises(InputError, match="labels span"):
        onehot(np.array([[0, 3]]), 3)
    with pytest.raises(InputError, match="integer"):
        onehot(np.zeros((2, 2)), 2)


def test_dihedral_gives_eight_distinct_transforms_and_inverts():
    p = _asym(8, 3)
    outs = [dihedral(p, k) for k in range(8)]
    assert len({o.tobytes() for o in map(np.ascontiguousarray, outs)}) == 8
    for k in range(8):
        assert np.array_equal(dihedral_inverse(dihedral(p, k), k), p)
        t = torch.from_numpy(p)
        assert np.array_equal(dihedral(t, k).numpy(), outs[k])  # torch and numpy agree


def test_dihedral_preserves_phase_fractions():
    x = torch.from_numpy(np.stack([_asym(16, 3, seed=s) for s in range(16)]))
    ks = torch.arange(16) % 8
    y = dihedral_batch(x, ks)
    for p in range(3):
        assert torch.equal((x == p).sum((1, 2)), (y == p).sum((1, 2)))
    for i in range(16):
        assert torch.equal(y[i], dihedral(x[i], int(ks[i])))


def test_sampler_augmentation_produces_all_eight_symmetries():
    img = _asym(16, 3)
    # the same generator draws the same offsets with and without augmentation, so every
    # augmented patch is one of the eight symmetries of its plain twin, and all eight occur
    aug = PatchSampler(img, patch=16).sample_labels(200, _gen()).numpy()
    plain = PatchSampler(img, patch=16, augment=False).sample_labels(200, _gen()).numpy()
    used = set()
    for a, p in zip(aug, plain):
        ks = [k for k in range(8) if np.array_equal(a, dihedral(p, k))]
        assert ks
        used.update(ks)
    assert used == set(range(8))
    assert np.allclose([(aug == q).mean() for q in range(3)], [(plain == q).mean() for q in range(3)])


def test_phase_count_mismatch_is_one_line_input_error():
    a = _asym(32, 2)
    b = _asym(32, 3)
    with pytest.raises(InputError) as exc:
        as_label_images([a, b])
    msg = str(exc.value)
    assert "different phase counts" in msg and "\n" not in msg


def test_image_smaller_than_patch():
    with pytest.raises(ShapeError, match="smaller than the patch size 64"):
        PatchSampler(_asym(40, 2), patch=64)
    with pytest.raises(ShapeError, match="no slice"):
        PatchSampler(np.zeros((10, 10, 10), np.uint8) + np.eye(10, dtype=np.uint8), patch=16)


def test_input_validation():
    with pytest.raises(InputError, match="integer phase labels"):
        as_label_images(np.random.rand(32, 32))
    with pytest.raises(InputError, match="only one phase"):
        as_label_images(np.zeros((32, 32), np.uint8))
    with pytest.raises(ShapeError):
        as_label_images(np.zeros((2, 2, 2, 2), np.uint8))
    with pytest.raises(InputError, match="no training images"):
        as_label_images([])
    imgs = as_label_images([np.eye(8, dtype=bool), np.eye(8, dtype=np.int64)])
    assert imgs.n_phases == 2 and all(a.dtype == np.uint8 for a in imgs.arrays)
    assert np.allclose(imgs.phase_fractions(), [56 / 64, 8 / 64])


def test_segmented_inputs_use_grey_values():
    from microlad.io import map_phases

    seg = map_phases(np.where(np.eye(32, dtype=bool), 255, 0).astype(np.uint8), source="eye.png")
    imgs = as_label_images(seg)
    assert imgs.n_phases == 2 and imgs.grey_values == (0.0, 255.0) and imgs.names == ("eye.png",)


def test_training_inputs_may_be_file_paths(tmp_path):
    from microlad.data import as_label_images

    img = np.zeros((80, 80), dtype=np.uint8)
    img[:, 40:] = 200
    np.save(tmp_path / "img.npy", img)
    li = as_label_images(str(tmp_path / "img.npy"))
    assert li.n_phases == 2 and li.grey_values == (0.0, 200.0)
    np.testing.assert_array_equal(li.arrays[0], img // 200)
    li2 = as_label_images([tmp_path / "img.npy", tmp_path / "img.npy"])
    assert len(li2.arrays) == 2


def test_tiles_weight_every_pixel_equally_where_random_patches_favour_the_centre():
    img = np.zeros((128, 128), dtype=np.uint8)
    img[32:96, 32:96] = 1  # phase 1 = the central quarter: area fraction exactly 0.25
    s = PatchSampler([img], patch=32, augment=False)
    tiles = s.tile_labels(1000, torch.Generator().manual_seed(0))
    assert tiles.shape == (16, 32, 32)
    assert (tiles == 1).mean() == pytest.approx(0.25, abs=1e-12)  # the image's own fraction
    # random patches, mirrored by half a patch at the borders, weight the pixels equally too
    # (without the mirror, uniform offsets inside the image gave more than 0.30 here: the
    # centre is covered up to 32 times per axis, the border once)
    random = s.sample_labels(4000, torch.Generator().manual_seed(0)).numpy()
    assert (random == 1).mean() == pytest.approx(0.25, abs=0.012)
    # more tiles than asked: a subset of distinct tiles, reproducible with the generator
    a = s.tile_labels(5, torch.Generator().manual_seed(3))
    b = s.tile_labels(5, torch.Generator().manual_seed(3))
    assert a.shape == (5, 32, 32) and np.array_equal(a, b)
    full = {t.tobytes() for t in tiles}
    assert all(t.tobytes() in full for t in a)


def test_tiles_reach_every_pixel_when_the_side_is_not_a_multiple_of_the_patch():
    from microlad.data._patches import grid_tiles, tile_starts

    assert tile_starts(128, 32).tolist() == [0, 32, 64, 96]  # multiples: the plain grid
    assert tile_starts(100, 64).tolist() == [0, 36] and tile_starts(40, 64).size == 0
    # label every pixel by its own index: the tiles must contain each index once or twice
    img = np.arange(100 * 70).reshape(100, 70)
    tiles = grid_tiles(img, 32)
    assert tiles.shape == (4 * 3, 32, 32)
    seen = np.bincount(tiles.ravel(), minlength=img.size)
    assert seen.min() >= 1 and seen.max() <= 4  # 1 or 2 per axis
    # a phase that lives only in the last 36 columns of a 100-wide image is seen
    # (a grid anchored at the origin never reached it)
    two = np.zeros((64, 100), dtype=np.uint8)
    two[:, 64:] = 1
    s = PatchSampler([two], patch=64, augment=False)
    t = s.tile_labels(100, torch.Generator().manual_seed(0))
    assert t.shape == (2, 64, 64) and (t == 1).mean() == pytest.approx(36 / 128)
