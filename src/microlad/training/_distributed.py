"""Process-group handling for ``torchrun`` (DistributedDataParallel) and single processes."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from microlad.errors import InputError

__all__ = ["DistContext"]

log = logging.getLogger(__name__)


@dataclass
class DistContext:
    """Rank, world size and device of this process.

    Under ``torchrun`` (env vars ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) the process group
    is initialised here (gloo on CPU, nccl on CUDA) unless the caller already did, and
    destroyed by :meth:`close` only if it was created here.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @classmethod
    def setup(cls, device: torch.device) -> DistContext:
        """Join the process group described by the environment (if any)."""
        env_world = int(os.environ.get("WORLD_SIZE", "1"))
        if dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
            local = int(os.environ.get("LOCAL_RANK", rank))
            owns = False
        elif env_world > 1 and "RANK" in os.environ:
            if not dist.is_available():  # pragma: no cover - torch built without distributed
                raise InputError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
            rank, world = int(os.environ["RANK"]), env_world
            local = int(os.environ.get("LOCAL_RANK", "0"))
            if device.type == "cuda":
                device = torch.device("cuda", local)
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            owns = True
        else:
            return cls(device=device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        log.info("distributed training: rank %d of %d on %s", rank, world, device)
        return cls(rank, world, local, device, owns)

    def close(self) -> None:
        """Destroy the process group if :meth:`setup` created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    # -- collectives (no-ops in a single process) -------------------------------------------
    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, value: float) -> float:
        """Average a Python float over ranks."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank."""
        if not self.distributed:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self._comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast_(self, tensor: torch.Tensor) -> None:
        """Overwrite ``tensor`` on every rank with rank 0's values (in place)."""
        if self.distributed:
            buf = tensor.detach().to(self._comm_device).contiguous()
            dist.broadcast(buf, src=0)
            tensor.data.copy_(buf.to(tensor.device))

    def gather_bytes(self, payload: bytes) -> list[bytes]:
        """All ranks' byte strings (tensor collectives only, no pickle)."""
        if not self.distributed:
            return [payload]
        dev = self._comm_device
        size = torch.tensor([len(payload)], dtype=torch.int64, device=dev)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        n = int(max(s.item() for s in sizes))
        buf = torch.zeros(n, dtype=torch.uint8, device=dev)
        buf[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(dev) if payload else buf[:0]
        bufs = [torch.zeros_like(buf) for _ in range(self.world)]
        dist.all_gather(bufs, buf)
        return [bytes(b[: int(s.item())].cpu().numpy().tobytes()) for b, s in zip(bufs, sizes)]

    def gather_json(self, obj: object) -> list[object]:
        """All ranks' JSON-able objects (sent as UTF-8 JSON bytes)."""
        return [json.loads(b.decode()) for b in self.gather_bytes(json.dumps(obj).encode())]

    @property
    def _comm_device(self) -> torch.device:
        return self.device if (self.distributed and dist.get_backend() == "nccl") else torch.device("cpu")
