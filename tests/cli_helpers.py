"""Run the CLI in-process through its real entry point and capture what a user sees."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from microlad.cli import main


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return Result(code, out.out, out.err)


def assert_one_line_error(res: Result, *fragments: str) -> None:
    """Non-zero exit, exactly one 'error: ...' line on stderr naming the problem."""
    assert res.exit_code != 0, res
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one stderr line, got: {res.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in res.stderr
    for frag in fragments:
        assert frag.lower() in lines[0].lower(), (frag, lines[0])


def save_tiny_model(path, fractions, *, s2_drop: float, grey_values, cutoff: int = 8):
    """Save a seeded tiny, untrained model (VAE base 8, U-Net base 16, patch 16) whose stored
    training statistics are ``fractions`` and linear S2 curves falling by ``s2_drop`` to
    r = ``cutoff``; returns ``path``."""
    import torch

    from microlad.diffusion import DDPMSchedule
    from microlad.model import MicroladModel
    from microlad.models import CategoricalVAE, UNet2D, UNetConfig, VAEConfig

    torch.manual_seed(0)
    vae = CategoricalVAE(VAEConfig(n_phases=len(fractions), base_channels=8, norm_groups=4))
    unet = UNet2D(UNetConfig(in_channels=4, base_channels=16, channel_multipliers=(1, 2), norm_groups=4, attention_heads=2))
    stats = {"volume_fraction": list(fractions),
             "s2_radial_mean": [[v - s2_drop * r / cutoff for r in range(cutoff + 1)] for v in fractions]}
    MicroladModel(vae, unet, DDPMSchedule(), grey_values=list(grey_values), patch_size=16, training_stats=stats).save(path)
    return path
