"""Two-stage MicroLad training: categorical VAE (METHOD.md §2), then latent DDPM (§3)."""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from microlad._version import __version__
from microlad.data import LabelImages, PatchSampler, as_label_images
from microlad.errors import CheckpointError, InputError, OutputExistsError
from microlad.models import CategoricalVAE, UNet2D, UNetConfig, VAEConfig, phase_class_weights, vae_loss
from microlad.training._checkpoint import (
    flatten_optimizer,
    has_train_state,
    load_train_state,
    remove_stale_temporaries,
    save_train_state,
    unflatten_optimizer,
)
from microlad.training._distributed import DistContext
from microlad.training._options import (
    DEFAULT_BATCH,
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_LDM_STEPS,
    DEFAULT_PATCH,
    DEFAULT_VAE_STEPS,
    TrainOptions,
    lr_at,
)
from microlad.training._stats import encoder_moments, heldout_reconstruction, patch_statistics

__all__ = ["train"]

log = logging.getLogger("microlad.training")

# Independent random streams derived from (seed, stream, rank) with numpy's SeedSequence.
_STREAMS = {"init": 0, "data": 1, "noise": 2, "stats": 3, "bank": 4, "numpy": 5, "global": 6}
# Files a previous run may have left in out_dir; --overwrite removes exactly these.
_OWN_FILES = ("config.json", "vae.safetensors", "unet_ema.safetensors", "train_state.safetensors", "train_state.json")


def _derive_seed(seed: int, stream: str, rank: int = 0, extra: int = 0) -> int:
    ss = np.random.SeedSequence([seed, _STREAMS[stream], rank, extra])
    return int(ss.generate_state(1, dtype=np.uint64)[0] & ((1 << 63) - 1))


def _schedule_to_dict(schedule: Any) -> dict[str, Any]:
    if hasattr(schedule, "to_dict"):
        return dict(schedule.to_dict())
    if hasattr(schedule, "config"):
        return dict(schedule.config)
    raise InputError(f"schedule {type(schedule).__name__} has no to_dict(); pass a microlad.diffusion.DDPMSchedule")


def _schedule_from_dict(data: dict[str, Any]) -> Any:
    from microlad.diffusion import DDPMSchedule

    if hasattr(DDPMSchedule, "from_dict"):
        return DDPMSchedule.from_dict(data)
    return DDPMSchedule(**data)


