"""Test loss and accuracy of a model, summed over every rank's shard."""
from __future__ import annotations

import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import Runtime, all_reduce
from .signals import Interrupted

__all__ = ["evaluate", "autocast"]


def autocast(runtime: Runtime, amp: bool):
    """bf16 autocast on the run's device when ``amp``: CUDA, or the CPU (where it pays on CPUs
    with AVX512-BF16 or AMX); else nothing."""
    return torch.autocast(runtime.device.type, dtype=torch.bfloat16) if amp else nullcontext()


def evaluate(model: nn.Module, loader, runtime: Runtime, amp: bool = False,
             channels_last: bool = False, stop: dict | None = None) -> dict[str, float]:
    """Test loss and accuracy (percent), summed over every rank's shard, and the seconds taken.
    ``stop``: the training loop's stop flag; Ctrl-C / SIGTERM then interrupts the evaluation."""
    t0 = time.time()
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=runtime.device)  # loss, correct, count
    with torch.no_grad(), autocast(runtime, amp):
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if stop is not None and stop["requested"]:
                raise Interrupted
            logits = model(x).float()
            sums[0] += F.cross_entropy(logits, y, reduction="sum")
            sums[1] += (logits.argmax(1) == y).sum()
            sums[2] += y.numel()
    loss_sum, correct, count = all_reduce(sums.tolist(), runtime)
    return {"loss": loss_sum / max(count, 1), "acc": 100.0 * correct / max(count, 1),
            "seconds": time.time() - t0}
