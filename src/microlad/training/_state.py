"""The mutable state of a training run and its checkpoint layout, declared once.

:class:`TrainState` owns the networks, optimizers, random streams, step counters, running
losses, timings and (after stage 1) the training statistics. Its :meth:`~TrainState.
checkpoint` and :meth:`~TrainState.restore` read the same tables (:data:`MODULES`,
:data:`OPTIMIZERS`), so the tensor names saved are the tensor names restored.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch

from microlad.metadata import ReconstructionScore, TrainingStats
from microlad.models import CategoricalVAE, UNet2D
from microlad.training._checkpoint import flatten_optimizer, unflatten_optimizer
from microlad.training._distributed import DistContext
from microlad.training._settings import RunSettings

__all__ = ["MODULES", "OPTIMIZERS", "STAGES", "TrainState", "derive_seed"]

log = logging.getLogger("microlad.training")

STAGES = ("vae", "ldm", "done")
"""``"vae"``: stage 1 runs (or is next); ``"ldm"``: statistics are measured, stage 2 runs;
``"done"``: the model directory is written."""

MODULES = {"vae": ("vae",), "ldm": ("vae", "unet", "ema"), "done": ("vae", "unet", "ema")}
"""Per stage, the modules whose state dicts a checkpoint holds (tensor names ``<module>/<key>``)."""

OPTIMIZERS = {"vae": ("opt_vae",), "ldm": ("opt_unet",), "done": ("opt_unet",)}
"""Per stage, the optimizers a checkpoint holds (:func:`flatten_optimizer` layout)."""

# Independent random streams derived from (seed, stream, rank) with numpy's SeedSequence.
_STREAMS = {"init": 0, "data": 1, "noise": 2, "stats": 3, "bank": 4, "numpy": 5, "global": 6, "tiles": 7}


def derive_seed(seed: int, stream: str, rank: int = 0, extra: int = 0) -> int:
    """A 63-bit seed for random ``stream`` of ``rank``, independent of the other streams."""
    ss = np.random.SeedSequence([seed, _STREAMS[stream], rank, extra])
    return int(ss.generate_state(1, dtype=np.uint64)[0] & ((1 << 63) - 1))


class TrainState:
    """Networks, optimizers, random streams and progress of one run on one rank.

    Built from :class:`RunSettings` with initial weights drawn from the ``"init"`` stream
    (identical on every rank). ``steps`` counts optimizer steps per stage (``"vae"``,
    ``"ldm"``); ``times`` holds seconds per phase (``"vae"``, ``"stats"``, ``"ldm"``);
    ``losses`` the last logged loss parts per stage; ``data_stats`` and ``vae_score`` are
    set between the stages.
    """

    def __init__(self, settings: RunSettings, ctx: DistContext) -> None:
        self.settings, self.ctx = settings, ctx
        dev = ctx.device
        torch.manual_seed(derive_seed(settings.seed, "init"))  # identical initial weights on every rank
        self.vae = CategoricalVAE(settings.vae_config).to(dev)
        self.unet = UNet2D(settings.unet_config).to(dev)
        self.ema = copy.deepcopy(self.unet).requires_grad_(False)
        self.opt_vae = torch.optim.Adam(self.vae.parameters(), lr=settings.options.vae_lr)
        self.opt_unet = torch.optim.Adam(self.unet.parameters(), lr=settings.options.ldm_lr)
        self.stage = "vae"
        self.steps = {"vae": 0, "ldm": 0}
        self.vae_rounds: list[dict[str, Any]] = []  # the held-out check after each VAE round
        self.losses: dict[str, dict[str, float]] = {}
        self.times: dict[str, float] = {"vae": 0.0, "stats": 0.0, "ldm": 0.0}
        self.data_stats: TrainingStats | None = None
        self.vae_score: ReconstructionScore | None = None
        self.seed_generators(extra=0)

    @property
    def vae_total(self) -> int:
        """VAE steps planned so far: one round of ``vae_steps`` plus one per check that asked
        for another (checkpoints from before VAE rounds have no checks: one round)."""
        return self.settings.vae_steps * (1 + sum(bool(r.get("extend")) for r in self.vae_rounds))

    def seed_generators(self, extra: int) -> None:
        """(Re-)seed the data, noise, numpy and global streams of this rank."""
        seed, r = self.settings.seed, self.ctx.rank
        self.data_gen = torch.Generator().manual_seed(derive_seed(seed, "data", r, extra))
        self.noise_gen = torch.Generator().manual_seed(derive_seed(seed, "noise", r, extra))
        self.np_rng = np.random.default_rng(derive_seed(seed, "numpy", r, extra))
        torch.manual_seed(derive_seed(seed, "global", r, extra))

    # -- checkpoints ---------------------------------------------------------------------------
    def _rng_tensors(self) -> tuple[dict[str, torch.Tensor], list[Any]]:
        """Every rank's torch generator states (``rng/rank<r>/<name>``) and numpy states (collective)."""
        mine = {"data": self.data_gen.get_state(), "noise": self.noise_gen.get_state(), "torch": torch.get_rng_state()}
        if self.ctx.device.type == "cuda":
            mine["cuda"] = torch.cuda.get_rng_state(self.ctx.device)
        tensors = {}
        for name, state in sorted(mine.items()):
            for r, blob in enumerate(self.ctx.gather_bytes(state.cpu().numpy().tobytes())):
                tensors[f"rng/rank{r}/{name}"] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
        return tensors, self.ctx.gather_json(self.np_rng.bit_generator.state)

    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """``(tensors, document)`` of the current state on rank 0, ``None`` on the others.

        Collective: every rank must call it. The document holds the stage, step counters,
        world size, optimizer structure, numpy states, losses, times and statistics; the
        caller adds the run settings and input description.
        """
        rng, np_states = self._rng_tensors()
        if not self.ctx.is_main:
            return None
        tensors: dict[str, torch.Tensor] = {}
        for name in MODULES[self.stage]:
            tensors.update({f"{name}/{k}": v for k, v in getattr(self, name).state_dict().items()})
        optimizers: dict[str, Any] = {}
        for name in OPTIMIZERS[self.stage]:
            flat, optimizers[name] = flatten_optimizer(name, getattr(self, name))
            tensors.update(flat)
        tensors.update(rng)
        stats: dict[str, Any] = {}
        if self.data_stats is not None:
            stats = self.data_stats.to_dict()
        if self.vae_score is not None:
            stats["vae_reconstruction"] = self.vae_score.to_dict()
        document = {
            "stage": self.stage,
            "vae_step": self.steps["vae"],
            "ldm_step": self.steps["ldm"],
            "vae_total": self.vae_total,  # for readers of the JSON; restore derives it from vae_rounds
            "vae_rounds": self.vae_rounds,
            "world_size": self.ctx.world,
            "optimizers": optimizers,
            "numpy_rng": np_states,
            "losses": self.losses,
            "time_s": self.times,
            "training_stats": stats,
        }
        return tensors, document

    def restore(self, tensors: dict[str, torch.Tensor], document: dict[str, Any]) -> None:
        """Load a :meth:`checkpoint`. Random streams continue exactly when the world size is
        the same; otherwise they are re-seeded (with a warning). Raises ``KeyError``,
        ``ValueError``, ``TypeError``, ``RuntimeError`` or ``IndexError`` on a mismatch."""
        stage = document["stage"]
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self.stage = stage
        self.steps = {"vae": int(document["vae_step"]), "ldm": int(document["ldm_step"])}
        self.vae_rounds = [dict(r) for r in document.get("vae_rounds") or ()]
        for name in MODULES[stage]:
            prefix = name + "/"
            getattr(self, name).load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        for name in OPTIMIZERS[stage]:
            getattr(self, name).load_state_dict(unflatten_optimizer(name, tensors, document["optimizers"][name]))
        self.losses = dict(document.get("losses") or {})
        self.times.update(document.get("time_s") or {})
        stats = dict(document.get("training_stats") or {})
        score = stats.pop("vae_reconstruction", None)
        self.vae_score = None if score is None else ReconstructionScore.from_dict(score)
        self.data_stats = TrainingStats.from_dict(stats) if stats else None
        if int(document["world_size"]) == self.ctx.world:
            r = self.ctx.rank
            self.data_gen.set_state(tensors[f"rng/rank{r}/data"].clone())
            self.noise_gen.set_state(tensors[f"rng/rank{r}/noise"].clone())
            torch.set_rng_state(tensors[f"rng/rank{r}/torch"].clone())
            if self.ctx.device.type == "cuda" and f"rng/rank{r}/cuda" in tensors:
                torch.cuda.set_rng_state(tensors[f"rng/rank{r}/cuda"].clone(), self.ctx.device)
            self.np_rng.bit_generator.state = document["numpy_rng"][r]
        else:
            log.warning("checkpoint was written by %s process(es), resuming with %d: random streams are re-seeded",
                        document["world_size"], self.ctx.world)
            self.seed_generators(extra=1 + self.steps["vae"] + self.steps["ldm"])
