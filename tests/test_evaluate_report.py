"""``microlad evaluate``: metrics.json schema, report sections, the verdict on known cases.

Known answers: a reference evaluated against itself has zero S2 error; voxel-shuffled
volumes (same VF, no structure) fail; two halves of a real 3-D volume agree (3D-to-3D).
The report is also opened in headless Chromium when it is installed.
"""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error, run_cli
from microlad.evaluate.evaluation import evaluate_volumes
from microlad.evaluate.metrics import SPECS, MetricOptions
from microlad.evaluate.reference import group_size, reference_from_images, reference_from_volume
from microlad.evaluate.report import SECTIONS
from microlad.evaluate.verdict import STATUSES
from microlad.synthetic import random_field_labels


def _save(path: Path, arr: np.ndarray) -> Path:
    np.save(path, arr)
    return path


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One CLI evaluation of three 24³ volumes against a 2-D image (with transport)."""
    d = tmp_path_factory.mktemp("ev")
    ref = _save(d / "ref.npy", random_field_labels((160, 160), fractions=(0.5, 0.3, 0.2), correlation_length=2, seed=0))
    vols = [_save(d / f"v{i}.npy", random_field_labels((24, 24, 24), fractions=(0.5, 0.3, 0.2), correlation_length=2, seed=i + 1))
            for i in range(3)]
    return d, vols, ref


def test_cli_writes_metrics_json_with_the_documented_schema(cli_run, capsys):
    d, vols, ref = cli_run
    res = run_cli(capsys, "evaluate", *vols, "--reference", ref, "--out", d / "out", "--patches", "32")
    assert res.exit_code == 0, res.stderr
    assert "verdict:" in res.stdout and str(d / "out" / "report.html") in res.stdout
    doc = json.loads((d / "out" / "metrics.json").read_text())
    assert doc["format"] == "microlad-evaluate" and doc["format_version"] == 1
    assert doc["verdict"] in ("pass", "warn", "fail")
    assert doc["n_volumes"] == 3 and doc["shape"] == [24, 24, 24] and doc["n_phases"] == 3 and doc["cutoff"] == 12
    assert len(doc["s2_error"]["per_volume"]) == 3 and doc["s2_error"]["overall"] >= 0
    overall = max(v for ax in doc["s2_error"]["by_phase_axis"].values() for v in ax.values())
    assert doc["s2_error"]["overall"] == pytest.approx(overall)
    m0 = doc["volumes"][0]["metrics"]
    for key in ("vf", "s2", "s2_error", "s2_small_r", "perimeter_density", "surface_area", "cluster_density", "cluster_mean_area",
                "cluster_weighted_area", "anisotropy", "spanning_fraction", "isolated_cluster_density", "euler_density", "tpb_density", "tortuosity", "effective_diffusivity"):
        assert key in m0 and key in doc["summary"]["mean"] and key in doc["summary"]["std"], key
    assert set(m0["s2"]) == {"0", "1", "2"} and set(m0["s2"]["0"]) == {"z", "y", "x"} and len(m0["s2"]["0"]["z"]) == 13
    assert set(m0["tortuosity"]["1"]) == {"z", "y", "x"} and isinstance(m0["tpb_density"], float)
    # per-volume values agree with an independent count on the saved file
    v0 = np.load(vols[0])
    assert m0["vf"]["2"] == pytest.approx(float(np.mean(v0 == 2)))
    assert doc["reference"]["kind"] == "images" and doc["reference"]["n_samples"] == 32
    assert {c["status"] for c in doc["checks"]} <= set(STATUSES)
    vf_check = next(c for c in doc["checks"] if c["metric"] == "vf" and c["phase"] == 1)
    assert vf_check["signed_error"] == pytest.approx(vf_check["value"] - vf_check["reference"])
    se = doc["summary"]["standard_error"]["vf"]["1"]
    assert se == pytest.approx(doc["summary"]["std"]["vf"]["1"] / np.sqrt(3))
    assert set(doc["metrics"]) == set(SPECS) and doc["metrics"]["perimeter_density"]["unit"] == "1/voxel"
    assert {"command", "microlad", "numpy"} <= set(doc["metadata"]) and "total (before the report)" in doc["timings_s"]


def test_report_has_every_section_and_its_images_decode_as_png(cli_run, capsys):
    from PIL import Image

    d, _, _ = cli_run
    page = (d / "out" / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
    assert "http://" not in page and "https://" not in page  # self-contained
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == page.count("<img") == 5  # overview, slices, 3-D rendering, S2, transport
    for b64 in images:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            assert im.format == "PNG" and min(im.size) > 100
            im.load()


def test_cli_errors_are_one_line(cli_run, capsys, tmp_path):
    d, vols, ref = cli_run
    assert_one_line_error(run_cli(capsys, "evaluate", vols[0], "--out", tmp_path), "--reference")
    assert_one_line_error(run_cli(capsys, "evaluate", vols[0], "--reference", ref, "--out", d / "out"), "already exists")
    other = _save(tmp_path / "small.npy", np.zeros((8, 8, 8), np.uint8) + np.eye(8, dtype=np.uint8)[None])
    assert_one_line_error(run_cli(capsys, "evaluate", vols[0], other, "--reference", ref, "--out", tmp_path / "o"), "shape")
    assert_one_line_error(run_cli(capsys, "evaluate", ref, "--reference", ref, "--out", tmp_path / "o"), "3D")
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_a_reference_against_itself_has_zero_s2_error_and_passes():
    vol = random_field_labels((20, 24, 28), fractions=(0.6, 0.4), correlation_length=2, seed=4)
    opts = MetricOptions(cutoff=10, n_phases=2, transport=False)
    ref = reference_from_volume(vol, shape=vol.shape, opts=opts)
    ev = evaluate_volumes([vol], ref, opts=opts)
    assert ev.s2_error == 0.0 and ev.verdict == "pass"
    assert all(c.status in ("pass", "n/a") for c in ev.checks)


def test_voxel_shuffled_volumes_have_a_large_s2_error_and_fail():
    img = random_field_labels((192, 192), fractions=(0.6, 0.4), correlation_length=3, seed=0)
    vols = [random_field_labels((32, 32, 32), fractions=(0.6, 0.4), correlation_length=3, seed=s) for s in (1, 2)]
    rng = np.random.default_rng(0)
    shuffled = [rng.permutation(v.ravel()).reshape(v.shape) for v in vols]
    opts = MetricOptions(cutoff=16, n_phases=2, transport=False)
    ref = reference_from_images([img], opts=opts, patch=32, volume_shape=(32, 32, 32), n_patches=48)
    good, bad = evaluate_volumes(vols, ref, opts=opts), evaluate_volumes(shuffled, ref, opts=opts)
    assert good.verdict != "fail"
    assert bad.s2_error > 0.15 and bad.s2_error > 3 * good.s2_error
    assert bad.verdict == "fail"
    failed = {c.metric for c in bad.checks if c.status == "fail"}
    assert {"perimeter_density", "surface_area", "cluster_density"} <= failed


def test_group_size_follows_the_integral_range():
    # exponential covariance C(r) = c0 exp(-r / a): l = 2 sum r^2 C / sum r C ~ 4a
    r = np.arange(200.0)
    vf = np.array([0.5])
    s2 = (vf**2 + 0.25 * np.exp(-r / 3.0))[None]
    g = group_size(s2, vf, (96, 96, 96), (96, 96))
    assert g == pytest.approx(96 / 12, abs=1)
    assert group_size(s2, vf, (96, 96, 96), (48, 48)) == pytest.approx(4 * 96 / 12, abs=2)


def test_three_d_mode_on_two_halves_of_a_real_volume_passes(leopard):
    half_a, half_b = leopard[:50], leopard[50:]
    shape = (40, 40, 40)
    crops = [np.ascontiguousarray(half_a[z:z + 40, y:y + 40, x:x + 40]) for z, y, x in ((0, 0, 0), (10, 60, 0), (0, 30, 60), (10, 0, 55))]
    opts = MetricOptions(cutoff=20, n_phases=2, transport=True, workers=1)
    ref = reference_from_volume(half_b, shape=shape, opts=opts, n_sub=8, seed=0)
    ev = evaluate_volumes(crops, ref, opts=opts)
    assert ref.kind == "volume" and ref.n_samples == 8 and "tortuosity" in ref.spread
    rated = {c.metric for c in ev.checks if c.status != "n/a"}
    assert {"vf", "s2_error", "surface_area", "tortuosity"} <= rated
    assert ev.verdict == "pass", [c for c in ev.checks if c.status in ("warn", "fail")]


def test_model_only_reference_names_what_it_lacks(capsys, tmp_path):
    vol = random_field_labels((32, 32, 32), fractions=(0.36, 0.33, 0.31), correlation_length=3, seed=0)
    path = _save(tmp_path / "v.npy", vol)
    res = run_cli(capsys, "evaluate", path, "--model", "sofc-anode", "--no-transport", "--out", tmp_path / "o")
    assert res.exit_code == 0, res.stderr
    doc = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert doc["reference"]["kind"] == "model" and doc["reference"]["sample_shape"] == [64, 64]
    assert any("no cluster" in n for n in doc["reference"]["notes"])
    statuses = {(c["metric"], c["status"]) for c in doc["checks"]}
    assert ("cluster_density", "n/a") in statuses and ("vae_accuracy", "info") in statuses
    acc = doc["summary"]["mean"]["vae_accuracy"]
    assert all(0.0 <= acc[p][a] <= 1.0 for p in acc for a in acc[p])
    assert "tortuosity" not in doc["summary"]["mean"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_headless_chromium(cli_run, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium; `make test` tries)")
    from PIL import Image

    d, _, _ = cli_run
    url = (d / "out" / "report.html").resolve().as_uri()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    shot = tmp_path / "shot.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1280,3000", url], check=True, capture_output=True, timeout=120)
    dom = subprocess.run(flags + ["--virtual-time-budget=5000", "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120).stdout
    n = dom.count("<img")
    assert n == 5 and f"images loaded: {n}/{n}" in dom
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("L"), dtype=float)
    assert pixels.shape == (3000, 1280)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01  # not a blank page: text and figures drawn


def test_reconstruct_report_evaluates_its_volumes_against_the_model(tmp_path, capsys):
    import torch

    from microlad.diffusion import DDPMSchedule
    from microlad.models import CategoricalVAE, UNet2D, UNetConfig, VAEConfig
    from microlad.model import MicroladModel

    torch.manual_seed(0)
    vae = CategoricalVAE(VAEConfig(n_phases=2, base_channels=8, norm_groups=4))
    unet = UNet2D(UNetConfig(in_channels=4, base_channels=16, channel_multipliers=(1, 2), norm_groups=4, attention_heads=2))
    c = 8
    stats = {"volume_fraction": [0.6, 0.4], "s2_radial_mean": [[0.6 - 0.2 * r / c for r in range(c + 1)], [0.4 - 0.2 * r / c for r in range(c + 1)]]}
    MicroladModel(vae, unet, DDPMSchedule(), grey_values=[0.0, 255.0], patch_size=16, training_stats=stats).save(tmp_path / "tiny")
    out = tmp_path / "rec"
    args = ["reconstruct", tmp_path / "tiny", "--shape", "16", "16", "16", "-n", "2", "--steps", "2", "--out", out, "--no-progress", "--report"]
    res = run_cli(capsys, *args)
    assert res.exit_code == 0, res.stderr
    assert "verdict:" in res.stdout and str(out / "report.html") in res.stdout
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["reference"]["kind"] == "model" and doc["n_volumes"] == 2
    assert [v["name"] for v in doc["volumes"]] == ["volume_000.tif", "volume_001.tif"]
    assert doc["metadata"]["volume seeds (sidecars)"] == "0, 1"
    assert any("no S2 band" in n for n in doc["reference"]["notes"])  # the tiny model stores no std
    # a second run without --overwrite stops before reconstructing anything
    assert_one_line_error(run_cli(capsys, *args), "already exists")


def test_cli_three_d_reference_mode(capsys, tmp_path):
    big = random_field_labels((30, 30, 30), fractions=(0.6, 0.4), correlation_length=2, seed=7)
    ref = _save(tmp_path / "ref3d.npy", big)
    vol = _save(tmp_path / "v.npy", np.ascontiguousarray(big[:20, :20, :20]))
    res = run_cli(capsys, "evaluate", vol, "--reference", ref, "--no-transport", "--patches", "4", "--out", tmp_path / "o")
    assert res.exit_code == 0, res.stderr
    doc = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert doc["reference"]["kind"] == "volume" and doc["reference"]["n_samples"] == 4 and doc["reference"]["sample_shape"] == [20, 20, 20]
    assert "surface_area" in doc["reference"]["spread"] and doc["reference"]["group_size"] == 1
    small = _save(tmp_path / "small3d.npy", big[:10])
    assert_one_line_error(run_cli(capsys, "evaluate", vol, "--reference", small, "--out", tmp_path / "o2"), "smaller")
    assert_one_line_error(run_cli(capsys, "evaluate", vol, "--reference", ref, "--reference", ref, "--out", tmp_path / "o3"), "3D")


def test_voxel_size_scales_lengths_and_names_the_unit():
    img = random_field_labels((128, 128), fractions=(0.6, 0.4), correlation_length=2, seed=0)
    vol = random_field_labels((20, 20, 20), fractions=(0.6, 0.4), correlation_length=2, seed=1)
    evs = []
    for vs in (1.0, 0.5):
        opts = MetricOptions(cutoff=10, n_phases=2, voxel_size=vs, transport=False)
        ref = reference_from_images([img], opts=opts, patch=20, volume_shape=vol.shape, n_patches=8)
        evs.append(evaluate_volumes([vol], ref, opts=opts, length_unit="voxel" if vs == 1.0 else "um"))
    one, half = evs
    np.testing.assert_allclose(half.mean["perimeter_density"], 2 * one.mean["perimeter_density"])
    np.testing.assert_allclose(half.mean["cluster_mean_area"], 0.25 * one.mean["cluster_mean_area"])
    np.testing.assert_allclose(half.mean["cluster_weighted_area"], 0.25 * one.mean["cluster_weighted_area"])
    assert half.s2_error == pytest.approx(one.s2_error) and half.verdict == one.verdict
    assert half.to_dict()["metrics"]["cluster_density"]["unit"] == "1/um^2"


def test_image_reference_means_weight_every_pixel_equally():
    # a small image whose phase-1 square sits off the tile grid: the reference's mean
    # perimeter density must be the tiles' pooled one, measured here independently with
    # skimage's marching squares, not that of random crops (which over-weight the centre)
    from skimage import measure

    img = np.zeros((128, 128), dtype=np.uint8)
    img[40:88, 40:88] = 1
    opts = MetricOptions(cutoff=8, n_phases=2, transport=False)
    ref = reference_from_images([img], opts=opts, patch=32, volume_shape=(32, 32, 32), n_patches=48)
    tiles = [img[y:y + 32, x:x + 32] for y in range(0, 128, 32) for x in range(0, 128, 32)]
    length = sum(sum(np.hypot(*np.diff(c, axis=0).T).sum() for c in measure.find_contours((t == 1).astype(float), 0.5))
                 for t in tiles)
    expected = length / (len(tiles) * 32 * 32)
    assert ref.mean["perimeter_density"][1, 0] == pytest.approx(expected, rel=1e-9)
    assert ref.mean["vf"][1] == pytest.approx((img == 1).mean())
