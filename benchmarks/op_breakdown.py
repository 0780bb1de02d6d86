"""Where the time of a forward goes, operator by operator, without the profiler's distortion.

``torch.profiler`` roughly doubles the time of the optimized MGiaD(3) at batch 64 (its ~120
operator calls on large maps; ResNet18's time it leaves unchanged), so its per-operator times
overstate what the kernels cost; replaying each call alone gets the caches wrong (warm, a call
runs faster than in the forward; flushed, slower). Here the eager forward itself is timed call by
call: each call into the C++ kernels (``torch.ops.mgiad_kernels``) and into PyTorch's convolution
(``F.conv2d``, oneDNN) is wrapped with a clock, in the forward, so each runs with the caches as the
forward leaves them. Median per call over several forwards; what the calls do not cover is
Python between them (a few ms per forward) and the other PyTorch operators (none in the optimized
models but a pooling and the classifier).

Each call gets its FLOPs (convolutions: 2 x outputs x inputs per output, for the Winograd kernel
too: its rate is the direct convolution's equivalent) and bytes (every feature
map it reads or writes, once, float32; weights not counted), and the rates are set against this
machine's peaks measured here: :func:`peaks` (an fp32 matrix product for FLOP/s, a tensor copy for
bytes/s).

Used by ``benchmarks/inference.py --breakdown``.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class Call:
    op: str
    category: str
    flops: float
    bytes: float
    seconds: list = field(default_factory=list)


class _Ops:
    """Stands in for ``torch.ops.mgiad_kernels``: every operator looked up is timed when called."""

    def __init__(self, real, timer):
        self._real, self._timer = real, timer

    def __getattr__(self, name):
        op = getattr(self._real, name)
        # the Winograd weight transform: part of an eager forward, computed once in a frozen trace
        return op if name in UNTIMED else self._timer(name, op)


UNTIMED = ("winograd_weight",)


class Recorder:
    """``with recorder.forward(): model(x)`` times every call of one forward; after several forwards
    (the same calls in the same order), :meth:`calls` holds each call's times."""

    def __init__(self, batch: int):
        self.batch, self._calls, self._index = batch, [], 0

    def _timer(self, name, fn):
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            seconds = time.perf_counter() - t0
            if self._index == len(self._calls):
                self._calls.append(_describe(name, args, out, self.batch))
            self._calls[self._index].seconds.append(seconds)
            self._index += 1
            return out
        return call

    @contextlib.contextmanager
    def forward(self):
        real_ops, real_conv = torch.ops.mgiad_kernels, F.conv2d
        torch.ops.mgiad_kernels = _Ops(real_ops, self._timer)
        F.conv2d = self._timer("F.conv2d", real_conv)
        self._index = 0
        try:
            yield
        finally:
            torch.ops.mgiad_kernels, F.conv2d = real_ops, real_conv

    def calls(self) -> list:
        return self._calls


