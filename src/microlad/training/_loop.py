"""Two-stage MicroLad training: categorical VAE (METHOD.md §2), then latent DDPM (§3).

The run's settings are a :class:`~microlad.training._settings.RunSettings` (merged with
the checkpoint on resume), everything that changes is a
:class:`~microlad.training._state.TrainState` (which also owns the checkpoint layout),
and both stages run through one loop (``_Trainer._run_stage``) that differs only in its
step function.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from microlad._version import __version__
from microlad.data import LabelImages, PatchSampler, as_label_images
from microlad.device import resolve_device
from microlad.diffusion import DDPMSchedule
from microlad.errors import CheckpointError, InputError, OutputExistsError
from microlad.metadata import ReconstructionScore, TrainingReport, TrainingStats
from microlad.model import MicroladModel, load_model
from microlad.models import UNetConfig, VAEConfig, phase_class_weights, vae_loss
from microlad.training._checkpoint import has_train_state, load_train_state, remove_stale_temporaries, save_train_state
from microlad.training._distributed import DistContext
from microlad.training._options import DEFAULT_CHECKPOINT_EVERY, TrainOptions, lr_at
from microlad.training._settings import RunSettings
from microlad.training._state import TrainState, derive_seed
from microlad.training._stats import another_vae_round, encoder_moments, heldout_reconstruction, patch_statistics, worst_perimeter_error

__all__ = ["train"]

log = logging.getLogger("microlad.training")

# Files a previous run may have left in out_dir; --overwrite removes exactly these.
_OWN_FILES = ("config.json", "vae.safetensors", "unet_ema.safetensors", "train_state.safetensors", "train_state.json")


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
    schedule: DDPMSchedule | None = None,
    options: TrainOptions | None = None,
):
    """Train a MicroLad model (VAE + latent DDPM) on segmented 2D images or 3D volumes.

    Stage 1 trains a :class:`~microlad.models.CategoricalVAE` on random one-hot patches
    (Adam, phase-balanced cross-entropy + β·KL). The per-channel mean and std of the
    encoder means over ``options.stats_patches`` patches become the VAE's latent shift and
    scale; the training statistics (VF, S2, slice perimeter) are measured on non-overlapping
    tiles of the inputs (at most ``stats_patches`` of them), which weight every pixel
    equally, and a reconstruction report is computed. Stage 2
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
    labels = as_label_images(images)
    if checkpoint_every < 1:
        raise InputError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    dev = resolve_device(device)
    ctx = DistContext.setup(dev)
    try:
        requested = dict(patch=patch, vae_steps=vae_steps, ldm_steps=ldm_steps, batch=batch, seed=seed, augment=augment,
                         vae_config=vae_config, unet_config=unet_config, schedule=schedule, options=options)
        trainer = _Trainer(labels, Path(out_dir), ctx, requested=requested, resume=resume, overwrite=overwrite,
                           checkpoint_every=checkpoint_every, progress=progress)
        with _torch_settings(ctx.device):
            return trainer.run()
    finally:
        ctx.close()


@dataclass
class _Stage:
    """One training stage as :meth:`_Trainer._run_stage` runs it."""

    label: str  # progress-bar label
    total: int  # steps of the stage
    peak_lr: float
    optimizer: torch.optim.Optimizer
    step: Callable[[int], dict[str, float]]  # one optimisation step at 0-based index → loss parts
    checkpoint_at_end: bool  # stage 2 ends in _finish, which writes the final checkpoint
    cycle: int | None = None  # learning-rate cycle length (VAE rounds restart it); None: total


