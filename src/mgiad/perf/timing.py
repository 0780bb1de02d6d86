"""Timing a training step and a folded inference step, models interleaved, medians."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from .specs import ModelSpec



def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _prepare(model: torch.nn.Module, x: torch.Tensor, channels_last: bool):
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _setup(spec: ModelSpec, batch_size: int, image_size: int, num_classes: int,
           device: torch.device, channels_last: bool):
    """The model (seeded) and a random batch ``x``, ``y`` on ``device``."""
    torch.manual_seed(0)
    model = spec.build(num_classes).to(device)
    x = torch.randn(batch_size, model.in_chans, image_size, image_size, device=device)
    y = torch.randint(0, num_classes, (batch_size,), device=device)
    model, x = _prepare(model, x, channels_last)
    return model, x, y


def _train_step_fn(model, x, y, dtype) -> Callable[[], None]:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    autocast = dtype != torch.float32

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=dtype, enabled=autocast):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return step


def _infer_fn(model, x, dtype) -> Callable[[], None]:
    """One forward of ``mgiad.optimize_for_inference(model)`` (BatchNorm folded, checked against
    the unfolded model; on the CPU in float32 the traced executor on the kernels)."""
    from ..deploy.optimize import optimize_for_inference
    model.eval()
    executor = "auto" if dtype == torch.float32 else "eager"  # a frozen trace ignores autocast
    fast = optimize_for_inference(model, input_size=tuple(x.shape[2:]), executor=executor,
                                  atol=1e-3)
    autocast = dtype != torch.float32

    def infer():
        with torch.autocast(x.device.type, dtype=dtype, enabled=autocast):
            fast(x)
    infer.executor = fast.executor
    return infer


def _interleaved(fns: list[Callable[[], None]], warmup: int, repeats: int,
                 device: torch.device) -> list[float]:
    """Median seconds per call of each function, calls interleaved A B C A B C ..."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    _sync(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]