def _describe(op: str, args: tuple, out, batch: int) -> Call:
    """The call's category, FLOPs and bytes (feature maps read and written, once each)."""
    step = op == "conv3x3_smoothing_step"  # (u, f, A, A_u, alpha, s1, t1, B, b2, isa): 1 or 2 convolutions
    winograd = op == "winograd_conv3x3"  # (x, weight, U, ...): FLOPs counted as the direct convolution's
    conv = winograd or op == "F.conv2d" or op.startswith(("conv3x3", "dw3x3s2", "pair1x1"))
    weights = {2, 7} if step else {1, 2} if winograd else {1} if conv else set()  # (x, weight, ...) otherwise
    maps = [a for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.dim() == 4
            and i not in weights and a.stride() != (0, 0, 0, 0)]
    weight = args[7] if step else args[1] if conv else None
    out_numel = out.numel() if isinstance(out, torch.Tensor) else 0
    nbytes = 4.0 * (sum(t.numel() for t in maps) + out_numel)
    convs = (2 if args[2] is not None else 1) if step else 1
    flops = 2.0 * convs * out_numel * weight.shape[1] * weight.shape[2] * weight.shape[3] if conv else 0.0
    x = maps[0].shape if maps else ()
    if op == "F.conv2d":
        k = f"{weight.shape[2]}x{weight.shape[3]}"
        if x[1] // weight.shape[1] > 1:
            category = f"grouped {k}, {x[1]} ch, {x[2]}x{x[3]} (oneDNN)"
        elif x[1] <= 4:
            category = "stem (oneDNN)"
        else:
            category = f"dense {k}, {x[1]}->{weight.shape[0]} ch, {x[2]}x{x[3]} (oneDNN)"
    elif winograd:
        category = f"dense 3x3, {x[1]}->{weight.shape[0]} ch, {x[2]}x{x[3]} (Winograd, C++)"
    elif step:
        category = f"smoothing steps (grouped 3x3), {x[1]} ch, {x[2]}x{x[3]} (C++)"
    elif op.startswith("conv3x3"):
        category = f"grouped 3x3, {x[1]} ch, {x[2]}x{x[3]} (C++)"
    elif op.startswith(("dw3x3s2", "pair1x1")):
        category = "transfers (C++)"
    elif op.startswith("epilogue"):
        category = "element-wise passes (C++)"
    else:
        category = op
    return Call(op, category, flops, nbytes)


def peaks(seconds: float = 2.0) -> dict:
    """This machine's fp32 FLOP/s (a 4096x4096 matrix product) and copy bytes/s (256 MiB, read and
    written), best of repeated runs over about ``seconds`` each."""
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    src, dst = torch.randn(64 * 2**20), torch.empty(64 * 2**20)

    def best(fn, work):
        rates, t_end = [], time.perf_counter() + seconds
        while time.perf_counter() < t_end or len(rates) < 3:
            t0 = time.perf_counter()
            fn()
            rates.append(work / (time.perf_counter() - t0))
        return max(rates)
    torch.mm(a, b)
    dst.copy_(src)  # first touch of the pages
    return dict(flops=best(lambda: torch.mm(a, b), 2.0 * 4096**3),
                bytes=best(lambda: dst.copy_(src), 2.0 * 4 * src.numel()))


def summarize(calls: list) -> list:
    """Rows per category, largest first: calls, seconds (sum of the calls' medians), FLOPs, bytes."""
    rows = {}
    for c in calls:
        r = rows.setdefault(c.category, dict(category=c.category, calls=0, seconds=0.0, flops=0.0,
                                             bytes=0.0))
        r["calls"] += 1
        r["seconds"] += statistics.median(c.seconds)
        r["flops"] += c.flops
        r["bytes"] += c.bytes
    return sorted(rows.values(), key=lambda r: -r["seconds"])


def format_table(rows: list, peak: dict, forward_seconds: float) -> str:
    total = sum(r["seconds"] for r in rows)
    lines = [f"sum of the timed calls {total * 1e3:.1f} ms; the optimized forward "
             f"{forward_seconds * 1e3:.1f} ms; peaks here {peak['flops'] / 1e9:.0f} GFLOP/s, "
             f"{peak['bytes'] / 1e9:.1f} GB/s",
             f"{'operators':48s} {'calls':>5s} {'ms':>8s} {'share':>6s} {'GFLOP/s':>8s} {'of peak':>7s}"
             f" {'GB/s':>6s} {'of peak':>7s}"]
    for r in rows:
        s = r["seconds"]
        gf, gb = r["flops"] / s / 1e9, r["bytes"] / s / 1e9
        compute = f"{gf:8.1f} {gf * 1e9 / peak['flops']:7.0%}" if r["flops"] else f"{'':8s} {'':7s}"
        lines.append(f"{r['category'][:48]:48s} {r['calls']:5d} {s * 1e3:8.2f} {s / total:6.1%} "
                     f"{compute} {gb:6.1f} {gb * 1e9 / peak['bytes']:7.0%}")
    return "\n".join(lines)
