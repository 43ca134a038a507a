"""torchrun / DDP plumbing: one process per device, NCCL on GPUs and gloo on CPUs.

``torchrun --nproc_per_node N stages/train.py ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; a
plain ``python`` run has none of them and is a world of one. Nothing here is home-made
scale-out: it is torch.distributed's process group and DistributedDataParallel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's CUDA device when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from asn.errors import InputError

        raise InputError("train.device", f"{name} requested but CUDA is not available here")
    return device


def init_world(device_name: str) -> tuple[World, torch.device]:
    """Join the process group that torchrun describes (if any) and pick this rank's device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    world = World(rank=int(os.environ.get("RANK", "0")), size=size,
                  local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name, world.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return world, device


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def mean_over_ranks(values: dict[str, float], world: World, device: torch.device) -> dict[str, float]:
    """Average logged scalars over ranks (for the log only; gradients are DDP's business)."""
    if not world.distributed or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= world.size
    return dict(zip(keys, tensor.tolist()))
