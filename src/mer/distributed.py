"""Process-group set-up shared by the stages that run under ``torchrun`` (extract, train)."""

from __future__ import annotations

import os

import torch


def setup(backend: str | None = None) -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun with N > 1.

    ``backend`` defaults to NCCL when CUDA is available, else gloo (CPU-only machines, tests).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def barrier(world_size: int) -> None:
    """Wait for every rank (no-op in one process)."""
    if world_size > 1:
        torch.distributed.barrier()
