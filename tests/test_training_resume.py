"""A training process killed with SIGKILL resumes from its last checkpoint and finishes exactly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from microlad.synthetic import random_field_labels

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

TINY = {
    "vae_config": dict(latent_channels=2, base_channels=8, channel_multipliers=[1, 2], downsample_factor=2, norm_groups=4),
    "unet_config": dict(base_channels=8, channel_multipliers=[1, 2], attention=False, norm_groups=4),
    "options": dict(latent_bank=64, stats_patches=16, heldout_patches=16, log_every=10, warmup_steps=2, vae_rounds=1),
}
STEPS = 60


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def test_sigkill_then_resume_finishes_with_full_step_count(tmp_path):
    img = random_field_labels((48, 48), fractions=(0.5, 0.5), correlation_length=2.0, seed=5)
    np.save(tmp_path / "img.npy", img)
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "microlad", "train", str(tmp_path / "img.npy"), "--out", str(out),
           "--config", str(tmp_path / "tiny.json"), "--patch", "16", "--vae-steps", str(STEPS),
           "--ldm-steps", str(STEPS), "--batch", "4", "--checkpoint-every", "5", "--seed", "3", "--no-progress"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state_file = out / "train_state.json"
    deadline = time.monotonic() + 90
    while not state_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    killed = json.loads(state_file.read_text())
    assert killed["stage"] != "done" and killed["vae_step"] < STEPS
    assert not (out / "config.json").exists()

    done = subprocess.run(cmd + ["--resume"], env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"VAE: {STEPS} steps" in done.stdout and f"LDM: {STEPS} steps" in done.stdout
    state = json.loads(state_file.read_text())
    assert (state["stage"], state["vae_step"], state["ldm_step"]) == ("done", STEPS, STEPS)
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".pickle") or p.name.endswith(".tmp")]
    from microlad.model import load_model

    model = load_model(out)
    assert model.training_stats.report.steps == {"vae": STEPS, "ldm": STEPS}

    # the killed-and-resumed run equals an uninterrupted one (same seed, one thread)
    from microlad.io import read_image
    from microlad.models import UNetConfig, VAEConfig
    from microlad.training import TrainOptions, train

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(read_image(tmp_path / "img.npy"), tmp_path / "ref", patch=16, vae_steps=STEPS, ldm_steps=STEPS, batch=4,
              seed=3, progress=False, vae_config=VAEConfig(n_phases=2, **TINY["vae_config"]),
              unet_config=UNetConfig(in_channels=2, **TINY["unet_config"]), options=TrainOptions(**TINY["options"]))
    finally:
        torch.set_num_threads(n)
    for name in ("vae.safetensors", "unet_ema.safetensors"):
        a, b = load_file(out / name), load_file(tmp_path / "ref" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
