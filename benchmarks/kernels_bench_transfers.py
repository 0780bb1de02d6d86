"""Micro-benchmark of the transfer kernels against oneDNN (``python benchmarks/kernels_bench.py --transfers``):
forward, gradient of the input and of the weight, interleaved in one process on the same
channels_last float32 tensors, at the transfers of the small Table-2 MGiaD (batch 128) and of
MGiaD(3) (batch 64). Bandwidth counts the bytes each pass must read and write once (weights aside).

Shapes: ``dw,C,m,H,W`` is a depthwise 3x3 stride-2 convolution of C input channels at HxW with
channel multiplier m; ``pair,C,g,H,W`` a 1x1 convolution with C groups of g input channels and
3 - g output channels (g = 2: 2C -> C, ``R-hat``/``Pi-hat``; g = 1: C -> 2C, ``P-hat``).
"""
import argparse
import statistics

import torch
import torch.nn.functional as F

from bench_timing import interleaved

from mgiad.kernels import transfers

# (batch, shape): the small Table-2 MGiaD (16-32-64, c_K 16, batch 128) and MGiaD(3) (batch 64)
PRESETS = {
    "small": (128, (("dw", 16, 2, 32, 32), ("dw", 32, 2, 16, 16), ("pair", 16, 2, 16, 16), ("pair", 16, 1, 16, 16),
                    ("pair", 32, 2, 8, 8), ("pair", 32, 1, 8, 8))),
    "mgiad3": (64, (("dw", 192, 2, 32, 32), ("dw", 384, 2, 16, 16), ("dw", 768, 1, 8, 8), ("pair", 96, 2, 32, 32),
                    ("pair", 96, 1, 32, 32), ("pair", 192, 2, 16, 16), ("pair", 192, 1, 16, 16),
                    ("pair", 384, 2, 8, 8), ("pair", 384, 1, 8, 8))),
}


def parse_shape(text: str):
    """'dw,C,m,H,W' or 'pair,C,g,H,W' -> (kind, C, m or g, H, W)."""
    parts = text.split(",")
    if len(parts) != 5 or parts[0] not in ("dw", "pair") or not all(p.isdigit() for p in parts[1:]):
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected dw,C,m,H,W or pair,C,g,H,W")
    kind, values = parts[0], tuple(int(p) for p in parts[1:])
    if values[1] not in (1, 2):
        raise argparse.ArgumentTypeError(f"shape {text!r}: m and g must be 1 or 2")
    return (kind, *values)


def tensors(batch, kind, channels, k, height, width):
    """(x, weight, conv args, grad_out) of one shape, channels_last."""
    cl = torch.channels_last
    if kind == "dw":
        x = torch.randn(batch, channels, height, width).contiguous(memory_format=cl)
        weight = torch.randn(k * channels, 1, 3, 3)
        args = ((2, 2), (1, 1), (1, 1), channels)
    else:
        c_in, c_out = (2 * channels, channels) if k == 2 else (channels, 2 * channels)
        x = torch.randn(batch, c_in, height, width).contiguous(memory_format=cl)
        weight = torch.randn(c_out, k, 1, 1)
        args = ((1, 1), (0, 0), (1, 1), channels)
    grad_out = torch.randn_like(F.conv2d(x, weight, None, *args)).contiguous(memory_format=cl)
    return x, weight, args, grad_out


def passes(x, weight, args, grad_out, isa):
    """{pass: (ours, oneDNN, bytes moved)}: zero-argument callables."""
    kind = transfers.transfer_kind(x, weight, *args)
    assert kind is not None, "not a transfer shape"
    ours = transfers.KERNELS[kind]
    stride, padding, dilation, groups = args

    def onednn_backward(mask):
        return lambda: torch.ops.aten.convolution_backward(grad_out, x, weight, None, stride, padding, dilation,
                                                           False, [0, 0], groups, mask)
    io = 4 * (x.numel() + grad_out.numel())
    return {
        "forward": (lambda: ours.forward(x, weight, isa), lambda: F.conv2d(x, weight, None, *args), io),
        "grad-input": (lambda: ours.grad_input(grad_out, weight, x.shape, isa),
                       onednn_backward([True, False, False]), io),
        "grad-weight": (lambda: ours.grad_weight(x, grad_out, weight, isa),
                        onednn_backward([False, True, False]), io),
    }


def bench_shape(batch, shape, repeats, isa, stat=statistics.median):
    """[(pass, ours s, oneDNN s, bytes)]: stat of interleaved runs."""
    rows = []
    with torch.no_grad():
        for name, (ours, onednn, nbytes) in passes(*tensors(batch, *shape), isa).items():
            rows.append((name, *interleaved(ours, onednn, repeats, stat), nbytes))
    return rows


def run(shapes, batch, repeats, isa, stat):
    """Prints the table for [(batch or None, shape)]; ``batch`` (if not None) overrides, 64 is the default."""
    print(f"{'kind':<4} {'N':>4} {'C,k':>7} {'HxW':>6} {'pass':<12} {'ours ms':>8} {'oneDNN ms':>10} "
          f"{'ours GB/s':>10} {'oneDNN GB/s':>12} {'speed-up':>9}")
    for shape_batch, shape in shapes:
        n = batch or shape_batch or 64
        kind, channels, k, height, width = shape
        for name, ours, onednn, nbytes in bench_shape(n, shape, repeats, isa, stat):
            print(f"{kind:<4} {n:>4} {f'{channels},{k}':>7} {f'{height}x{width}':>6} {name:<12} {ours * 1e3:>8.3f} "
                  f"{onednn * 1e3:>10.3f} {nbytes / ours / 1e9:>10.1f} {nbytes / onednn / 1e9:>12.1f} "
                  f"{onednn / ours:>8.2f}x")


def preset_shapes(names):
    return [(batch, shape) for name in names for batch, shapes in [PRESETS[name]] for shape in shapes]