def _dir_is_empty(path: Path) -> bool:
    return not path.exists() or not any(p for p in path.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp")))


@contextlib.contextmanager
def _torch_settings(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms and a private global RNG for the duration of training."""
    if device.type == "cuda":  # cuBLAS needs this for deterministic matmuls (read at first use)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


class _Meter:
    """Running sums of loss parts between two log lines."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, **parts: float) -> None:
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.n += 1

    def flush(self, ctx: DistContext) -> dict[str, float]:
        """Mean of every part since the last flush, averaged over ranks (collective)."""
        out = {k: ctx.mean(v / max(1, self.n)) for k, v in sorted(self.sums.items())}
        self.sums, self.n = {}, 0
        return out


def train(
    images: Any,
    out_dir: str | Path,
    *,
    patch: int | None = None,
    vae_steps: int | None = None,
    ldm_steps: int | None = None,
    batch: int | None = None,
    seed: int | None = None,
    device: str | torch.device = "auto",
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    progress: bool = True,
    augment: bool | None = None,
    vae_config: VAEConfig | None = None,
    unet_config: UNetConfig | None = None,
    schedule: Any = None,
    options: TrainOptions | None = None,
):
    """Train a MicroLad model (VAE + latent DDPM) on segmented 2D images or 3D volumes.

    Stage 1 trains a :class:`~microlad.models.CategoricalVAE` on random one-hot patches
    (Adam, phase-balanced cross-entropy + β·KL). The per-channel mean and std of the
    encoder means over ``options.stats_patches`` patches become the VAE's latent shift and
    scale, and the training statistics and a reconstruction report are computed. Stage 2
    trains a :class:`~microlad.models.UNet2D` to predict the DDPM target on normalized
    latents of augmented patches (Adam, warm-up + cosine LR, EMA of the weights, which the
    returned model samples with).

    Parameters
    ----------
    images
        A label array (Y, X) or (Z, Y, X) with phases 0..P-1, a
        :class:`~microlad.io.Segmented`, or a list of them (same phase count). Volumes
        contribute slices along all three axes.
    out_dir
        Model directory: ``config.json``, ``vae.safetensors``, ``unet_ema.safetensors``
        and the training checkpoint ``train_state.safetensors`` + ``train_state.json``.
    patch, vae_steps, ldm_steps, batch, seed, augment
        Patch side (default 64), steps of each stage (defaults
        :data:`DEFAULT_VAE_STEPS`, :data:`DEFAULT_LDM_STEPS`), global batch (split over
        ranks; default 16), seed (0) and dihedral augmentation (True; turn it off for
        anisotropic materials). When resuming, ``None`` means "as in the checkpoint" and
        a different explicit value is an :class:`InputError`.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or a torch device; under ``torchrun`` each rank
        uses ``cuda:LOCAL_RANK`` on GPUs.
    resume
        Continue from the checkpoint in ``out_dir``; the run ends with the same total
        number of steps and, with the same world size and device, the same weights as an
        uninterrupted run. Without a checkpoint, an empty ``out_dir`` starts fresh.
    overwrite
        Allow a fresh run in a non-empty ``out_dir`` (removes a previous model/checkpoint
        there; other files are left alone).
    checkpoint_every
        Steps between checkpoints (also written at the end of each stage).
    progress
        Show tqdm progress bars (rank 0 only).
    vae_config, unet_config, schedule, options
        Architectures, :class:`~microlad.diffusion.DDPMSchedule` and
        :class:`TrainOptions`; defaults: ``VAEConfig(n_phases=P)``, ``UNetConfig(
        in_channels=C)``, ``DDPMSchedule()``, ``TrainOptions()``.

    Returns
    -------
    MicroladModel
        With the EMA U-Net; ``training_stats`` holds the patch statistics and a
        ``report`` (reconstruction accuracy, VF/S2 errors, final losses, times).

    Notes
    -----
    Reproducibility: every random number comes from generators seeded from ``seed`` (and
    the rank), ``torch.use_deterministic_algorithms`` is on while training, and the
    global torch RNG is restored afterwards. Same seed, device, torch version and thread
    count give bit-identical weights on CPU (CPU kernels may reduce in a
    thread-count-dependent order; run with one thread if machines differ).
    Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) the networks are
    wrapped in DistributedDataParallel, rank 0 writes all files, per-rank batch is
    ``batch // world``, and checkpoints hold the unwrapped modules, so they load the same
    whatever the number of processes.
    """
    from microlad.device import resolve_device

    labels = as_label_images(images)
    if checkpoint_every < 1:
        raise InputError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    dev = resolve_device(device)
    ctx = DistContext.setup(dev)
    try:
        trainer = _Trainer(
            labels, Path(out_dir), ctx,
            requested=dict(patch=patch, vae_steps=vae_steps, ldm_steps=ldm_steps, batch=batch, seed=seed, augment=augment),
            resume=resume, overwrite=overwrite, checkpoint_every=checkpoint_every, progress=progress,
            vae_config=vae_config, unet_config=unet_config, schedule=schedule, options=options,
        )
        with _torch_settings(ctx.device):
            return trainer.run()
    finally:
        ctx.close()


class _Trainer:
    def __init__(self, labels: LabelImages, out_dir: Path, ctx: DistContext, *, requested: dict[str, Any],
                 resume: bool, overwrite: bool, checkpoint_every: int, progress: bool,
                 vae_config: VAEConfig | None, unet_config: UNetConfig | None, schedule: Any,
                 options: TrainOptions | None) -> None:
        self.labels, self.out_dir, self.ctx = labels, out_dir, ctx
        self.dev = ctx.device
        self.checkpoint_every, self.show = checkpoint_every, progress and ctx.is_main
        self.ckpt_tensors: dict[str, torch.Tensor] | None = None
        self.ckpt: dict[str, Any] | None = None

        # -- output directory and checkpoint --------------------------------------------------
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"{out_dir}: exists and is not a directory")
        if resume and has_train_state(out_dir):
            self.ckpt_tensors, self.ckpt = load_train_state(out_dir)
        elif resume and not _dir_is_empty(out_dir):
            raise CheckpointError(f"{out_dir}: no training checkpoint (train_state.safetensors) to resume from; use --overwrite to start over")
        elif resume:
            log.info("%s: no checkpoint yet; starting a fresh run", out_dir)
        elif not _dir_is_empty(out_dir) and not overwrite:
            raise OutputExistsError(f"{out_dir}: directory is not empty; pass --resume to continue a run there or --overwrite to replace it")

        # -- run settings (checkpoint values win on resume; explicit conflicts are errors) ----
        defaults = dict(patch=DEFAULT_PATCH, vae_steps=DEFAULT_VAE_STEPS, ldm_steps=DEFAULT_LDM_STEPS,
                        batch=DEFAULT_BATCH, seed=0, augment=True)
        saved = self.ckpt["run"] if self.ckpt else {}
        run: dict[str, Any] = {}
        for key, default in defaults.items():
            want = requested[key]
            if key in saved and want is not None and want != saved[key]:
                flag = f"augment={want}" if key == "augment" else f"--{key.replace('_', '-')} {want}"
                raise InputError(f"{flag} differs from the checkpoint's {key}={saved[key]}; omit it or pass the same value to resume")
            run[key] = saved.get(key, default) if want is None else want
        for key in ("patch", "batch"):
            if not isinstance(run[key], int) or run[key] < 1:
                raise InputError(f"{key} must be a positive integer, got {run[key]!r}")
        for key in ("vae_steps", "ldm_steps", "seed"):
            if not isinstance(run[key], int) or run[key] < 0:
                raise InputError(f"{key} must be a non-negative integer, got {run[key]!r}")
        self.run_cfg = run
        p = labels.n_phases
        self.vae_cfg = self._pick("vae_config", vae_config, VAEConfig.from_dict, lambda: VAEConfig(n_phases=p))
        if self.vae_cfg.n_phases != p:
            raise InputError(f"vae_config.n_phases={self.vae_cfg.n_phases} but the images have {p} phases")
        c = self.vae_cfg.latent_channels
        self.unet_cfg = self._pick("unet_config", unet_config, UNetConfig.from_dict, lambda: UNetConfig(in_channels=c))
        if self.unet_cfg.in_channels != c:
            raise InputError(f"unet_config.in_channels={self.unet_cfg.in_channels} but the VAE has {c} latent channels")
        self.opts = self._pick("options", options, TrainOptions.from_dict, TrainOptions)
        self.schedule = self._pick_schedule(schedule)

        multiple = self.vae_cfg.downsample_factor * self.unet_cfg.size_multiple
        if run["patch"] % multiple:
            raise InputError(f"patch {run['patch']} must be a multiple of {multiple} (VAE factor x U-Net size multiple)")
        self.sampler = PatchSampler(labels, patch=run["patch"], augment=run["augment"])
        if run["batch"] < ctx.world:
            raise InputError(f"batch {run['batch']} is smaller than the number of processes {ctx.world}")
        if run["batch"] % ctx.world:
            log.warning("batch %d is not divisible by %d processes; using %d per process", run["batch"], ctx.world, run["batch"] // ctx.world)
        self.batch = run["batch"] // ctx.world
        ldm_global = self.opts.ldm_batch or 2 * run["batch"]
        self.ldm_batch = max(1, ldm_global // ctx.world)
        if self.ckpt and self.ckpt.get("inputs", {}).get("fingerprint") != labels.fingerprint():
            raise InputError(f"the images differ from those of the checkpoint in {out_dir}; pass the same images to resume or use --overwrite")

        # -- prepare out_dir (rank 0 writes, the others wait) -------------------------------------
        ctx.barrier()
        if ctx.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(out_dir)
            if not resume and overwrite:
                for name in _OWN_FILES:
                    (out_dir / name).unlink(missing_ok=True)
        ctx.barrier()

        self.stage = "vae"
        self.vae_step = self.ldm_step = 0
        self.losses: dict[str, dict[str, float]] = {}
        self.times: dict[str, float] = {"vae": 0.0, "stats": 0.0, "ldm": 0.0}
        self.training_stats: dict[str, Any] = {}
        self.ckpt_count = 0
        self.skipped = 0

    def _pick(self, key: str, given: Any, from_dict: Any, default: Any) -> Any:
        saved = self.ckpt["run"].get(key) if self.ckpt else None
        if saved is not None:
            saved_obj = from_dict(saved)
            if given is not None and given.to_dict() != saved_obj.to_dict():
                raise InputError(f"{key} differs from the checkpoint's; omit it or pass the same to resume")
            return saved_obj
        return given if given is not None else default()

    def _pick_schedule(self, given: Any) -> Any:
        saved = self.ckpt["run"].get("schedule") if self.ckpt else None
        if saved is not None:
            if given is not None and _schedule_to_dict(given) != saved:
                raise InputError("schedule differs from the checkpoint's; omit it or pass the same to resume")
            return _schedule_from_dict(saved)
        if given is not None:
            return given
        from microlad.diffusion import DDPMSchedule

        return DDPMSchedule()

    # ---------------------------------------------------------------------------------------------
    def run(self):
        ctx, seed = self.ctx, self.run_cfg["seed"]
        torch.manual_seed(_derive_seed(seed, "init"))  # identical initial weights on every rank
        self.vae = CategoricalVAE(self.vae_cfg).to(self.dev)
        self.unet = UNet2D(self.unet_cfg).to(self.dev)
        self.ema = copy.deepcopy(self.unet).requires_grad_(False)
        self.opt_vae = torch.optim.Adam(self.vae.parameters(), lr=self.opts.vae_lr)
        self.opt_unet = torch.optim.Adam(self.unet.parameters(), lr=self.opts.ldm_lr)
        self._seed_generators(extra=0)
        if self.ckpt is not None:
            self._restore()

        if self.stage == "done":
            from microlad.model import load_model

            log.info("%s: training already complete; loading the model", self.out_dir)
            return load_model(self.out_dir, device=self.dev)
        if self.stage == "vae":
            self._stage_vae()
            self._stage_stats()
        self._stage_ldm()
        return self._finish()

    def _seed_generators(self, extra: int) -> None:
        seed, r = self.run_cfg["seed"], self.ctx.rank
        self.data_gen = torch.Generator().manual_seed(_derive_seed(seed, "data", r, extra))
        self.noise_gen = torch.Generator().manual_seed(_derive_seed(seed, "noise", r, extra))
        self.np_rng = np.random.default_rng(_derive_seed(seed, "numpy", r, extra))
        torch.manual_seed(_derive_seed(seed, "global", r, extra))

    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if not self.ctx.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.dev.index] if self.dev.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)

    def _step_optimizer(self, module: torch.nn.Module, opt: torch.optim.Optimizer) -> bool:
        """Clip and step; skip (return False) when the gradient is not finite (same on all ranks)."""
        clip = self.opts.grad_clip if self.opts.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        if not torch.isfinite(norm):
            opt.zero_grad(set_to_none=True)
            self.skipped += 1
            if self.skipped > 20:
                raise InputError("training diverged (non-finite gradients for 20 steps); lower the learning rate")
            return False
        self.skipped = 0
        opt.step()
        return True

    def _bar(self, stage: str, total: int, initial: int):
        return tqdm(total=total, initial=initial, desc=stage, disable=not self.show, dynamic_ncols=True, leave=False)

    def _log(self, stage: str, step: int, total: int, meter: _Meter, lr: float, t_last: float) -> float:
        parts = meter.flush(self.ctx)
        self.losses[stage] = parts
        now = time.perf_counter()
        detail = "  ".join(f"{k} {parts[k]:.4g}" for k in sorted(parts, key=lambda k: (k != "loss", k)))
        log.info("%s step %d/%d  %s  lr %.2e  %.3f s/step", stage, step, total, detail, lr, (now - t_last) / max(1, self.opts.log_every))
        return now

    # -- stage 1: VAE -------------------------------------------------------------------------
    def _stage_vae(self) -> None:
        total, opts = self.run_cfg["vae_steps"], self.opts
        vae, opt = self.vae, self.opt_vae
        weights = phase_class_weights(torch.as_tensor(self.labels.phase_fractions())).to(self.dev) if opts.phase_balance else None
        model = self._wrap(vae)
        vae.train()
        meter, t_stage, t_last = _Meter(), time.perf_counter(), time.perf_counter()
        base = self.times["vae"]
        with self._bar("VAE", total, self.vae_step) as bar:
            for step in range(self.vae_step, total):
                lr = lr_at(step, total, opts.vae_lr, opts)
                for g in opt.param_groups:
                    g["lr"] = lr
                x = self.sampler.sample(self.batch, self.data_gen).to(self.dev)
                out = model(x, generator=self.noise_gen)
                parts = vae_loss(out.logits, x, out.mean, out.logvar, beta=opts.beta, class_weights=weights)
                opt.zero_grad(set_to_none=True)
                parts.total.backward()
                self._step_optimizer(vae, opt)
                self.vae_step = step + 1
                meter.add(loss=parts.total.item(), ce=parts.recon.item(), kl=parts.kl.item())
                bar.update(1)
                if self.vae_step % opts.log_every == 0 or self.vae_step == total:
                    t_last = self._log("vae", self.vae_step, total, meter, lr, t_last)
                    bar.set_postfix(loss=f"{self.losses['vae']['loss']:.4f}")
                self.times["vae"] = base + time.perf_counter() - t_stage
                if self.vae_step % self.checkpoint_every == 0 and self.vae_step < total:
                    self._checkpoint()
        if meter.n:
            self.losses["vae"] = meter.flush(self.ctx)
        self.times["vae"] = base + time.perf_counter() - t_stage
        self._checkpoint()

    # -- between the stages: latent statistics, training statistics, VAE report ---------------
    @torch.no_grad()
    def _stage_stats(self) -> None:
        t0 = time.perf_counter()
        vae, opts, p = self.vae, self.opts, self.labels.n_phases
        vae.eval()
        gen = torch.Generator().manual_seed(_derive_seed(self.run_cfg["seed"], "stats"))
        batches = (self.sampler.sample_labels(min(64, opts.stats_patches - start), gen) for start in range(0, opts.stats_patches, 64))
        shift, scale, patches = encoder_moments(vae, batches, p, self.dev)
        self.ctx.broadcast_(shift)
        self.ctx.broadcast_(scale)
        vae.set_latent_stats(shift, scale)

        stats: dict[str, Any] = {}
        if self.ctx.is_main:
            stats = patch_statistics(patches, p)
            stats["n_phases"] = p
            # pixel-weighted over the whole inputs (patch positions over-weight image centres)
            stats["image_volume_fraction"] = self.labels.phase_fractions().tolist()
            stats["grey_values"] = list(self.labels.grey_values) if self.labels.grey_values else None
            stats["latent_shift"] = shift.tolist()
            stats["latent_scale"] = scale.tolist()
            held = PatchSampler(self.labels, patch=self.run_cfg["patch"], augment=False)
            rep = heldout_reconstruction(vae, held, opts.heldout_patches, opts.heldout_seed, self.dev)
            stats["vae_reconstruction"] = rep
            acc = ", ".join(f"{a:.3f}" if a is not None else "n/a" for a in rep["accuracy"])
            log.info("VAE reconstruction on %d held-out patches: accuracy per phase [%s], pixel accuracy %.4f",
                     rep["n_patches"], acc, rep["pixel_accuracy"])
        self.training_stats = self.ctx.gather_json(stats)[0]
        self.stage = "ldm"
        self.times["stats"] = time.perf_counter() - t0
        self._checkpoint()

    # -- stage 2: latent DDPM -------------------------------------------------------------------
    @torch.no_grad()
    def _build_bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder mean/logvar of ``latent_bank`` augmented patches (deterministic per seed and rank)."""
        n, p = self.opts.latent_bank, self.labels.n_phases
        gen = torch.Generator().manual_seed(_derive_seed(self.run_cfg["seed"], "bank", self.ctx.rank))
        means, logvars = [], []
        with tqdm(total=n, desc="encode", disable=not self.show, leave=False) as bar:
            for start in range(0, n, 64):
                m = min(64, n - start)
                mean, logvar = self.vae.encode(self.sampler.sample(m, gen).to(self.dev))
                means.append(mean)
                logvars.append(logvar)
                bar.update(m)
        return torch.cat(means), torch.cat(logvars)

    def _stage_ldm(self) -> None:
        total, opts = self.run_cfg["ldm_steps"], self.opts
        vae, unet, opt = self.vae, self.unet, self.opt_unet
        vae.eval().requires_grad_(False)
        t_stage = time.perf_counter()
        base = self.times["ldm"]
        bank = None
        if opts.latent_bank and self.ldm_step < total:
            log.info("encoding %d training patches for stage 2", opts.latent_bank)
            bank = self._build_bank()
        n_t = int(self.schedule.num_train_timesteps)
        model = self._wrap(unet)
        unet.train()
        b = self.ldm_batch
        meter, t_last = _Meter(), time.perf_counter()
        with self._bar("LDM", total, self.ldm_step) as bar:
            for step in range(self.ldm_step, total):
                lr = lr_at(step, total, opts.ldm_lr, opts)
                for g in opt.param_groups:
                    g["lr"] = lr
                with torch.no_grad():
                    if bank is not None:
                        idx = torch.from_numpy(self.np_rng.integers(0, bank[0].shape[0], size=b)).to(bank[0].device)
                        mean, logvar = bank[0][idx], bank[1][idx]
                    else:
                        mean, logvar = vae.encode(self.sampler.sample(b, self.data_gen).to(self.dev))
                    z = mean if opts.latents == "mean" else vae.reparameterize(mean, logvar, generator=self.noise_gen)
                    z0 = vae.normalize(z)
                    t = torch.randint(0, n_t, (b,), generator=self.noise_gen).to(self.dev)
                    noise = torch.randn(z0.shape, generator=self.noise_gen).to(self.dev)
                    zt = self.schedule.add_noise(z0, noise, t)
                    target = self.schedule.target(z0, noise, t)
                loss = F.mse_loss(model(zt, t), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if self._step_optimizer(unet, opt):
                    self._update_ema(step)
                self.ldm_step = step + 1
                meter.add(loss=loss.item())
                bar.update(1)
                if self.ldm_step % opts.log_every == 0 or self.ldm_step == total:
                    t_last = self._log("ldm", self.ldm_step, total, meter, lr, t_last)
                    bar.set_postfix(loss=f"{self.losses['ldm']['loss']:.4f}")
                self.times["ldm"] = base + time.perf_counter() - t_stage
                if self.ldm_step % self.checkpoint_every == 0 and self.ldm_step < total:
                    self._checkpoint()
        if meter.n:
            self.losses["ldm"] = meter.flush(self.ctx)
        self.times["ldm"] = base + time.perf_counter() - t_stage

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        decay = min(self.opts.ema_decay, (1.0 + step) / (10.0 + step))
        for e, p in zip(self.ema.parameters(), self.unet.parameters()):
            e.lerp_(p, 1.0 - decay)
        for e, p in zip(self.ema.buffers(), self.unet.buffers()):
            e.copy_(p)

    # -- the end ----------------------------------------------------------------------------------
    def _report(self) -> dict[str, Any]:
        return {
            "vae_reconstruction": self.training_stats.get("vae_reconstruction"),
            "final_losses": self.losses,
            "time_s": {**{k: round(v, 3) for k, v in self.times.items()}, "total": round(sum(self.times.values()), 3)},
            "steps": {"vae": self.vae_step, "ldm": self.ldm_step},
            "batch": self.run_cfg["batch"],
            "world_size": self.ctx.world,
            "device": str(self.dev),
            "seed": self.run_cfg["seed"],
            "augment": self.run_cfg["augment"],
            "inputs": list(self.labels.names),
        }

    def _finish(self):
        from microlad.model import MicroladModel

        stats = {k: v for k, v in self.training_stats.items() if k != "vae_reconstruction"}
        stats["report"] = self._report()
        self.ema.eval()
        self.vae.eval()
        grey = self.labels.grey_values or tuple(float(i) for i in range(self.labels.n_phases))
        config = {"training": {**self.run_cfg, "options": self.opts.to_dict(), "world_size": self.ctx.world,
                               "inputs": list(self.labels.names)}}
        model = MicroladModel(self.vae, self.ema, self.schedule, grey_values=grey, patch_size=self.run_cfg["patch"],
                              training_stats=stats, config=config)
        if self.ctx.is_main:
            model.save(self.out_dir)
        self.stage = "done"
        self._checkpoint()
        if self.ctx.is_main:
            log.info("model written to %s (%.0f s)", self.out_dir, sum(self.times.values()))
        return model

    # -- checkpoints ---------------------------------------------------------------------------------
    def _rng_states(self) -> tuple[dict[str, list[bytes]], list[Any]]:
        mine = {"data": self.data_gen.get_state(), "noise": self.noise_gen.get_state(), "torch": torch.get_rng_state()}
        if self.dev.type == "cuda":
            mine["cuda"] = torch.cuda.get_rng_state(self.dev)
        gathered = {k: self.ctx.gather_bytes(v.cpu().numpy().tobytes()) for k, v in sorted(mine.items())}
        return gathered, self.ctx.gather_json(self.np_rng.bit_generator.state)

    def _checkpoint(self) -> None:
        rng, np_states = self._rng_states()  # collective: every rank takes part
        if not self.ctx.is_main:
            return
        tensors: dict[str, torch.Tensor] = {f"vae/{k}": v for k, v in self.vae.state_dict().items()}
        optim: dict[str, Any] = {}
        if self.stage == "vae":
            t, optim["opt_vae"] = flatten_optimizer("opt_vae", self.opt_vae)
            tensors.update(t)
        else:
            tensors.update({f"unet/{k}": v for k, v in self.unet.state_dict().items()})
            tensors.update({f"ema/{k}": v for k, v in self.ema.state_dict().items()})
            t, optim["opt_unet"] = flatten_optimizer("opt_unet", self.opt_unet)
            tensors.update(t)
        for name, per_rank in rng.items():
            for r, blob in enumerate(per_rank):
                tensors[f"rng/rank{r}/{name}"] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
        self.ckpt_count += 1
        state = {
            "checkpoint_id": uuid.uuid4().hex,
            "microlad_version": __version__,
            "torch_version": torch.__version__,
            "stage": self.stage,
            "vae_step": self.vae_step,
            "ldm_step": self.ldm_step,
            "world_size": self.ctx.world,
            "run": {
                **self.run_cfg,
                "vae_config": self.vae_cfg.to_dict(),
                "unet_config": self.unet_cfg.to_dict(),
                "schedule": _schedule_to_dict(self.schedule),
                "options": self.opts.to_dict(),
            },
            "inputs": {"names": list(self.labels.names), "shapes": [list(a.shape) for a in self.labels.arrays],
                       "n_phases": self.labels.n_phases, "fingerprint": self.labels.fingerprint()},
            "optimizers": optim,
            "numpy_rng": np_states,
            "losses": self.losses,
            "time_s": self.times,
            "training_stats": self.training_stats,
        }
        save_train_state(self.out_dir, tensors, state)
        log.debug("checkpoint: stage %s, vae step %d, ldm step %d", self.stage, self.vae_step, self.ldm_step)

    def _restore(self) -> None:
        st, tensors = self.ckpt, self.ckpt_tensors
        assert st is not None and tensors is not None

        def sub(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}

        try:
            self.stage, self.vae_step, self.ldm_step = st["stage"], int(st["vae_step"]), int(st["ldm_step"])
            if self.stage not in ("vae", "ldm", "done"):
                raise ValueError(f"unknown stage {self.stage!r}")
            self.vae.load_state_dict(sub("vae"))
            if self.stage == "vae":
                self.opt_vae.load_state_dict(unflatten_optimizer("opt_vae", tensors, st["optimizers"]["opt_vae"]))
            else:
                self.unet.load_state_dict(sub("unet"))
                self.ema.load_state_dict(sub("ema"))
                self.opt_unet.load_state_dict(unflatten_optimizer("opt_unet", tensors, st["optimizers"]["opt_unet"]))
            self.losses = dict(st.get("losses") or {})
            self.times.update(st.get("time_s") or {})
            self.training_stats = dict(st.get("training_stats") or {})
            if int(st["world_size"]) == self.ctx.world:
                r = self.ctx.rank
                self.data_gen.set_state(tensors[f"rng/rank{r}/data"].clone())
                self.noise_gen.set_state(tensors[f"rng/rank{r}/noise"].clone())
                torch.set_rng_state(tensors[f"rng/rank{r}/torch"].clone())
                if self.dev.type == "cuda" and f"rng/rank{r}/cuda" in tensors:
                    torch.cuda.set_rng_state(tensors[f"rng/rank{r}/cuda"].clone(), self.dev)
                self.np_rng.bit_generator.state = st["numpy_rng"][r]
            else:
                log.warning("checkpoint was written by %s process(es), resuming with %d: random streams are re-seeded",
                            st["world_size"], self.ctx.world)
                self._seed_generators(extra=1 + self.vae_step + self.ldm_step)
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{self.out_dir}: checkpoint does not match this model ({type(exc).__name__}: {first[:200]}); restart without --resume") from None
        log.info("resuming from %s: stage %s, VAE step %d, LDM step %d", self.out_dir, self.stage, self.vae_step, self.ldm_step)
