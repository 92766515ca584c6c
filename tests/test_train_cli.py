"""``microlad train`` command: exit codes, files written, summary and one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from microlad.cli import main
from microlad.synthetic import random_field_labels

TINY = {
    "vae_config": dict(latent_channels=2, base_channels=8, channel_multipliers=[1, 2], downsample_factor=2, norm_groups=4),
    "unet_config": dict(base_channels=8, channel_multipliers=[1, 2], attention=False, norm_groups=4),
    "options": dict(latent_bank=64, stats_patches=16, heldout_patches=16, log_every=10, warmup_steps=2, vae_rounds=1),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def files(tmp_path):
    img = random_field_labels((48, 48), fractions=(0.5, 0.5), correlation_length=2.0, seed=0)
    np.save(tmp_path / "a.npy", img * 255)  # grey values 0 / 255
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    return tmp_path


def _run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def _train_args(files, out, *extra):
    return ["train", files / "a.npy", "--out", out, "--config", files / "tiny.json", "--patch", "16",
            "--vae-steps", "10", "--ldm-steps", "10", "--batch", "4", "--no-progress", *extra]


def test_cli_train_writes_model_and_prints_summary(files, capsys):
    out = files / "model"
    code, stdout, _ = _run(_train_args(files, out), capsys)
    assert code in (0, None)
    assert {p.name for p in out.iterdir()} == {"config.json", "vae.safetensors", "unet_ema.safetensors",
                                               "train_state.safetensors", "train_state.json"}
    assert not [p for p in files.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".pickle")]
    for key in ("model:", "VAE: 10 steps", "accuracy", "LDM: 10 steps", "2D prior sampler:", "time:"):
        assert key in stdout
    # the whole image's pixel fractions (what reconstruct matches), not the patch mean
    img = np.load(files / "a.npy")
    assert f"volume fractions [{np.mean(img == 0):.3f}, {np.mean(img == 255):.3f}]" in stdout
    from microlad.model import load_model

    model = load_model(out)
    assert model.grey_values == (0.0, 255.0) and model.patch_size == 16
    # a second run into the same directory needs --resume or --overwrite
    code, _, err = _run(_train_args(files, out), capsys)
    assert code == 2 and err.startswith("error: ") and "not empty" in err and err.count("\n") == 1
    code, stdout, _ = _run(_train_args(files, out, "--resume"), capsys)  # already complete: loads
    assert code in (0, None) and "VAE: 10 steps" in stdout


def test_cli_vae_rounds_flag_trains_another_round_while_the_round_trip_is_lossy(files, capsys):
    out = files / "rounds"
    code, stdout, _ = _run(_train_args(files, out, "--vae-rounds", "2"), capsys)
    assert code in (0, None)
    from microlad.model import load_model

    rep = load_model(out).training_stats.report
    first = rep.vae_rounds[0]
    # a 10-step VAE loses far more than 3 % of the slice perimeter: the second round runs
    assert first["worst"] > 0.03 and first["extend"] and len(rep.vae_rounds) == 2
    assert rep.steps["vae"] == 20 and "VAE: 20 steps" in stdout and "VAE rounds: 2" in stdout
    code, listing, _ = _run(["models", out], capsys)  # the model card shows the final check
    last = rep.vae_rounds[-1]["perimeter_error"]
    assert code in (0, None) and "after 2 VAE round(s)" in listing
    assert "round-trip slice perimeter per phase " + ", ".join(f"{100 * e:+.1f} %" for e in last) in listing
    code, _, err = _run(_train_args(files, files / "r0", "--vae-rounds", "0"), capsys)
    assert code == 2 and "--vae-rounds" in err and err.count("\n") == 1


def test_cli_bad_inputs_are_one_line_errors(files, capsys):
    np.save(files / "grey.npy", np.linspace(0, 1, 48 * 48).reshape(48, 48))
    np.save(files / "three.npy", np.random.default_rng(0).integers(0, 3, (48, 48)))
    cases = [
        (["train", files / "grey.npy", "--out", files / "o1"], "grey values"),
        (["train", files / "a.npy", files / "three.npy", "--out", files / "o2"], "different phase counts"),
        (["train", files / "missing.npy", "--out", files / "o3"], "no such file"),
        (["train", files / "a.npy", "--out", files / "o4", "--patch", "64"], "smaller than the patch"),
        (["train", files / "a.npy", "--out", files / "o5", "--device", "nonsense"], "device"),
    ]
    for args, expected in cases:
        code, _, err = _run(args, capsys)
        assert code == 2, args
        assert err.startswith("error: ") and expected in err and err.count("\n") == 1, err
    assert not any((files / f"o{i}").exists() for i in range(1, 6))
