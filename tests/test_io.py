"""I/O: formats, grey → phase mapping, rejected inputs, atomic writes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from skimage import io as skio

from microlad.errors import InputError, OutputExistsError, ShapeError
from microlad.io import check_patch_size, read_image, write_volume
from cli_helpers import assert_one_line_error, run_cli


def test_grey_values_map_to_labels_in_ascending_order(tmp_path):
    img = np.array([[200, 10], [55, 10]], dtype=np.uint8)
    np.save(tmp_path / "a.npy", img)
    seg = read_image(tmp_path / "a.npy")
    assert seg.grey_values == (10.0, 55.0, 200.0)
    np.testing.assert_array_equal(seg.labels, [[2, 0], [1, 0]])
    assert seg.labels.dtype == np.uint8


def test_tiff_stack_png_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 3, size=(5, 12, 10)).astype(np.uint8) * 100
    tifffile.imwrite(tmp_path / "v.tif", vol)
    seg = read_image(tmp_path / "v.tif")
    assert seg.labels.shape == (5, 12, 10)
    np.testing.assert_array_equal(seg.labels, vol // 100)
    # single page with a singleton axis is squeezed (like the shared SOFC file)
    tifffile.imwrite(tmp_path / "p.tif", vol[:1])
    assert read_image(tmp_path / "p.tif").labels.shape == (12, 10)
    skio.imsave(tmp_path / "i.png", vol[0], check_contrast=False)
    np.testing.assert_array_equal(read_image(tmp_path / "i.png").labels, vol[0] // 100)
    np.savez(tmp_path / "z.npz", first=vol[0], labels=vol)
    assert read_image(tmp_path / "z.npz").labels.shape == (12, 10)
    assert read_image(tmp_path / "z.npz", key="labels").labels.shape == (5, 12, 10)


def test_grey_rgb_png_is_accepted(tmp_path):
    grey = (np.arange(64).reshape(8, 8) % 2 * 255).astype(np.uint8)
    skio.imsave(tmp_path / "rgb.png", np.stack([grey] * 3, axis=-1), check_contrast=False)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png").labels, grey // 255)


def test_thresholds_segment_grey_image(tmp_path):
    img = np.linspace(0, 1, 400).reshape(20, 20)
    np.save(tmp_path / "g.npy", img)
    with pytest.raises(InputError, match="distinct grey values"):
        read_image(tmp_path / "g.npy")
    seg = read_image(tmp_path / "g.npy", thresholds=[0.25, 0.5])
    assert seg.n_phases == 3
    np.testing.assert_array_equal(np.bincount(seg.labels.ravel()), [100, 100, 200])
    assert seg.grey_values[0] < 0.25 < seg.grey_values[1] < 0.5 < seg.grey_values[2]


def test_write_volume_is_atomic_and_refuses_overwrite(tmp_path):
    vol = np.zeros((4, 6, 8), dtype=np.uint8)
    vol[:, :, 4:] = 1
    out = write_volume(tmp_path / "vol.tif", vol, grey_values=(0.0, 255.0), metadata={"seed": 7})
    np.testing.assert_array_equal(tifffile.imread(out), vol)
    side = json.loads((tmp_path / "vol.json").read_text())
    assert side["shape"] == [4, 6, 8] and side["axes"] == "ZYX" and side["seed"] == 7
    assert side["phases"]["1"]["grey_value"] == 255.0 and "microlad_version" in side
    with pytest.raises(OutputExistsError):
        write_volume(tmp_path / "vol.tif", vol)
    write_volume(tmp_path / "vol.tif", 1 - vol, overwrite=True)
    np.testing.assert_array_equal(tifffile.imread(out), 1 - vol)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.json", "vol.tif"]  # no temp files left


def test_patch_size_check():
    check_patch_size(np.zeros((64, 64)), 64)
    with pytest.raises(ShapeError, match="smaller than the requested patch"):
        check_patch_size(np.zeros((64, 40)), 64)


def _bad_inputs(tmp_path):
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    rgb[:4, :, 1] = 30
    skio.imsave(tmp_path / "colour.png", rgb, check_contrast=False)
    np.save(tmp_path / "many.npy", np.arange(100).reshape(10, 10))
    np.save(tmp_path / "one.npy", np.full((10, 10), 3, dtype=np.uint8))
    nan = np.zeros((10, 10))
    nan[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    inf = np.zeros((10, 10))
    inf[1, 1] = np.inf
    inf[2, 2] = 1
    np.save(tmp_path / "inf.npy", inf)
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "garbage.tif").write_bytes(b"this is not a tiff file at all")
    (tmp_path / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "image.jpgx").write_bytes(b"abc")
    np.savez(tmp_path / "k.npz", a=np.eye(4))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return [
        ("colour.png", (), "colour channels differ"),
        ("many.npy", (), "distinct grey values"),
        ("one.npy", (), "only one phase"),
        ("nan.npy", (), "nan"),
        ("inf.npy", (), "infinite"),
        ("empty.tif", (), "empty"),
        ("garbage.tif", (), "cannot read"),
        ("garbage.npy", (), "cannot read"),
        ("obj.npy", (), "cannot read"),
        ("image.jpgx", (), "unsupported file type"),
        ("k.npz", ("--key", "nope"), "no array named 'nope'"),
        ("missing.tif", (), "no such file"),
    ]


def test_every_rejected_input_gives_one_line_error_and_writes_nothing(tmp_path, capsys):
    for name, extra, message in _bad_inputs(tmp_path):
        out = tmp_path / f"{name}.report.json"
        res = run_cli(capsys, "properties", tmp_path / name, "--json", out, *extra)
        assert_one_line_error(res, message)
        assert name in res.stderr or name == "k.npz"
        assert not out.exists(), name
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_existing_json_needs_overwrite(tmp_path, capsys):
    img = np.zeros((16, 16), dtype=np.uint8)
    img[:, 8:] = 1
    np.save(tmp_path / "img.npy", img)
    out = tmp_path / "r.json"
    out.write_text("keep")
    res = run_cli(capsys, "properties", tmp_path / "img.npy", "--json", out, "--no-transport")
    assert_one_line_error(res, "already exists")
    assert out.read_text() == "keep"
