"""A trained MicroLad model: VAE + EMA U-Net + noise schedule + phase mapping, on disk and in use.

Model directory layout (written by :meth:`MicroladModel.save`, read by
:meth:`MicroladModel.load` / :func:`load_model`)::

    config.json            format marker, versions, architectures, schedule, phase mapping,
                           training statistics, patch size (typed: microlad.metadata)
    vae.safetensors        CategoricalVAE state (incl. latent_shift / latent_scale buffers)
    unet_ema.safetensors   UNet2D state (EMA weights)

No pickle is involved anywhere: weights are safetensors, everything else JSON. Training
state for ``--resume`` (``train_state.*``) lives beside these files and is not touched here.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from microlad._version import __version__
from microlad.defaults import PRIOR_SAMPLER, PRIOR_SAMPLER_STEPS, RECONSTRUCT_COUPLING_STOP
from microlad.device import resolve_device
from microlad.diffusion import AncestralSampler, DDIMSampler, DDPMSchedule, DPMSolverMultistepSampler, make_sampler
from microlad.errors import CheckpointError, InputError, OutputExistsError, ShapeError
from microlad.io._write import json_default
from microlad.metadata import ModelConfig, TrainingStats
from microlad.models import CategoricalVAE, UNet2D, UNetConfig, VAEConfig

if TYPE_CHECKING:  # the reconstruct package imports this module, so only for type checkers
    from microlad.reconstruct import Reconstruction

__all__ = [
    "MicroladModel",
    "load_model",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "CONFIG_NAME",
    "VAE_WEIGHTS_NAME",
    "UNET_WEIGHTS_NAME",
]

MODEL_FORMAT = "microlad-model"
MODEL_FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
VAE_WEIGHTS_NAME = "vae.safetensors"
UNET_WEIGHTS_NAME = "unet_ema.safetensors"
DEFAULT_PATCH_SIZE = 64


def _atomic_replace(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    from microlad.io import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        write(tmp)


def _state_for_safetensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def _normalize_size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"size must be an int or (H, W), got {size!r}") from None
    return h, w


class MicroladModel:
    """A trained model: ``vae``, ``unet`` (EMA weights), ``schedule`` and metadata.

    Parameters
    ----------
    vae, unet, schedule
        The networks and the noise schedule the U-Net was trained with.
    grey_values
        Phase mapping: label ``i`` corresponds to grey value ``grey_values[i]`` of the
        training micrograph (length P, as :func:`microlad.io.read_image` returns it).
    patch_size
        Training patch size (pixels); default output size of :meth:`sample_2d`. ``None``:
        ``config.patch_size`` if set, else 64.
    training_stats
        :class:`~microlad.metadata.TrainingStats` of the training data (a mapping is read
        with its tolerant ``from_dict``); filled by the training code.
    config
        :class:`~microlad.metadata.ModelConfig` (or a mapping): training settings and
        extra metadata; ``patch_size`` and ``microlad_version`` are set here.
    """

    def __init__(
        self,
        vae: CategoricalVAE,
        unet: UNet2D,
        schedule: DDPMSchedule,
        *,
        grey_values: Sequence[float],
        patch_size: int | None = None,
        training_stats: TrainingStats | Mapping[str, Any] | None = None,
        config: ModelConfig | Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(vae, CategoricalVAE):
            raise InputError(f"vae must be a CategoricalVAE, got {type(vae).__name__}")
        if not isinstance(unet, UNet2D):
            raise InputError(f"unet must be a UNet2D, got {type(unet).__name__}")
        if not isinstance(schedule, DDPMSchedule):
            raise InputError(f"schedule must be a DDPMSchedule, got {type(schedule).__name__}")
        if unet.config.in_channels != vae.config.latent_channels:
            raise InputError(
                f"U-Net in_channels={unet.config.in_channels} differs from VAE latent_channels={vae.config.latent_channels}"
            )
        grey = tuple(grey_values)
        if len(grey) != vae.config.n_phases or not all(isinstance(g, (int, float, np.number)) for g in grey):
            raise InputError(f"grey_values must be {vae.config.n_phases} numbers (one per phase), got {list(grey)}")
        self.vae = vae.eval()
        self.unet = unet.eval()
        self.schedule = schedule
        self.grey_values: tuple[float, ...] = tuple(g.item() if isinstance(g, np.generic) else g for g in grey)
        self.training_stats: TrainingStats = TrainingStats.from_dict(training_stats)
        cfg = ModelConfig.from_dict(config)
        if patch_size is None:
            patch_size = DEFAULT_PATCH_SIZE if cfg.patch_size is None else cfg.patch_size
        patch_size = int(patch_size)
        if patch_size <= 0 or patch_size % self.size_multiple:
            raise ShapeError(f"patch_size must be a positive multiple of {self.size_multiple}, got {patch_size}")
        self.config: ModelConfig = dataclasses.replace(
            cfg, patch_size=patch_size, microlad_version=cfg.microlad_version or __version__)

    # -- properties -------------------------------------------------------------------------
    @property
    def n_phases(self) -> int:
        """Number of phases P."""
        return self.vae.config.n_phases

    @property
    def patch_size(self) -> int:
        """Training patch size in pixels."""
        return int(self.config.patch_size)

    @property
    def downsample_factor(self) -> int:
        """VAE spatial factor f (one latent cell ↔ f×f pixels)."""
        return self.vae.config.downsample_factor

    @property
    def latent_channels(self) -> int:
        """Latent channels C."""
        return self.vae.config.latent_channels

    @property
    def size_multiple(self) -> int:
        """Image sizes must be multiples of this: f · 2**(U-Net levels − 1)."""
        return self.downsample_factor * self.unet.config.size_multiple

    @property
    def coupling_stop(self) -> float:
        """L-MPDD couples slices at timesteps t >= this fraction of T: the value calibrated for
        this model (``config.reconstruct``, :mod:`microlad.reconstruct.calibration`), else
        :data:`~microlad.defaults.RECONSTRUCT_COUPLING_STOP`."""
        stored = (self.config.reconstruct or {}).get("coupling_stop")
        return float(RECONSTRUCT_COUPLING_STOP if stored is None else stored)

    @property
    def prior_sampler(self) -> tuple[str, int]:
        """(sampler name, steps) :meth:`sample_2d` uses when no sampler is given: the choice
        calibrated for this model (``config.prior_sampler``,
        :func:`microlad.reconstruct.calibration.calibrate_prior_sampler`), else
        (:data:`~microlad.defaults.PRIOR_SAMPLER`, :data:`~microlad.defaults.PRIOR_SAMPLER_STEPS`)."""
        stored = self.config.prior_sampler or {}
        if stored.get("sampler") is None or stored.get("steps") is None:
            return PRIOR_SAMPLER, PRIOR_SAMPLER_STEPS
        return str(stored["sampler"]), int(stored["steps"])

    @property
    def device(self) -> torch.device:
        """Device of the networks' parameters."""
        return next(self.unet.parameters()).device

    def to(self, device: str | torch.device) -> MicroladModel:
        """Move both networks to ``device`` (``"auto"`` allowed); returns ``self``."""
        dev = resolve_device(device)
        self.vae.to(dev)
        self.unet.to(dev)
        return self

    def __repr__(self) -> str:
        return (
            f"MicroladModel(n_phases={self.n_phases}, grey_values={list(self.grey_values)}, "
            f"patch_size={self.patch_size}, latent={self.latent_channels}x/{self.downsample_factor}, {self.schedule!r})"
        )

    # -- persistence ------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Write ``config.json``, ``vae.safetensors`` and ``unet_ema.safetensors`` to ``directory``.

        Each file is written to a temporary name and moved into place with ``os.replace``;
        ``config.json`` goes last, so a directory with a config always has complete weights.
        Other files in the directory (e.g. training state) are left alone.
        """
        path = Path(directory)
        if path.exists() and not path.is_dir():
            raise InputError(f"cannot save the model to {path}: it exists and is not a directory")
        if not overwrite and (path / CONFIG_NAME).exists():
            raise OutputExistsError(f"{path / CONFIG_NAME} exists; pass overwrite=True or choose another directory")
        path.mkdir(parents=True, exist_ok=True)
        config = dataclasses.replace(self.config, microlad_version=__version__)
        doc = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "microlad_version": __version__,
            "vae": self.vae.config.to_dict(),
            "unet": self.unet.config.to_dict(),
            "schedule": self.schedule.to_dict(),
            "grey_values": list(self.grey_values),
            "training_stats": self.training_stats.to_dict(),
            "config": config.to_dict(),
        }
        try:  # serialise before touching any file
            text = json.dumps(doc, indent=2, default=json_default) + "\n"
        except (TypeError, ValueError) as exc:
            raise InputError(f"cannot store this model's metadata in config.json ({exc}); use numbers, strings, lists or dicts") from None

        for name, module, part in ((VAE_WEIGHTS_NAME, self.vae, "vae"), (UNET_WEIGHTS_NAME, self.unet, "unet_ema")):
            tensors = _state_for_safetensors(module)
            meta = {"format": "pt", "microlad_format": MODEL_FORMAT, "part": part, "microlad_version": __version__}
            _atomic_replace(path / name, lambda tmp, t=tensors, m=meta: save_file(t, str(tmp), metadata=m))

        def write_json(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())

        _atomic_replace(path / CONFIG_NAME, write_json)
        self.config = config
        return path

    # -- sampling ---------------------------------------------------------------------------
    def latent_size(self, size: int | Sequence[int] | None = None) -> tuple[int, int]:
        """Latent (h, w) for an image size (default patch size); checks divisibility."""
        h, w = _normalize_size(self.patch_size if size is None else size)
        m = self.size_multiple
        if h <= 0 or w <= 0 or h % m or w % m:
            raise ShapeError(f"image size must be positive multiples of {m} (VAE factor x U-Net levels), got {(h, w)}")
        f = self.downsample_factor
        return h // f, w // f

    def make_sampler(
        self, steps: int | None = 50, *, sampler: str = "ddim", eta: float = 0.0
    ) -> DDIMSampler | AncestralSampler | DPMSolverMultistepSampler:
        """``"ddim"`` (``steps`` DDIM steps, ``eta``), ``"dpm2m"`` (DPM-Solver++(2M)) or
        ``"ancestral"`` (``steps=None``: all T); :func:`microlad.diffusion.make_sampler`."""
        return make_sampler(self.schedule, sampler, steps, eta=eta)

    def decode_latents(self, u: torch.Tensor) -> torch.Tensor:
        """Normalized latents (B, C, h, w) → per-phase probabilities (B, P, h·f, w·f).

        Not wrapped in ``inference_mode`` so guidance code can differentiate through it.
        """
        logits = self.vae.decode(self.vae.denormalize(u))
        return torch.softmax(logits.float(), dim=1)

    @torch.inference_mode()
    def sample_latents(
        self,
        n: int,
        *,
        size: int | Sequence[int] | None = None,
        steps: int | None = None,
        seed: int | torch.Generator = 0,
        sampler: str | None = None,
        eta: float = 0.0,
        batch_size: int = 64,
        progress: bool = False,
    ) -> torch.Tensor:
        """Draw ``n`` normalized latents (n, C, h, w) from the latent DDPM prior.

        The initial noise is drawn for all ``n`` at once on the CPU from ``seed`` (so results do
        not depend on the device, nor, for DDIM with ``eta=0``, on ``batch_size``).
        ``sampler``/``steps``: as in :meth:`sample_2d`.
        """
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"n must be a positive integer, got {n!r}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        h, w = self.latent_size(size)
        if sampler is None:
            sampler, calibrated_steps = self.prior_sampler
            steps = calibrated_steps if steps is None else steps
        smp = self.make_sampler(steps, sampler=sampler, eta=eta)
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator("cpu").manual_seed(int(seed))
        dev = self.device
        noise = torch.randn((int(n), self.latent_channels, h, w), generator=gen, device=gen.device)
        out = []
        chunks = range(0, int(n), int(batch_size))
        with tqdm(total=len(chunks) * len(smp), desc="sampling", disable=not progress, leave=False) as bar:
            for start in chunks:
                x = noise[start:start + batch_size].to(dev)
                for i in range(len(smp)):
                    model_out = self.unet(x, smp.timestep_tensor(i, x.shape[0], device=dev))
                    x = smp.step(model_out, i, x, generator=gen)
                    bar.update(1)
                out.append(x)
        return torch.cat(out)

    @torch.inference_mode()
    def sample_2d(
        self,
        n: int,
        *,
        size: int | Sequence[int] | None = None,
        steps: int | None = None,
        seed: int | torch.Generator = 0,
        sampler: str | None = None,
        eta: float = 0.0,
        batch_size: int = 64,
        progress: bool = False,
        return_probabilities: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Generate ``n`` 2D phase maps: sample the latent prior (the sampler calibrated for
        this model, :attr:`prior_sampler`, unless told otherwise) → denormalize → decode →
        softmax → argmax.

        Parameters
        ----------
        n
            Number of images.
        size
            Output size, an int or (H, W), multiples of :attr:`size_multiple`; default the
            training patch size.
        steps
            Sampler steps. ``None``: the calibrated steps when ``sampler`` is ``None``, else
            :func:`microlad.diffusion.make_sampler`'s default for that sampler (all T for
            ``"ancestral"``).
        seed
            Integer seed or a CPU ``torch.Generator``; the same seed gives the same images.
        sampler
            ``None`` (default): the model's :attr:`prior_sampler` (chosen at the end of
            training so the samples' slice perimeter and small-r S2 match the training
            images best; DDIM for older models); ``"ddim"`` (deterministic for
            ``eta=0``), ``"dpm2m"`` (DPM-Solver++(2M), deterministic, second order: closer
            to the exact sample in few steps) or ``"ancestral"``.
        return_probabilities
            Also return the per-phase probabilities.

        Returns
        -------
        labels : np.ndarray
            (n, H, W) uint8 phase labels 0..P-1 (map to grey values with :attr:`grey_values`).
        probabilities : np.ndarray, optional
            (n, P, H, W) float32, only with ``return_probabilities=True``.
        """
        u = self.sample_latents(
            n, size=size, steps=steps, seed=seed, sampler=sampler, eta=eta, batch_size=batch_size, progress=progress
        )
        labels, probs = [], []
        for start in range(0, u.shape[0], int(batch_size)):
            p = self.decode_latents(u[start:start + batch_size])
            labels.append(p.argmax(dim=1).to(torch.uint8).cpu())
            if return_probabilities:
                probs.append(p.cpu())
        lab = torch.cat(labels).numpy()
        if return_probabilities:
            return lab, torch.cat(probs).numpy().astype(np.float32, copy=False)
        return lab

    # -- 3D reconstruction (implemented in microlad.reconstruct) -------------------------------
    def reconstruct(self, shape: Sequence[int], **options: Any) -> list[Reconstruction]:
        """3D volumes of ``shape`` (D, H, W) by L-MPDD; ``options`` are the keywords of
        :func:`microlad.reconstruct.reconstruct` (``n``, ``seed``, ``steps``, ``refine``, ...)."""
        from microlad.reconstruct import reconstruct  # lazy: that package imports this module

        return reconstruct(self, shape, **options)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> MicroladModel:
        """Load a model directory written by :meth:`save` (networks in eval mode, on ``device``).

        Raises :class:`~microlad.errors.CheckpointError` (one line) for a missing directory,
        a missing or foreign ``config.json``, a newer format version, or missing, truncated or
        mismatched weight files. Metadata from older versions loads (missing entries are
        ``None``; :mod:`microlad.metadata`).
        """
        return _load(cls, directory, device)

    def generate(self, shape: Sequence[int], targets: Any, **kwargs: Any) -> Any:
        """SDS-guided 3D generation toward ``targets``; see :func:`microlad.guidance.generate`."""
        from microlad.guidance import generate

        return generate(self, shape, targets, **kwargs)


