"""`microlad reconstruct` and `microlad demo` end to end with a tiny saved model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cli_helpers import assert_one_line_error, run_cli, save_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", [0.6, 0.4], s2_drop=0.2, grey_values=[0.0, 255.0])


def test_reconstruct_writes_volumes_with_sidecars(model_dir, tmp_path, capsys):
    out = tmp_path / "rec"
    args = ["reconstruct", model_dir, "--shape", "8", "12", "16", "-n", "2", "--steps", "3", "--refine", "1", "--seed", "5", "--out", out, "--no-progress"]
    res = run_cli(capsys, *args)
    assert res.exit_code == 0, res.stderr
    assert "wrote 2 volume(s)" in res.stdout
    for i in range(2):
        vol = tifffile.imread(out / f"volume_{i:03d}.tif")
        assert vol.shape == (8, 12, 16) and vol.dtype == np.uint8 and vol.max() <= 1
        side = json.loads((out / f"volume_{i:03d}.json").read_text())
        assert side["seed"] == 5 + i and side["phases"]["1"]["grey_value"] == 255.0
        assert side["config"]["steps"] == 3 and set(side["volume_fraction"]) == {"total", "z", "y", "x"}
        assert side["timings_s"]["total"] > 0
        # --match-vf is the default: the volume has the stored training fractions
        assert side["config"]["match_vf"] == [0.6, 0.4]
        # smoothing is on by default and its width is recorded (this tiny model stores no
        # surface statistics, so there is nothing to calibrate to: width 0)
        assert side["config"]["smooth"] is True and side["config"]["smoothing_sigma"] == [0.0, 0.0]
        # the coupling window in force is recorded (this model stores none: every step coupled)
        assert side["config"]["coupling_stop"] == 0.0
        assert side["volume_fraction"]["total"]["0"] == pytest.approx(0.6, abs=0.02)
    raw = run_cli(capsys, *args[:-3], "--no-match-vf", "--out", tmp_path / "raw", "--no-progress")
    assert raw.exit_code == 0, raw.stderr
    side = json.loads((tmp_path / "raw" / "volume_000.json").read_text())
    assert side["config"]["match_vf"] is False and abs(side["volume_fraction"]["total"]["0"] - 0.6) > 0.02
    again = run_cli(capsys, *args)
    assert_one_line_error(again, "already exists")
    # same seed, same machine: identical volume
    run_cli(capsys, *args[:-3], "--out", tmp_path / "rec2", "--no-progress")
    np.testing.assert_array_equal(tifffile.imread(out / "volume_001.tif"), tifffile.imread(tmp_path / "rec2" / "volume_001.tif"))


def test_reconstruct_shards_across_ranks(model_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "rec"
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        res = run_cli(capsys, "reconstruct", model_dir, "--shape", "8", "8", "8", "-n", "3", "--steps", "2", "--refine", "0", "--out", out, "--no-progress")
        assert res.exit_code == 0, res.stderr
    seeds = sorted(json.loads(p.read_text())["seed"] for p in out.glob("volume_*.json"))
    assert sorted(p.name for p in out.glob("*.tif")) == ["volume_000.tif", "volume_001.tif", "volume_002.tif"]
    assert seeds == [0, 1, 2]


def test_reconstruct_with_the_second_order_sampler(model_dir, tmp_path, capsys):
    """--sampler dpm2m (alias dpm++2m) runs end to end, is recorded, and is deterministic."""
    args = ["reconstruct", model_dir, "--shape", "8", "8", "8", "--steps", "4", "--refine", "0", "--no-progress"]
    a = run_cli(capsys, *args, "--sampler", "dpm++2m", "--out", tmp_path / "a")
    b = run_cli(capsys, *args, "--sampler", "dpm2m", "--out", tmp_path / "b")
    c = run_cli(capsys, *args, "--out", tmp_path / "c")
    assert a.exit_code == b.exit_code == c.exit_code == 0, a.stderr + b.stderr + c.stderr
    assert json.loads((tmp_path / "a" / "volume_000.json").read_text())["config"]["sampler"] == "dpm2m"
    vol = {k: tifffile.imread(tmp_path / k / "volume_000.tif") for k in "abc"}
    np.testing.assert_array_equal(vol["a"], vol["b"])
    assert not np.array_equal(vol["a"], vol["c"])  # a different sampler from the same noise


def test_reconstruct_match_latent_mean_flag(model_dir, tmp_path, capsys):
    """--match-latent-mean (the default) is recorded, and --no-match-latent-mean changes the volume."""
    args = ["reconstruct", model_dir, "--shape", "8", "8", "8", "--steps", "4", "--refine", "0", "--no-progress", "--no-match-vf"]
    on = run_cli(capsys, *args, "--out", tmp_path / "on")
    off = run_cli(capsys, *args, "--no-match-latent-mean", "--out", tmp_path / "off")
    assert on.exit_code == off.exit_code == 0, on.stderr + off.stderr
    side = {k: json.loads((tmp_path / k / "volume_000.json").read_text())["config"] for k in ("on", "off")}
    assert side["on"]["match_latent_mean"] is True and side["off"]["match_latent_mean"] is False
    pon, poff = (tifffile.imread(tmp_path / k / "volume_000.tif") for k in ("on", "off"))
    assert not np.array_equal(pon, poff)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--shape", "8", "8", "10"], "multiple of the vae factor"),
        (["--shape", "8", "8", "8", "-n", "0"], "-n must be"),
        (["--shape", "8", "8", "8", "--coupling-stop", "1.5"], "--coupling-stop must be in [0, 1]"),
        (["--shape", "8", "8", "8", "--sampler", "euler"], "sampler must be one of 'ddim', 'ancestral', 'dpm2m'"),
    ],
)
def test_reconstruct_bad_input_is_one_line_and_writes_nothing(model_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "rec"
    res = run_cli(capsys, "reconstruct", model_dir, *extra, "--out", out, "--no-progress")
    assert_one_line_error(res, message)
    assert not out.exists() or not any(out.iterdir())


def test_reconstruct_unknown_model_is_one_line(tmp_path, capsys):
    res = run_cli(capsys, "reconstruct", tmp_path / "nope", "--shape", "8", "8", "8", "--out", tmp_path / "o")
    assert_one_line_error(res, "not a bundled model")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    res = run_cli(capsys, "reconstruct", tmp_path / "bad", "--shape", "8", "8", "8", "--out", tmp_path / "o")
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1


def test_demo_reconstructs_guides_and_reports_both(model_dir, tmp_path, capsys, one_torch_thread):
    import tifffile

    out = tmp_path / "demo"
    res = run_cli(capsys, "demo", "--model", model_dir, "--size", "16", "--guidance-steps", "3", "--out", out)
    assert res.exit_code == 0, res.stderr
    rec, gen = out / "reconstructed", out / "guided"
    for folder, names in ((rec, ("volume_000.tif", "volume_000.json")), (gen, ("volume_000.tif", "volume_000.json", "volume_000.steps.csv"))):
        for name in (*names, "metrics.json", "report.html"):
            assert (folder / name).is_file(), folder / name
    # the reconstruction has the training volume fractions (match_vf)
    lab = tifffile.imread(rec / "volume_000.tif")
    assert (lab == 0).mean() == pytest.approx(0.6, abs=0.01)
    # the guided sidecar names the two targets and its measured VF is the file's own
    side = json.loads((gen / "volume_000.json").read_text())
    names = [t["name"] for t in side["targets"]]
    assert names == ["vf:1", "deff:1@x"]  # the minority phase of the training fractions (0.6, 0.4)
    assert side["targets"][0]["target"] == pytest.approx(0.48, abs=1e-4)
    assert side["targets"][0]["achieved"] == pytest.approx(float((tifffile.imread(gen / "volume_000.tif") == 1).mean()))
    for folder in (rec, gen):
        assert json.loads((folder / "metrics.json").read_text())["volumes"][0]["name"] == "volume_000.tif"
    assert "time:" in res.stdout and str(gen / "report.html") in res.stdout
    assert_one_line_error(run_cli(capsys, "demo", "--model", model_dir, "--size", "16", "--out", out), "already exists")


def test_reconstruct_from_grains_records_its_start_and_rejects_bad_options(tmp_path, capsys):
    out = tmp_path / "grains"
    base = ["reconstruct", "carbonate", "--shape", "16", "16", "16", "--steps", "4", "--no-progress"]
    res = run_cli(capsys, *base, "--init", "grains", "--init-start", "0.4", "-n", "2", "--out", out)
    assert res.exit_code == 0, res.stderr
    sides = [json.loads((out / f"volume_{i:03d}.json").read_text()) for i in range(2)]
    assert sides[0]["config"]["init"] == "grains" and sides[0]["config"]["init_start"] == 0.4
    assert sides[0]["config"]["grain_roughness"] == "auto"  # the default: calibrated once, the same A for both volumes
    assert sides[0]["config"]["grain_roughness_used"] == sides[1]["config"]["grain_roughness_used"] >= 0
    assert_one_line_error(run_cli(capsys, *base, "--init", "grains", "--grain-roughness", "rough", "--out", tmp_path / "e"), "--grain-roughness")
    assert_one_line_error(run_cli(capsys, *base, "--init", "spheres", "--out", tmp_path / "a"), "--init")
    assert_one_line_error(run_cli(capsys, *base, "--init", "grains", "--grain-roughness", "-1", "--out", tmp_path / "d"), "--grain-roughness")
    assert_one_line_error(run_cli(capsys, *base, "--init", "grains", "--init-start", "1.5", "--out", tmp_path / "b"), "--init-start")
    res = run_cli(capsys, "reconstruct", "sofc-anode", "--shape", "16", "16", "16", "--steps", "2", "--init", "grains",
                  "--out", tmp_path / "c", "--no-progress")
    assert_one_line_error(res, "two-phase")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c" / "volume_000.tif").exists()