class _Trainer:
    def __init__(self, labels: LabelImages, out_dir: Path, ctx: DistContext, *, requested: dict[str, Any],
                 resume: bool, overwrite: bool, checkpoint_every: int, progress: bool) -> None:
        self.labels, self.out_dir, self.ctx = labels, out_dir, ctx
        self.dev = ctx.device
        self.checkpoint_every, self.show = checkpoint_every, progress and ctx.is_main
        self.ckpt_tensors: dict[str, torch.Tensor] | None = None
        self.ckpt: dict[str, Any] | None = None
        self.skipped = 0
        self._heldout: tuple[int, dict[str, Any]] | None = None  # (VAE step, held-out report) of the last round check

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
        self.settings = s = RunSettings.merge(requested, self.ckpt["run"] if self.ckpt else None, labels.n_phases)
        self.sampler = PatchSampler(labels, patch=s.patch, augment=s.augment)
        if s.batch < ctx.world:
            raise InputError(f"batch {s.batch} is smaller than the number of processes {ctx.world}")
        if s.batch % ctx.world:
            log.warning("batch %d is not divisible by %d processes; using %d per process", s.batch, ctx.world, s.batch // ctx.world)
        self.batch = s.batch // ctx.world
        self.ldm_batch = max(1, (s.options.ldm_batch or 2 * s.batch) // ctx.world)
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

    # ---------------------------------------------------------------------------------------------
    def run(self):
        self.state = TrainState(self.settings, self.ctx)
        if self.ckpt is not None:
            self._restore()
        if self.state.stage == "done":
            log.info("%s: training already complete; loading the model", self.out_dir)
            return load_model(self.out_dir, device=self.dev)
        if self.state.stage == "vae":
            self._run_stage("vae", self._vae_stage)
            while self._another_vae_round():
                self._run_stage("vae", self._vae_stage)
            self._stage_stats()
        self._run_stage("ldm", self._ldm_stage)
        return self._finish()

    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if not self.ctx.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.dev.index] if self.dev.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)

    def _step_optimizer(self, module: torch.nn.Module, opt: torch.optim.Optimizer) -> bool:
        """Clip and step; skip (return False) when the gradient is not finite (same on all ranks)."""
        opts = self.settings.options
        clip = opts.grad_clip if opts.grad_clip > 0 else float("inf")
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

    def _log(self, stage: str, step: int, total: int, meter: _Meter, lr: float, t_last: float) -> float:
        parts = meter.flush(self.ctx)
        self.state.losses[stage] = parts
        now = time.perf_counter()
        detail = "  ".join(f"{k} {parts[k]:.4g}" for k in sorted(parts, key=lambda k: (k != "loss", k)))
        log.info("%s step %d/%d  %s  lr %.2e  %.3f s/step", stage, step, total, detail, lr,
                 (now - t_last) / max(1, self.settings.options.log_every))
        return now

    # -- the loop both stages share ---------------------------------------------------------------
    def _run_stage(self, name: str, prepare: Callable[[], _Stage]) -> None:
        """Run stage ``name`` (``"vae"`` or ``"ldm"``) from its current step to the end:
        learning-rate schedule, logging, progress bar, timing and periodic checkpoints."""
        st, opts = self.state, self.settings.options
        t_stage, base = time.perf_counter(), st.times[name]
        stage = prepare()
        total = stage.total
        meter, t_last = _Meter(), time.perf_counter()
        with tqdm(total=total, initial=st.steps[name], desc=stage.label, disable=not self.show, dynamic_ncols=True, leave=False) as bar:
            cycle = stage.cycle or total
            for step in range(st.steps[name], total):
                lr = lr_at(step % cycle, cycle, stage.peak_lr, opts)
                for g in stage.optimizer.param_groups:
                    g["lr"] = lr
                meter.add(**stage.step(step))
                st.steps[name] = done = step + 1
                bar.update(1)
                if done % opts.log_every == 0 or done == total:
                    t_last = self._log(name, done, total, meter, lr, t_last)
                    bar.set_postfix(loss=f"{st.losses[name]['loss']:.4f}")
                st.times[name] = base + time.perf_counter() - t_stage
                if done % self.checkpoint_every == 0 and done < total:
                    self._checkpoint()
        if meter.n:
            st.losses[name] = meter.flush(self.ctx)
        st.times[name] = base + time.perf_counter() - t_stage
        if stage.checkpoint_at_end:
            self._checkpoint()

    # -- stage 1: VAE -------------------------------------------------------------------------
    def _vae_stage(self) -> _Stage:
        st, opts = self.state, self.settings.options
        vae, opt = st.vae, st.opt_vae
        weights = phase_class_weights(torch.as_tensor(self.labels.phase_fractions())).to(self.dev) if opts.phase_balance else None
        model = self._wrap(vae)
        vae.train()

        def step(_: int) -> dict[str, float]:
            x = self.sampler.sample(self.batch, st.data_gen).to(self.dev)
            out = model(x, generator=st.noise_gen)
            parts = vae_loss(out.logits, x, out.mean, out.logvar, beta=opts.beta, class_weights=weights)
            opt.zero_grad(set_to_none=True)
            parts.total.backward()
            self._step_optimizer(vae, opt)
            return {"loss": parts.total.item(), "ce": parts.recon.item(), "kl": parts.kl.item()}

        label = f"VAE round {len(st.vae_rounds) + 1}" if st.vae_rounds else "VAE"
        return _Stage(label, st.vae_total, opts.vae_lr, opt, step, checkpoint_at_end=True, cycle=self.settings.vae_steps)

    @torch.no_grad()
    def _another_vae_round(self) -> bool:
        """Check the VAE round just finished on the held-out patches (slice perimeter of the
        round trip, :func:`another_vae_round`) and, if it needs one, add a round of
        ``vae_steps`` steps. A resumed run whose last round was already checked keeps the
        decision it recorded (the extended total is in the checkpoint)."""
        st, s = self.state, self.settings
        opts = s.options
        if opts.vae_rounds <= 1 or s.vae_steps == 0:
            return False
        if st.vae_rounds and st.vae_rounds[-1]["steps"] == st.steps["vae"]:
            return False  # checked before an interruption: its recorded decision stands
        st.vae.eval()
        held = PatchSampler(self.labels, patch=s.patch, augment=False)
        rep = heldout_reconstruction(st.vae, held, opts.heldout_patches, opts.heldout_seed, self.dev)
        self._heldout = (st.steps["vae"], rep)  # the final round's is the report's (_stage_stats)
        record = {"steps": st.steps["vae"], "pixel_accuracy": rep["pixel_accuracy"],
                  "perimeter_error": list(rep["perimeter_error"]), "worst": worst_perimeter_error(rep)}
        extend = self.ctx.any(another_vae_round([*st.vae_rounds, record], opts.vae_rounds, opts.vae_perimeter_tol))
        record["extend"] = extend
        st.vae_rounds.append(record)
        errs = ", ".join("n/a" if e is None else f"{100 * e:+.1f}" for e in rep["perimeter_error"])
        if self.ctx.is_main:
            log.info("VAE round %d (%d steps): round-trip slice perimeter per phase [%s] %% of the held-out patches', "
                     "pixel accuracy %.4f; %s", len(st.vae_rounds), st.steps["vae"], errs, rep["pixel_accuracy"],
                     f"another round of {s.vae_steps} steps (tolerance ±{100 * opts.vae_perimeter_tol:g} %)" if extend
                     else "done")
        self._checkpoint()
        return extend

    # -- between the stages: latent statistics, training statistics, VAE report ---------------
    @torch.no_grad()
    def _stage_stats(self) -> None:
        t0 = time.perf_counter()
        st, opts, p = self.state, self.settings.options, self.labels.n_phases
        vae = st.vae
        vae.eval()
        gen = torch.Generator().manual_seed(derive_seed(self.settings.seed, "stats"))
        batches = (self.sampler.sample_labels(min(64, opts.stats_patches - start), gen) for start in range(0, opts.stats_patches, 64))
        shift, scale, patches = encoder_moments(vae, batches, p, self.dev)
        self.ctx.broadcast_(shift)
        self.ctx.broadcast_(scale)
        vae.set_latent_stats(shift, scale)

        stats: dict[str, Any] = {}
        if self.ctx.is_main:
            # on a regular grid of tiles, not the random patches: random offsets over-weight
            # image centres (a 256² image's central pixels 4x its border ones)
            tiles = self.sampler.tile_labels(opts.stats_patches, torch.Generator().manual_seed(derive_seed(self.settings.seed, "tiles")))
            stats = patch_statistics(tiles, p)
            stats["sampling"] = "tiles"
            held = PatchSampler(self.labels, patch=self.settings.patch, augment=False)
            stats.update(
                n_phases=p,
                # pixel-weighted over the whole inputs (patch positions over-weight image centres)
                image_volume_fraction=self.labels.phase_fractions().tolist(),
                grey_values=list(self.labels.grey_values) if self.labels.grey_values else None,
                latent_shift=shift.tolist(),
                latent_scale=scale.tolist(),
                vae_reconstruction=self._heldout_report(held),
            )
        stats = dict(self.ctx.gather_json(stats)[0])  # rank 0's statistics on every rank
        st.vae_score = score = ReconstructionScore.from_dict(stats.pop("vae_reconstruction"))
        st.data_stats = TrainingStats.from_dict(stats)
        acc = ", ".join(f"{a:.3f}" if a is not None else "n/a" for a in score.accuracy)
        if self.ctx.is_main:
            log.info("VAE reconstruction on %d held-out patches: accuracy per phase [%s], pixel accuracy %.4f",
                     score.n_patches, acc, score.pixel_accuracy)
        st.stage = "ldm"
        st.times["stats"] = time.perf_counter() - t0
        self._checkpoint()

    def _heldout_report(self, held: PatchSampler) -> dict[str, Any]:
        """The final VAE's held-out round trip: the last round check's when it saw these weights
        (same patches and seed; encode → decode does not use the latent statistics), else measured."""
        opts = self.settings.options
        if self._heldout is not None and self._heldout[0] == self.state.steps["vae"]:
            return copy.deepcopy(self._heldout[1])
        return heldout_reconstruction(self.state.vae, held, opts.heldout_patches, opts.heldout_seed, self.dev)

    # -- stage 2: latent DDPM -------------------------------------------------------------------
    @torch.no_grad()
    def _build_bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder mean/logvar of ``latent_bank`` augmented patches (deterministic per seed and rank)."""
        n = self.settings.options.latent_bank
        gen = torch.Generator().manual_seed(derive_seed(self.settings.seed, "bank", self.ctx.rank))
        means, logvars = [], []
        with tqdm(total=n, desc="encode", disable=not self.show, leave=False) as bar:
            for start in range(0, n, 64):
                m = min(64, n - start)
                mean, logvar = self.state.vae.encode(self.sampler.sample(m, gen).to(self.dev))
                means.append(mean)
                logvars.append(logvar)
                bar.update(m)
        return torch.cat(means), torch.cat(logvars)

    def _ldm_stage(self) -> _Stage:
        st, opts, schedule = self.state, self.settings.options, self.settings.schedule
        total = self.settings.ldm_steps
        vae, unet, opt = st.vae, st.unet, st.opt_unet
        vae.eval().requires_grad_(False)
        bank = None
        if opts.latent_bank and st.steps["ldm"] < total:
            log.info("encoding %d training patches for stage 2", opts.latent_bank)
            bank = self._build_bank()
        n_t = int(schedule.num_train_timesteps)
        model = self._wrap(unet)
        unet.train()
        b = self.ldm_batch

        def step(i: int) -> dict[str, float]:
            with torch.no_grad():
                if bank is not None:
                    idx = torch.from_numpy(st.np_rng.integers(0, bank[0].shape[0], size=b)).to(bank[0].device)
                    mean, logvar = bank[0][idx], bank[1][idx]
                else:
                    mean, logvar = vae.encode(self.sampler.sample(b, st.data_gen).to(self.dev))
                z = mean if opts.latents == "mean" else vae.reparameterize(mean, logvar, generator=st.noise_gen)
                z0 = vae.normalize(z)
                t = torch.randint(0, n_t, (b,), generator=st.noise_gen).to(self.dev)
                noise = torch.randn(z0.shape, generator=st.noise_gen).to(self.dev)
                zt = schedule.add_noise(z0, noise, t)
                target = schedule.target(z0, noise, t)
            loss = F.mse_loss(model(zt, t), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self._step_optimizer(unet, opt):
                self._update_ema(i)
            return {"loss": loss.item()}

        return _Stage("LDM", total, opts.ldm_lr, opt, step, checkpoint_at_end=False)

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        st = self.state
        decay = min(self.settings.options.ema_decay, (1.0 + step) / (10.0 + step))
        for e, p in zip(st.ema.parameters(), st.unet.parameters()):
            e.lerp_(p, 1.0 - decay)
        for e, p in zip(st.ema.buffers(), st.unet.buffers()):
            e.copy_(p)

    # -- the end ----------------------------------------------------------------------------------
    def _report(self) -> TrainingReport:
        st, s = self.state, self.settings
        return TrainingReport(
            vae_reconstruction=st.vae_score,
            vae_rounds=tuple(st.vae_rounds) or None,
            final_losses=st.losses,
            time_s={**{k: round(v, 3) for k, v in st.times.items()}, "total": round(sum(st.times.values()), 3)},
            steps=dict(st.steps),
            batch=s.batch,
            world_size=self.ctx.world,
            device=str(self.dev),
            seed=s.seed,
            augment=s.augment,
            inputs=tuple(self.labels.names),
        )

    def _finish(self):
        st, s = self.state, self.settings
        stats = dataclasses.replace(st.data_stats or TrainingStats(), report=self._report())
        st.ema.eval()
        st.vae.eval()
        grey = self.labels.grey_values or tuple(float(i) for i in range(self.labels.n_phases))
        config = {"training": {**s.scalars(), "options": s.options.to_dict(), "world_size": self.ctx.world,
                               "inputs": list(self.labels.names)}}
        model = MicroladModel(st.vae, st.ema, s.schedule, grey_values=grey, patch_size=s.patch,
                              training_stats=stats, config=config)
        if self.ctx.is_main:  # the 2D prior's clean-estimate moments L-MPDD matches (a few seconds)
            from microlad.reconstruct.api import store_lmpdd_moments

            model.config = dataclasses.replace(model.config, latent_moments=store_lmpdd_moments(model))
        if self.ctx.is_main and s.options.calibrate_coupling:
            from microlad.reconstruct.calibration import calibrate_coupling_stop

            cal = calibrate_coupling_stop(model, seed=s.seed)
            if cal is not None:
                model.config = dataclasses.replace(model.config, reconstruct=cal.to_dict())
                log.info("coupling window: slices coupled at t >= %.2f T (%.0f s)", cal.coupling_stop, cal.seconds)
        if self.ctx.is_main and s.options.calibrate_prior:
            from microlad.reconstruct.calibration import calibrate_prior_sampler

            pcal = calibrate_prior_sampler(model, seed=s.seed)
            if pcal is not None:
                model.config = dataclasses.replace(model.config, prior_sampler=pcal.to_dict())
                log.info("2D prior sampler: %s, %d steps (score per candidate %s; %.0f s)", pcal.sampler, pcal.steps,
                         ", ".join(f"{k} {v:.2f}" for k, v in pcal.scores.items()), pcal.seconds)
        if self.ctx.is_main:
            model.save(self.out_dir)
        st.stage = "done"
        self._checkpoint()
        if self.ctx.is_main:
            log.info("model written to %s (%.0f s)", self.out_dir, sum(st.times.values()))
        return model

    # -- checkpoints ---------------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        part = self.state.checkpoint()  # collective: every rank takes part
        if part is None:
            return
        tensors, document = part
        labels = self.labels
        state = {
            "checkpoint_id": uuid.uuid4().hex,
            "microlad_version": __version__,
            "torch_version": torch.__version__,
            **document,
            "run": self.settings.to_dict(),
            "inputs": {"names": list(labels.names), "shapes": [list(a.shape) for a in labels.arrays],
                       "n_phases": labels.n_phases, "fingerprint": labels.fingerprint()},
        }
        save_train_state(self.out_dir, tensors, state)
        log.debug("checkpoint: stage %s, vae step %d, ldm step %d", self.state.stage, *self.state.steps.values())

    def _restore(self) -> None:
        assert self.ckpt is not None and self.ckpt_tensors is not None
        try:
            self.state.restore(self.ckpt_tensors, self.ckpt)
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{self.out_dir}: checkpoint does not match this model ({type(exc).__name__}: {first[:200]}); restart without --resume") from None
        st = self.state
        log.info("resuming from %s: stage %s, VAE step %d, LDM step %d", self.out_dir, st.stage, st.steps["vae"], st.steps["ldm"])
