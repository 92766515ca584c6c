"""``torchrun --nproc_per_node=2 -m microlad train`` on CPU (gloo): completes and loads."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from microlad.synthetic import random_field_labels

TORCHRUN = Path(sys.executable).with_name("torchrun")
TINY = {
    "vae_config": dict(latent_channels=2, base_channels=8, channel_multipliers=[1, 2], downsample_factor=2, norm_groups=4),
    "unet_config": dict(base_channels=8, channel_multipliers=[1, 2], attention=False, norm_groups=4),
    "options": dict(latent_bank=64, stats_patches=16, heldout_patches=16, log_every=5, warmup_steps=2, vae_rounds=1),
}


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside python")
def test_torchrun_two_processes_cpu(tmp_path):
    img = random_field_labels((48, 48), fractions=(0.5, 0.5), correlation_length=2.0, seed=7)
    np.save(tmp_path / "img.npy", img)
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    out = tmp_path / "model"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "microlad", "train", str(tmp_path / "img.npy"),
           "--out", str(out), "--config", str(tmp_path / "tiny.json"), "--patch", "16", "--vae-steps", "10",
           "--ldm-steps", "10", "--batch", "4", "--checkpoint-every", "5", "--device", "cpu", "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert proc.stdout.count("VAE: 10 steps") == 1  # rank 0 prints the summary, once
    assert "x 2 processes" in proc.stdout

    from microlad.models import UNet2D, UNetConfig
    from microlad.model import load_model
    from microlad.training import load_train_state

    model = load_model(out)
    assert model.training_stats.report.world_size == 2
    tensors, state = load_train_state(out)
    assert state["world_size"] == 2 and state["stage"] == "done"
    assert {f"rng/rank{r}/data" for r in (0, 1)} <= set(tensors)
    # checkpoints hold unwrapped modules: the keys are those of a plain single-process U-Net
    unet = UNet2D(UNetConfig.from_dict(state["run"]["unet_config"]))
    unet.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("unet/")})
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".pickle")]
