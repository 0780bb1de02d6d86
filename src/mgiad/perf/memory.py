"""Peak memory of live tensors, on any device and without allocator noise.

``with LiveTensorPeak() as peak: ...`` counts every tensor storage created inside the block (forward
and backward alike: autograd runs under the same dispatch mode) until it is freed, and keeps the
highest total in ``peak.peak`` (bytes). Unlike malloc's or CUDA's counters it sees tensors only, so
it shows what a change to the model itself costs; ``mgiad bench`` reports the allocator's peak
(:class:`MallocPeak` on the CPU, measured in a fresh process per model, and CUDA's counter).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import subprocess
import sys
import threading
import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .specs import ModelSpec
from .timing import _setup, _sync, _train_step_fn


class LiveTensorPeak(TorchDispatchMode):
    """Peak bytes of the tensor storages created inside the block and still alive."""

    def __init__(self):
        super().__init__()
        self.live: set[int] = set()
        self.now = self.peak = 0

    def _free(self, key: int, nbytes: int) -> None:
        self.live.discard(key)
        self.now -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:
                    self.live.add(key)
                    self.now += storage.nbytes()
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        self.peak = max(self.peak, self.now)
        return out


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


class MallocPeak:
    """Peak bytes in use by malloc (glibc ``mallinfo2``: ``uordblks + hblkhd``) while the block
    runs, sampled by a thread every ``interval`` seconds; PyTorch's CPU tensors live there."""

    def __init__(self, interval: float = 2e-4):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        self._mallinfo2 = libc.mallinfo2  # AttributeError where glibc < 2.33 or not glibc
        self._mallinfo2.restype = _MallInfo2
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def in_use(self) -> int:
        info = self._mallinfo2()
        return info.uordblks + info.hblkhd

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.in_use())
            time.sleep(self.interval)

    def __enter__(self) -> "MallocPeak":
        self.start = self.peak = self.in_use()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.in_use())


def _peak_rss_bytes() -> int:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def cpu_memory_method() -> str:
    try:
        MallocPeak()
        return "malloc peak in use (glibc mallinfo2, sampled) over 2 steps, fresh subprocess"
    except (AttributeError, OSError):
        return "peak RSS growth over 2 steps, fresh subprocess"


def measure_memory(spec: ModelSpec, batch_size: int, image_size: int, num_classes: int,
                   device: torch.device, dtype: torch.dtype, channels_last: bool,
                   steps: int = 2) -> float:
    """Peak extra bytes of ``steps`` training steps (see the module docstring for the method)."""
    model, x, y = _setup(spec, batch_size, image_size, num_classes, device, channels_last)
    step = _train_step_fn(model, x, y, dtype)

    def run():
        for _ in range(steps):
            step()
        _sync(device)
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        return float(torch.cuda.max_memory_allocated(device) - before)
    try:
        probe = MallocPeak()
    except (AttributeError, OSError):  # not glibc: the process's resident high-water mark
        before = _peak_rss_bytes()
        run()
        return float(_peak_rss_bytes() - before)
    with probe:
        run()
    return float(probe.peak - probe.start)


def _memory_in_subprocess(spec: ModelSpec, args: argparse.Namespace,
                          batch_size: int | None = None) -> float:
    payload = json.dumps({"name": spec.name, "kwargs": spec.kwargs})
    cmd = [sys.executable, "-m", "mgiad.perf.bench", "--memory-probe", payload,
           "--batch-size", str(batch_size or args.batch_size), "--image-size", str(args.image_size),
           "--num-classes", str(args.num_classes), "--dtype", args.dtype,
           "--threads", str(torch.get_num_threads())]
    if args.channels_last:
        cmd.append("--channels-last")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"memory probe for {spec.label} failed:\n{done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_bytes"])


def _training_bytes(spec: ModelSpec, batch_size: int, args: argparse.Namespace,
                    device: torch.device, dtype: torch.dtype) -> float:
    """Everything a training step at ``batch_size`` holds at its peak: weights and input as well
    as the measured peak above them."""
    from ..utils.counting import count_parameters
    weights = count_parameters(spec.build(args.num_classes)) * 4
    image = 3 * args.image_size ** 2 * 4 + 8
    if device.type == "cuda":
        torch.cuda.empty_cache()
        peak = measure_memory(spec, batch_size, args.image_size, args.num_classes, device, dtype,
                              args.channels_last)
    else:
        peak = _memory_in_subprocess(spec, args, batch_size)
    return weights + image * batch_size + peak