# -- loading --------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _load_weights(path: Path, module: torch.nn.Module) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; the model directory is incomplete (re-save or re-train it)")
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises SafetensorError / OSError on bad files
        raise CheckpointError(f"{path} is truncated or not a safetensors file ({_first_line(exc)})") from None
    expected = module.state_dict()
    detail = None
    if set(expected) != set(state):
        detail = f"missing {sorted(set(expected) - set(state))[:3]}, unexpected {sorted(set(state) - set(expected))[:3]}"
    else:
        for key, ref in expected.items():
            if tuple(state[key].shape) != tuple(ref.shape):
                detail = f"{key} has shape {tuple(state[key].shape)}, the config implies {tuple(ref.shape)}"
                break
    if detail is None:
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            detail = _first_line(exc)
    if detail is not None:
        raise CheckpointError(f"{path} does not match the architecture in {CONFIG_NAME}: {detail}")


def load_model(directory: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> MicroladModel:
    """:meth:`MicroladModel.load` as a function."""
    return MicroladModel.load(directory, device=device)


def _load(cls: type[MicroladModel], directory: str | os.PathLike[str], device: str | torch.device) -> MicroladModel:
    dev = resolve_device(device)
    path = Path(directory)
    if not path.exists():
        raise CheckpointError(f"model directory not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; pass the model directory written by training")
    cfg_path = path / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"{path} has no {CONFIG_NAME}; it is not a microlad model directory")
    try:
        doc = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({_first_line(exc)}); the file is truncated or foreign") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise CheckpointError(f'{cfg_path} is not a microlad model config (no "format": "{MODEL_FORMAT}" marker)')
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{cfg_path} has an invalid format_version {version!r}")
    if version > MODEL_FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path} has format_version {version}, newer than this microlad ({__version__}) reads "
            f"({MODEL_FORMAT_VERSION}); upgrade microlad"
        )
    try:
        vae_cfg = VAEConfig.from_dict(doc["vae"])
        unet_cfg = UNetConfig.from_dict(doc["unet"])
        schedule = DDPMSchedule.from_dict(doc["schedule"])
        grey_values = doc["grey_values"]
        if not isinstance(grey_values, list):
            raise InputError("grey_values must be a list")
        training_stats = TrainingStats.from_dict(doc.get("training_stats"))
        config = ModelConfig.from_dict(doc.get("config"))
        vae, unet = CategoricalVAE(vae_cfg), UNet2D(unet_cfg)
        model_args = dict(grey_values=grey_values, training_stats=training_stats, config=config)
    except KeyError as exc:
        raise CheckpointError(f"{cfg_path} lacks the entry {exc.args[0]!r}; the file is incomplete") from None
    except (InputError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path} has an invalid entry: {_first_line(exc)}") from None
    _load_weights(path / VAE_WEIGHTS_NAME, vae)
    _load_weights(path / UNET_WEIGHTS_NAME, unet)
    try:
        model = cls(vae, unet, schedule, **model_args)
    except InputError as exc:
        raise CheckpointError(f"{cfg_path} is inconsistent: {_first_line(exc)}") from None
    return model.to(dev)
