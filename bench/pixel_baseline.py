"""Pixel-space multi-plane diffusion baseline (Micro3Diff-style) for ``bench/bench_pixel_baseline.py``.

Not part of the library: it exists to measure what working in the VAE's latent space buys.
It reuses the library's parts unchanged, only the space differs:

* denoiser: :class:`microlad.models.UNet2D` (the same family as our latent U-Net) on one-hot
  phase maps, ``x0 = 2·onehot − 1`` of shape (B, P, 64, 64), P = number of phases;
* data: :class:`microlad.data.PatchSampler` (64² patches, the same D4 augmentation as
  ``microlad train``);
* schedule and target: :class:`microlad.diffusion.DDPMSchedule` with the library defaults
  (cosine, v-prediction, T = 1000), MSE on the target, Adam, warm-up + cosine LR, EMA weights;
* 3D sampling: :func:`microlad.reconstruct.lmpdd.sample_latent_volume` run on a
  (P, Z, Y, X) *pixel* volume without slice coupling, i.e. every sampler step denoises all
  slices normal to one axis as a batch, cycling z, y, x (the paper's multi-plane scheme in
  pixel space); labels = argmax over the P channels.

Training runs for a budget of *process CPU seconds* (``time.process_time``), not a step
count, so that the baseline gets the same compute as our model regardless of how loaded the
machine is; the LR schedule is a function of the fraction of the budget used.

U-Net for 64² pixels (``PIXEL_UNET``): four levels 64 → 32 → 16 → 8 with widths
16, 32, 64, 64, one ResNet block per level, self-attention in the middle block at 8², i.e.
the same block structure as our latent U-Net (attention only at the lowest resolution,
lowest width 64) with one more level because the input is 4× larger per side. A base width
of 32 costs 2.6× more CPU per training step and per sampling step (measured before the run),
which at an equal CPU budget means 2.6× fewer training steps.

Usage (training): python bench/pixel_baseline.py IMAGE OUT_DIR [--cpu-budget 1213] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from microlad.data import PatchSampler
from microlad.diffusion import DDPMSchedule
from microlad.io import atomic_path, write_json
from microlad.models import UNetConfig
from microlad.models._unet import UNet2D
from microlad.reconstruct._chunks import channels_last
from microlad.reconstruct.lmpdd import sample_latent_volume

__all__ = ["PIXEL_UNET", "PixelTrainSettings", "PixelBaseline", "train_pixel", "load_pixel", "sample_pixel_volume"]

log = logging.getLogger("bench.pixel_baseline")

WEIGHTS_NAME = "unet_ema.safetensors"
CONFIG_NAME = "config.json"


def pixel_unet_config(n_phases: int) -> UNetConfig:
    """The pixel U-Net (see the module docstring for the choice): in/out channels = P."""
    return UNetConfig(in_channels=n_phases, base_channels=16, channel_multipliers=(1, 2, 4, 4),
                      num_res_blocks=1, attention=True, attention_heads=4, norm_groups=8)


PIXEL_UNET = pixel_unet_config(3)
"""The configuration for three phases (the SOFC anode)."""


@dataclass(frozen=True)
class PixelTrainSettings:
    """Training settings; everything but the budget as ``microlad train``'s LDM stage.

    cpu_budget_s : process CPU seconds (``time.process_time``) to train for.
    batch : patches per step (``microlad train``'s batch).
    lr, warmup_steps, min_lr_ratio : peak Adam LR (the LDM's), linear warm-up steps, final
        LR of the cosine decay relative to the peak (cosine over the CPU budget).
    ema_decay, grad_clip : as :class:`microlad.training.TrainOptions`.
    """

    cpu_budget_s: float = 1213.0
    batch: int = 16
    patch: int = 64
    seed: int = 0
    lr: float = 4e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    log_every: int = 25


@dataclass
class PixelBaseline:
    """A trained pixel-space denoiser: EMA U-Net, its schedule and the phase count."""

    unet: UNet2D
    schedule: DDPMSchedule
    n_phases: int
    report: dict


def _lr(step: int, used: float, s: PixelTrainSettings) -> float:
    """Linear warm-up over the first steps, then cosine decay over the CPU-budget fraction used."""
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    progress = min(1.0, used / s.cpu_budget_s)
    return s.lr * (s.min_lr_ratio + (1.0 - s.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train_pixel(image, out_dir: str | Path, settings: PixelTrainSettings = PixelTrainSettings(),
                *, schedule: DDPMSchedule | None = None, unet_config: UNetConfig | None = None,
                source: str = "array") -> PixelBaseline:
    """Train the pixel denoiser on one-hot 64² patches of ``image`` until the CPU budget is spent.

    ``image``: a label array / path accepted by :class:`PatchSampler` (``source`` names it in
    the config). Writes
    ``OUT_DIR/unet_ema.safetensors`` and ``OUT_DIR/config.json`` (configs, steps, CPU and
    wall seconds, losses). Seeded: the data and noise come from generators seeded by
    ``settings.seed``; with the same budget the number of steps depends on the machine.
    """
    out_dir = Path(out_dir)
    schedule = schedule or DDPMSchedule()
    sampler = PatchSampler(image, patch=settings.patch, augment=True)
    p = sampler.n_phases
    cfg = unet_config or pixel_unet_config(p)
    torch.manual_seed(settings.seed)
    unet = UNet2D(cfg)
    ema = UNet2D(cfg)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.Adam(unet.parameters(), lr=settings.lr)
    data_gen = torch.Generator().manual_seed(settings.seed)
    noise_gen = torch.Generator().manual_seed(settings.seed + 1)
    n_t = schedule.num_train_timesteps
    losses: list[float] = []
    history: list[dict] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    step, used = 0, 0.0
    unet.train()
    while used < settings.cpu_budget_s:
        lr = _lr(step, used, settings)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.no_grad():
            x0 = sampler.sample(settings.batch, data_gen) * 2.0 - 1.0
            t = torch.randint(0, n_t, (settings.batch,), generator=noise_gen)
            noise = torch.randn(x0.shape, generator=noise_gen)
            xt = schedule.add_noise(x0, noise, t)
            target = schedule.training_target(x0, noise, t)
        loss = F.mse_loss(unet(xt, t), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(unet.parameters(), settings.grad_clip)
        if torch.isfinite(norm):
            opt.step()
            decay = min(settings.ema_decay, (1.0 + step) / (10.0 + step))
            with torch.no_grad():
                for e, q in zip(ema.parameters(), unet.parameters()):
                    e.lerp_(q, 1.0 - decay)
        losses.append(loss.item())
        step += 1
        used = time.process_time() - cpu0
        if step % settings.log_every == 0:
            mean = sum(losses[-settings.log_every:]) / settings.log_every
            history.append({"step": step, "loss": mean, "cpu_s": round(used, 1), "wall_s": round(time.perf_counter() - wall0, 1), "lr": lr})
            log.info("step %d  loss %.4f  lr %.2e  cpu %.0f/%.0f s  wall %.0f s", step, mean, lr, used,
                     settings.cpu_budget_s, time.perf_counter() - wall0)
    report = {
        "steps": step,
        "cpu_s": round(used, 1),
        "wall_s": round(time.perf_counter() - wall0, 1),
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "torch_threads": torch.get_num_threads(),
        "history": history,
    }
    ema.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / WEIGHTS_NAME, overwrite=True) as tmp:
        save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(tmp))
    write_json(out_dir / CONFIG_NAME, {
        "format": "microlad-pixel-baseline", "n_phases": p, "unet": cfg.to_dict(), "schedule": schedule.to_dict(),
        "settings": settings.__dict__, "input": source,
        "report": report}, overwrite=True)
    return PixelBaseline(ema, schedule, p, report)


def load_pixel(directory: str | Path) -> PixelBaseline:
    """Load what :func:`train_pixel` wrote (safetensors + JSON, no pickle)."""
    directory = Path(directory)
    meta = json.loads((directory / CONFIG_NAME).read_text())
    unet = UNet2D(UNetConfig.from_dict(meta["unet"]))
    unet.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
    unet.eval()
    channels_last(unet)  # the layout our reconstruct() uses too (faster oneDNN convolutions)
    return PixelBaseline(unet, DDPMSchedule.from_dict(meta["schedule"]), int(meta["n_phases"]), meta["report"])


def sample_pixel_volume(model: PixelBaseline, shape: tuple[int, int, int], *, steps: int, sampler: str = "ddim",
                        seed: int = 0, progress: bool = False) -> torch.Tensor:
    """Multi-plane pixel-space sampling of one (Z, Y, X) volume; returns uint8 labels (Z, Y, X).

    The (P, Z, Y, X) pixel volume starts as N(0, I); each of ``steps`` sampler steps runs the
    U-Net on all slices normal to one axis (z, y, x cycled) and applies one DDIM/ancestral
    step; the labels are the argmax over the P channels of the final volume.
    """
    gen = torch.Generator().manual_seed(seed)
    x = sample_latent_volume(model.unet, model.schedule, (model.n_phases, *shape), steps=steps, sampler=sampler,
                             slice_coupling=False, generator=gen, progress=progress)
    return x.argmax(dim=0).to(torch.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train the pixel-space baseline denoiser for a CPU-time budget.")
    ap.add_argument("image")
    ap.add_argument("out_dir")
    ap.add_argument("--cpu-budget", type=float, default=PixelTrainSettings.cpu_budget_s,
                    help="process CPU seconds to train for (default: our model's total training time)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=PixelTrainSettings.batch)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    from microlad.io import read_image

    labels = read_image(args.image).labels
    settings = PixelTrainSettings(cpu_budget_s=args.cpu_budget, seed=args.seed, batch=args.batch)
    model = train_pixel(labels, args.out_dir, settings, source=str(Path(args.image).resolve()))
    r = model.report
    print(f"trained {r['steps']} steps in {r['cpu_s']} CPU s ({r['wall_s']} s wall); final loss {r['final_loss']:.4f}; "
          f"weights in {Path(args.out_dir) / WEIGHTS_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
