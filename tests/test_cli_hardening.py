"""Issue #15: every bad input, shape and destination fails early with one line and exit 2."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import assert_one_line_error, run_cli
from microlad.synthetic import random_field_labels

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "vae_config": dict(latent_channels=2, base_channels=8, channel_multipliers=[1, 2], downsample_factor=2, norm_groups=4),
    "unet_config": dict(base_channels=8, channel_multipliers=[1, 2], attention=False, norm_groups=4),
    "options": dict(latent_bank=64, stats_patches=16, heldout_patches=16, log_every=10, warmup_steps=2, vae_rounds=1),
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from microlad.diffusion import DDPMSchedule
    from microlad.models import CategoricalVAE, UNet2D, UNetConfig, VAEConfig
    from microlad.model import MicroladModel

    torch.manual_seed(0)
    vae = CategoricalVAE(VAEConfig(n_phases=2, base_channels=8, norm_groups=4))
    unet = UNet2D(UNetConfig(in_channels=4, base_channels=16, channel_multipliers=(1, 2), norm_groups=4, attention_heads=2))
    stats = {"volume_fraction": [0.6, 0.4]}
    m = MicroladModel(vae, unet, DDPMSchedule(), grey_values=[0.0, 255.0], patch_size=16, training_stats=stats)
    path = tmp_path_factory.mktemp("model") / "tiny"
    m.save(path)
    return path


@pytest.fixture
def a_file(tmp_path) -> Path:
    f = tmp_path / "regular_file"
    f.write_text("not a folder\n")
    return f


def _volume(tmp_path, shape, seed=0) -> Path:
    path = tmp_path / ("v_" + "x".join(map(str, shape)) + ".npy")
    np.save(path, random_field_labels(shape, fractions=(0.6, 0.4), correlation_length=2.0, seed=seed))
    return path


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------ 1. any 3D shape


@pytest.mark.parametrize("shape", [(32, 48, 64), (3, 100, 100), (64, 100, 80)])
def test_properties_on_non_cubic_volumes(tmp_path, capsys, shape):
    vol = _volume(tmp_path, shape)
    js = tmp_path / "r.json"
    res = run_cli(capsys, "properties", vol, "--json", js, "--no-progress", *(["--no-transport"] if shape[1] == 100 and shape[0] == 64 else []))
    assert res.exit_code == 0, res
    assert f"3D volume {'x'.join(map(str, shape))}" in res.stdout
    rep = json.loads(js.read_text())
    c = min(shape) // 2  # the one documented cutoff rule, every axis
    assert rep["s2_cutoff"] == c
    for p in rep["phases"].values():
        for kind in ("s2", "s2_slices"):
            assert [len(p[kind][a]) for a in "zyx"] == [c + 1] * 3
    labels = np.load(vol)
    from microlad.descriptors import s2_axis

    # independent check of one curve: periodic S2 along x is the mean of I(x) I(x + r)
    ind = (labels == 1).astype(float)
    direct = [float(np.mean(ind * np.roll(ind, -r, axis=2))) for r in range(c + 1)]
    assert rep["phases"]["1"]["s2"]["x"] == pytest.approx(direct, abs=1e-7)
    assert np.allclose(s2_axis(labels, phase=1, axis=2, cutoff=c), direct)


def test_properties_api_uses_one_cutoff_for_every_axis():
    from microlad.evaluate import format_properties, properties

    vol = random_field_labels((64, 100, 80), fractions=(0.5, 0.5), correlation_length=2.0, seed=1)
    rep = properties(vol, transport=False)
    assert {len(v) for p in rep["phases"].values() for k in ("s2", "s2_slices") for v in p[k].values()} == {33}
    assert "3D volume 64x100x80" in format_properties(rep)


# ------------------------------------------------------------------ 2. destinations


def _bad_dirs(a_file: Path) -> list[tuple[Path, str]]:
    cases = [(a_file / "out", "is a file"), (a_file, "not a folder")]
    if Path("/proc").is_dir():
        cases.append((Path("/proc/out"), "cannot create"))
    return cases


def test_reconstruct_with_an_uncreatable_out_fails_at_once(model_dir, a_file, capsys):
    for out, msg in _bad_dirs(a_file):
        t0 = time.perf_counter()
        res = run_cli(capsys, "reconstruct", model_dir, "--shape", "16", "16", "16", "--out", out, "--no-progress")
        assert time.perf_counter() - t0 < 5.0
        assert_one_line_error(res, msg)
        assert res.exit_code == 2
    assert a_file.read_text() == "not a folder\n"


def test_demo_and_train_with_an_uncreatable_out_fail_at_once(model_dir, a_file, tmp_path, capsys):
    img = tmp_path / "img.npy"
    np.save(img, random_field_labels((32, 32), fractions=(0.5, 0.5), correlation_length=2.0, seed=0))
    for out, msg in _bad_dirs(a_file):
        t0 = time.perf_counter()
        assert_one_line_error(run_cli(capsys, "demo", "--model", model_dir, "--size", "16", "--out", out), msg)
        assert_one_line_error(run_cli(capsys, "train", img, "--out", out, "--no-progress"), msg)
        assert time.perf_counter() - t0 < 5.0


def test_properties_json_that_cannot_be_written_fails_before_any_work(tmp_path, a_file, capsys):
    vol = _volume(tmp_path, (8, 8, 8))
    for js, msg in [(a_file / "x.json", "is a file"), (tmp_path, "is a folder")] + ([(Path("/proc/x.json"), "cannot create")] if Path("/proc").is_dir() else []):
        res = run_cli(capsys, "properties", vol, "--json", js)
        assert_one_line_error(res, msg)
        assert res.exit_code == 2 and res.stdout == ""  # no report computed
    assert _files(tmp_path) == sorted([vol, a_file])


def test_an_unexpected_exception_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    import microlad.evaluate as ev

    def boom(*a, **k):
        raise RuntimeError("solver exploded\nsecond line")

    monkeypatch.setattr(ev, "properties", boom)
    vol = _volume(tmp_path, (8, 8, 8))
    res = run_cli(capsys, "properties", vol, "--json", tmp_path / "r.json")
    assert_one_line_error(res, "RuntimeError", "solver exploded", "--debug")
    assert res.exit_code == 2 and not (tmp_path / "r.json").exists()
    with pytest.raises(RuntimeError):  # --debug (after the subcommand): the real exception
        from microlad.cli import main

        main(["properties", str(vol), "--debug"])


# ------------------------------------------------------------------ 3. threads


def test_thread_policy(monkeypatch):
    from microlad.cli import _threads as t

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(t, "available_cores", lambda: 8)
    monkeypatch.setattr(t, "busy_cpus", lambda: 0)
    assert t.resolve_threads(None) == 7  # one core left free
    monkeypatch.setattr(t, "busy_cpus", lambda: 3)
    assert t.resolve_threads(None) == 5  # the busy cores are not contended for
    monkeypatch.setattr(t, "busy_cpus", lambda: 12)
    assert t.resolve_threads(None) == 1
    assert t.resolve_threads(None, small=True) == 1
    assert t.resolve_threads(3) == 3  # --threads wins
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert t.resolve_threads(None) == 2
    monkeypatch.setattr(t, "available_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(t, "busy_cpus", lambda: 0)
    assert t.resolve_threads(None) == 1
    assert t.busy_cpus.__module__  # the real sampler exists
    monkeypatch.undo()
    assert t.busy_cpus() >= 0


@pytest.mark.parametrize("cmd", [["reconstruct", "MODEL", "--shape", "16", "16", "16"], ["demo"], ["properties", "VOL"], ["train", "VOL", "--out", "OUT"]])
def test_every_heavy_command_takes_threads(cmd, model_dir, tmp_path, capsys):
    args = [str(model_dir) if a == "MODEL" else str(_volume(tmp_path, (8, 8, 8))) if a == "VOL" else str(tmp_path / "o") if a == "OUT" else a for a in cmd]
    assert_one_line_error(run_cli(capsys, *args, "--threads", "0"), "--threads")


def test_reconstruct_sets_the_requested_threads(model_dir, tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        res = run_cli(capsys, "reconstruct", model_dir, "--shape", "16", "16", "16", "--steps", "2", "--out", tmp_path / "o", "--no-progress", "--threads", "2")
        assert res.exit_code == 0, res
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ 5. smaller defects


def _tiny_train(tmp_path, *extra, images=None, capsys=None):
    if images is None:
        img = tmp_path / "a.npy"
        np.save(img, random_field_labels((48, 48), fractions=(0.5, 0.5), correlation_length=2.0, seed=0).astype(np.uint8) * 255)
        images = [img]
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    return run_cli(capsys, "train", *images, "--config", cfg, "--patch", "16", "--vae-steps", "4", "--ldm-steps", "4",
                   "--batch", "4", "--no-progress", *extra)


def test_model_files_are_written_with_the_usual_permissions(tmp_path, capsys):
    res = _tiny_train(tmp_path, "--out", tmp_path / "m", capsys=capsys)
    assert res.exit_code == 0, res
    want = 0o666 & ~_umask()
    for name in ("config.json", "vae.safetensors", "unet_ema.safetensors", "train_state.safetensors", "train_state.json"):
        assert stat.S_IMODE(os.stat(tmp_path / "m" / name).st_mode) == want, name


def _umask() -> int:
    u = os.umask(0)
    os.umask(u)
    return u


def test_tpb_unit_follows_voxel_size(tmp_path, capsys):
    vol = tmp_path / "three.npy"
    rng = np.random.default_rng(0)
    np.save(vol, rng.integers(0, 3, (12, 12, 12)).astype(np.uint8))
    plain = run_cli(capsys, "properties", vol, "--no-transport")
    scaled = run_cli(capsys, "properties", vol, "--no-transport", "--voxel-size", "0.5")
    assert "1/voxel^2" in plain.stdout and "1/length^2" in scaled.stdout and "1/voxel^2" not in scaled.stdout
    v1 = float(plain.stdout.split("boundary density: ")[1].split()[0])
    v2 = float(scaled.stdout.split("boundary density: ")[1].split()[0])
    assert v2 == pytest.approx(v1 / 0.25, rel=1e-5)  # a length per volume: 1 / voxel_size^2


def test_training_warnings_are_printed_once(tmp_path, capsys):
    a, b, thin = tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "thin.npy"
    img = random_field_labels((48, 48), fractions=(0.5, 0.5), correlation_length=2.0, seed=0).astype(np.uint8)
    np.save(a, img * 255)
    np.save(b, img * 100)  # same phases, other grey values
    np.save(thin, random_field_labels((8, 48, 48), fractions=(0.5, 0.5), correlation_length=2.0, seed=1).astype(np.uint8) * 255)
    res = _tiny_train(tmp_path, "--out", tmp_path / "m", images=[a, b, thin], capsys=capsys)
    assert res.exit_code == 0, res
    assert res.stderr.count("different grey values") == 1, res.stderr
    assert res.stderr.count("smaller than the patch") == 1, res.stderr


@pytest.mark.parametrize("extra, message", [
    (["--vf", "0.5", "--vf", "0.4", "--vf", "0.3"], "one value per phase"),
    (["--vf", "0.7", "--vf", "0.5"], "sum to 1"),
    (["--vf", "1.2", "--vf", "-0.2"], "between 0 and 1"),
    (["--vf", "0.6", "--vf", "0.4", "--no-match-vf"], "--no-match-vf"),
])
def test_reconstruct_vf_is_checked(model_dir, tmp_path, capsys, extra, message):
    res = run_cli(capsys, "reconstruct", model_dir, "--shape", "16", "16", "16", "--out", tmp_path / "o", "--no-progress", *extra)
    assert_one_line_error(res, message)
    assert res.exit_code == 2 and not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag", ["--vae-steps", "--ldm-steps", "--batch", "--patch", "--checkpoint-every"])
def test_train_zero_steps_is_an_error(tmp_path, capsys, flag):
    img = tmp_path / "a.npy"
    np.save(img, np.eye(32, dtype=np.uint8))
    res = run_cli(capsys, "train", img, "--out", tmp_path / "m", flag, "0")
    assert_one_line_error(res, flag)
    assert res.exit_code == 2 and not (tmp_path / "m").exists()


def test_debug_and_verbose_work_after_the_subcommand(tmp_path, capsys):
    import logging

    from microlad.cli import main
    from microlad.errors import InputError

    vol = _volume(tmp_path, (8, 8, 8))
    res = run_cli(capsys, "properties", vol, "--no-transport", "-v")
    assert res.exit_code == 0, res
    assert logging.getLogger().level == logging.INFO
    res = run_cli(capsys, "properties", vol, "--no-transport")
    assert logging.getLogger().level == logging.WARNING
    with pytest.raises(InputError, match="no such file"):  # --debug re-raises the real error
        main(["properties", str(tmp_path / "missing.npy"), "--debug"])


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    p = subprocess.run([sys.executable, "-m", "microlad", "properties", str(tmp_path / "missing.npy"), "--debug"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode != 0 and "Traceback" in p.stderr and "no such file" in p.stderr


def test_ctrl_c_says_interrupted_and_exits_130(model_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "microlad", "reconstruct", str(model_dir), "--shape", "64", "64", "64", "--steps", "200",
         "--out", str(tmp_path / "o"), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # a test run started in the background (nohup ... &) inherits SIGINT ignored, and a
        # Python child then never installs its KeyboardInterrupt handler: give it the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(4.0)  # imports done, sampling under way
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines()[-1] == "error: interrupted"
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_resume_says_where_it_resumes_from(tmp_path, capsys):
    res = _tiny_train(tmp_path, "--out", tmp_path / "m", "--resume", capsys=capsys)
    assert res.exit_code == 0, res
    assert "no checkpoint in" in res.stdout and "starting a fresh run" in res.stdout
    res = _tiny_train(tmp_path, "--out", tmp_path / "m", "--resume", capsys=capsys)
    assert res.exit_code == 0, res
    assert "resume: from" in res.stdout and "VAE step 4/4" in res.stdout and "LDM step 4/4" in res.stdout


def test_a_killed_training_run_points_to_resume(model_dir, tmp_path, capsys):
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in ("train_state.safetensors", "train_state.json"):
        (killed / name).write_bytes(b"{}")
    res = run_cli(capsys, "reconstruct", killed, "--shape", "16", "16", "16", "--out", tmp_path / "o")
    assert_one_line_error(res, "did not finish", "--resume")
    assert res.exit_code == 2


def test_many_grey_values_message_names_real_options(tmp_path, capsys):
    img = tmp_path / "grey.npy"
    np.save(img, np.linspace(0, 1, 48 * 48).reshape(48, 48))
    res = run_cli(capsys, "train", img, "--out", tmp_path / "m")
    assert_one_line_error(res, "distinct grey values")
    assert "pass thresholds" not in res.stderr
    # the option it names exists and works
    res = run_cli(capsys, "properties", img, "--threshold", "0.5", "--no-transport")
    assert res.exit_code == 0, res
