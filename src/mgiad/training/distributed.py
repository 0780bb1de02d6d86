"""Where a run trains: the device and, under ``torchrun``, the process group (NCCL on GPU, Gloo on
CPU); the collective steps the loop needs (sums, BatchNorm statistics, a shared stop)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..utils.device import resolve_device

__all__ = ["Runtime", "setup_runtime", "shutdown_distributed", "all_reduce", "average_buffers",
           "stop_requested", "wrap"]


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_runtime(device: str) -> Runtime:
    """Pick the device; under torchrun, join the process group (NCCL on GPU, Gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if world_size > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Runtime(dev, rank, world_size, local_rank)


def shutdown_distributed() -> None:
    """Leave the process group cleanly (a group left to the interpreter's exit can abort a rank
    with "terminate called without an active exception" and fail a finished torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def all_reduce(values: list[float], runtime: Runtime) -> list[float]:
    if not runtime.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t)
    return t.tolist()


def average_buffers(model: nn.Module, runtime: Runtime) -> None:
    """Average BatchNorm running statistics over ranks, so that every rank evaluates and ends with
    the same model (DDP keeps parameters equal, but each rank's last step updates its own stats;
    SyncBatchNorm on CUDA keeps them equal already)."""
    if not runtime.distributed:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= runtime.world_size


def stop_requested(stop: dict, runtime: Runtime) -> bool:
    """Every rank stops at the same step: rank 0's Ctrl-C is shared with the others."""
    if not runtime.distributed:
        return stop["requested"]
    flag = torch.tensor([1.0 if stop["requested"] else 0.0], device=runtime.device)
    dist.all_reduce(flag)
    return bool(flag.item())


def wrap(model: nn.Module, runtime: Runtime, compile_mode: str | None = None) -> nn.Module:
    """DDP (with SyncBatchNorm on CUDA) under torchrun, then ``torch.compile`` in
    ``compile_mode`` (:func:`~mgiad.training.config.compile_mode`; ``None``: eager)."""
    net = model
    if runtime.distributed:
        if runtime.device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    if compile_mode is None:
        return net
    return torch.compile(net, mode=compile_mode, dynamic=False)
