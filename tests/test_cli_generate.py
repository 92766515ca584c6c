"""`microlad generate` end to end with a tiny saved model: files written, invalid targets."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile

from cli_helpers import assert_one_line_error, run_cli, save_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", [0.4, 0.3, 0.3], s2_drop=0.1, grey_values=[0.0, 128.0, 255.0])


BASE = ["--shape", "8", "8", "8", "--steps", "4", "--lmpdd-steps", "2", "--no-progress"]


def test_generate_writes_volumes_sidecars_and_step_csvs(model_dir, tmp_path, capsys, one_torch_thread):
    out = tmp_path / "gen"
    args = ["generate", model_dir, *BASE, "--target", "vf:1=0.30", "--target", "s2=train", "--target", "deff:0@x=0.2",
            "--weight", "s2=2", "-n", "2", "--seed", "7", "--property-every", "2", "--out", out]
    res = run_cli(capsys, *args)
    assert res.exit_code == 0, res.stderr
    assert "wrote 2 volume(s)" in res.stdout and str(out) in res.stdout
    # phase 0 has a transport target and no vf target: the run says its fraction is free
    assert "note: no vf target for phase(s) 0" in res.stdout and "--target vf:0=FRACTION" in res.stdout
    for i in range(2):
        vol = tifffile.imread(out / f"volume_{i:03d}.tif")
        assert vol.shape == (8, 8, 8) and vol.dtype == np.uint8 and vol.max() <= 2
        side = json.loads((out / f"volume_{i:03d}.json").read_text())
        assert side["seed"] == 7 + i and side["command"] == "microlad generate"
        names = [t["name"] for t in side["targets"]]
        assert names == ["vf:1", "s2", "deff:0@x"]
        vf = side["targets"][0]
        assert vf["target"] == pytest.approx(0.30) and vf["achieved"] == pytest.approx(float((vol == 1).mean()))
        assert side["config"]["weights"]["s2"] == 2.0 and side["config"]["steps"] == 4
        # the fractions before and after guidance, the final ones counted on the file itself
        fr = side["phase_fractions"]
        assert fr["final"] == pytest.approx([float((vol == p).mean()) for p in range(3)], abs=1e-5)
        assert len(fr["start"]) == 3 and sum(fr["start"]) == pytest.approx(1.0, abs=1e-4)
        assert f"VF 0:{fr['start'][0]:.3f}->{fr['final'][0]:.3f}" in res.stdout
        assert side["timings_s"]["total"] > 0 and "per_step" in side["timings_s"]
        rows = list(csv.DictReader((out / f"volume_{i:03d}.steps.csv").open()))
        # the deff target missed on this tiny model, so the run was extended up to 2 x --steps
        assert len(rows) == side["config"]["steps_run"] and 4 <= len(rows) <= 8
        assert 1 <= side["config"]["selected_step"] <= side["config"]["steps_run"]
        for col in ("step", "axis", "t", "prior_grad_norm", "vf:1:value", "vf:1:grad_norm", "s2:value", "deff:0@x:value", "deff:0@x:grad_norm"):
            assert col in rows[0] and rows[0][col] != "", col
    again = run_cli(capsys, *args)
    assert_one_line_error(again, "already exists")
    assert run_cli(capsys, *args, "--overwrite").exit_code == 0


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--target", "vf:3=0.3"], "unknown phase"),
        (["--target", "tau:0@q=2"], "unknown axis"),
        (["--target", "vf:0=1.0"], "(0, 1)"),
        (["--target", "vf:0=0.6", "--target", "vf:1=0.5"], "sum"),
        (["--target", "sa:1=-0.2"], "negative"),
        (["--target", "deff:0@x=0"], "(0, 1]"),
        (["--target", "deff:0@x=1.01"], "(0, 1]"),
        (["--target", "tau:0@z=0.9"], ">= 1"),
        (["--target", "vf:1:0.3"], "malformed"),
        (["--target", "volume=0.3"], "unknown kind"),
        (["--target", "vf:1=abc"], "number"),
        (["--target", "vf:1=0.3", "--weight", "sa=2"], "matches no target"),
        (["--target", "vf:1=0.3", "--weight", "vf:1=-1"], ">= 0"),
        (["--target", "vf:1=0.3", "--shape", "8", "8", "9"], "multiple"),
    ],
)
def test_invalid_input_is_one_line_error_exit_2_and_nothing_written(model_dir, tmp_path, capsys, extra, fragment):
    out = tmp_path / "bad"
    res = run_cli(capsys, "generate", model_dir, *BASE, *extra, "--out", out)
    assert res.exit_code == 2
    assert_one_line_error(res, fragment)
    assert not out.exists()


def test_sharding_under_torchrun_env(model_dir, tmp_path, capsys, monkeypatch, one_torch_thread):
    out = tmp_path / "shard"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    res = run_cli(capsys, "generate", model_dir, *BASE, "--target", "vf:2=0.3", "-n", "3", "--out", out)
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in out.glob("*.tif")) == ["volume_001.tif"]
    assert json.loads((out / "volume_001.json").read_text())["seed"] == 1


def test_generate_uncreatable_out_fails_before_any_work(model_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    res = run_cli(capsys, "generate", model_dir, *BASE, "--target", "vf:1=0.3", "--out", blocker / "sub")
    assert res.exit_code == 2
    assert_one_line_error(res, str(blocker))
    assert blocker.read_text() == "x" and not (blocker.parent / "sub").exists()


def test_generate_report_evaluates_the_guided_volumes(model_dir, tmp_path, capsys, one_torch_thread):
    out = tmp_path / "gen"
    res = run_cli(capsys, "generate", model_dir, *BASE, "--target", "vf:1=0.30", "--out", out, "--report")
    assert res.exit_code == 0, res.stderr
    doc = json.loads((out / "metrics.json").read_text())
    assert len(doc["volumes"]) == 1 and doc["volumes"][0]["name"] == "volume_000.tif"
    assert "<html" in (out / "report.html").read_text()[:500].lower()


def test_free_fraction_hint_names_only_unpinned_transport_phases():
    from microlad.cli.generate import free_fraction_hint
    from microlad.guidance.targets import parse_targets

    assert free_fraction_hint(parse_targets(["vf:1=0.3", "sa:0=0.1"])) == ""
    assert free_fraction_hint(parse_targets(["tau:0@z=5", "vf:0=0.2"])) == ""
    hint = free_fraction_hint(parse_targets(["tau:0@z=5", "deff:2@x=0.1", "vf:2=0.3"]))
    assert "phase(s) 0 " in hint and "vf:0=FRACTION" in hint and "vf:2" not in hint


def test_generate_from_the_grain_start_records_it_and_rejects_bad_options(tmp_path, capsys, one_torch_thread):
    out = tmp_path / "g"
    base = ["generate", "carbonate", "--shape", "16", "16", "16", "--steps", "2", "--lmpdd-steps", "4", "--no-progress",
            "--target", "vf:1=0.2"]
    res = run_cli(capsys, *base, "--init", "grains", "--grain-roughness", "1.5", "--out", out)
    assert res.exit_code == 0, res.stderr
    side = json.loads((out / "volume_000.json").read_text())
    assert side["config"]["init"] == "grains" and side["config"]["grain_roughness"] == 1.5
    assert_one_line_error(run_cli(capsys, *base, "--init", "spheres", "--out", tmp_path / "a"), "--init")
    assert_one_line_error(run_cli(capsys, *base, "--init", "grains", "--grain-roughness", "-2", "--out", tmp_path / "b"), "--grain-roughness")
    res = run_cli(capsys, "generate", "sofc-anode", *base[2:], "--init", "grains", "--out", tmp_path / "c")
    assert_one_line_error(res, "two-phase")
    assert not any((tmp_path / d / "volume_000.tif").exists() for d in "abc")
