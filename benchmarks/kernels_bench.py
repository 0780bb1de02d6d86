"""Micro-benchmark: the grouped 3x3 convolution kernels against oneDNN (PyTorch's CPU convolution) on
the same channels_last float32 tensors, at MGiaD(lambda=3)'s shapes. ``--transfers`` benchmarks the
transfer kernels instead (see ``benchmarks/kernels_bench_transfers.py``).

For each shape it times forward, gradient of the input and gradient of the weight, ours and
oneDNN's (``F.conv2d`` / ``torch.ops.aten.convolution_backward``), in one process, interleaved
(ours, oneDNN, ours, oneDNN, ...), and prints the median (--stat min: the best) milliseconds,
GFLOP/s (2 * N*H*W*C*g*9 flops per pass) and the speed-up (oneDNN time / our time; above 1 means
ours is faster).

Every pass allocates its output, and glibc returns each block over 32 MB to the OS when freed, so
that every new one pays page faults (~15 ms per 50 MB here, for both sides). --reuse-memory reruns the
benchmark with glibc told to keep freed memory (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_), which
measures the convolutions themselves.
"""
import argparse
import os
import sys
import statistics

import torch
import torch.nn.functional as F

import kernels_bench_transfers as bench_transfers
from bench_timing import STATS, interleaved

from mgiad.kernels import runtime

# MGiaD(lambda=3)'s grouped convolutions: (channels, group size, height, width)
DEFAULT_SHAPES = ((192, 4, 32, 32), (192, 8, 32, 32), (384, 4, 16, 16), (384, 8, 16, 16))


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """'C,G,H,W' -> (C, G, H, W)."""
    values = tuple(int(v) for v in text.replace("x", ",").split(","))
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected C,G,H,W, e.g. 192,4,32,32")
    return values


def passes(x, weight, grad_out, isa):
    """{pass name: (ours, oneDNN)} as zero-argument callables."""
    ops, groups = torch.ops.mgiad_kernels, x.shape[1] // weight.shape[1]

    def onednn_backward(mask):
        return lambda: torch.ops.aten.convolution_backward(grad_out, x, weight, None, [1, 1], [1, 1], [1, 1],
                                                           False, [0, 0], groups, mask)
    return {
        "forward": (lambda: ops.conv3x3_forward(x, weight, isa),
                    lambda: F.conv2d(x, weight, padding=1, groups=groups)),
        "grad-input": (lambda: ops.conv3x3_grad_input(grad_out, weight, isa), onednn_backward([True, False, False])),
        "grad-weight": (lambda: ops.conv3x3_grad_weight(x, grad_out, weight.shape[1], isa),
                        onednn_backward([False, True, False])),
    }


def bench_shape(batch, channels, group_size, height, width, repeats, isa, stat=statistics.median):
    """[(pass, ours seconds, oneDNN seconds)]: stat (median, min) of interleaved runs."""
    cl = torch.channels_last
    x = torch.randn(batch, channels, height, width).contiguous(memory_format=cl)
    grad_out = torch.randn_like(x)
    weight = torch.randn(channels, group_size, 3, 3)
    rows = []
    with torch.no_grad():
        for name, (ours, onednn) in passes(x, weight, grad_out, isa).items():
            rows.append((name, *interleaved(ours, onednn, repeats, stat)))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/kernels_bench.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size (default 64; --transfers: each preset's own, 128 small, 64 mgiad3)")
    parser.add_argument("--shape", action="append", metavar="C,G,H,W",
                        help="channels, group size, height, width; repeatable (default: MGiaD(3)'s four: "
                             "192,4,32,32 192,8,32,32 384,4,16,16 384,8,16,16). With --transfers: "
                             "dw,C,m,H,W or pair,C,g,H,W")
    parser.add_argument("--transfers", action="store_true",
                        help="benchmark the transfer kernels (depthwise 3x3 stride 2, 1x1 channel pairs)")
    parser.add_argument("--preset", choices=sorted(bench_transfers.PRESETS), action="append",
                        help="--transfers without --shape: the transfers of 'small' (Table-2 16-32-64 MGiaD, "
                             "batch 128) and/or 'mgiad3' (MGiaD(3), batch 64); default both")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, here %d)"
                        % torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of each pass (default 10)")
    parser.add_argument("--stat", choices=sorted(STATS), default="median",
                        help="statistic of the timed runs (default median; min where other jobs share the CPU)")
    parser.add_argument("--isa", choices=["avx512", "avx2"], default=None, help="instruction set (default: best)")
    parser.add_argument("--reuse-memory", action="store_true",
                        help="rerun with glibc keeping freed memory (no page faults on each new output)")
    args = parser.parse_args(argv)
    try:
        shapes = [(bench_transfers.parse_shape if args.transfers else parse_shape)(text) for text in args.shape or []]
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    if args.reuse_memory and os.environ.get("MALLOC_MMAP_MAX_") != "0":
        os.environ.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(1 << 40))
        argv = sys.argv[1:] if argv is None else argv
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *argv])
    if not runtime.available():
        parser.exit(1, "mgiad.kernels: kernels unavailable here (see the warning above, or MGIAD_KERNELS=0)\n")
    if args.threads:
        torch.set_num_threads(args.threads)
    isa = runtime.isa() if args.isa is None else min(runtime.cpu_isa(), {"avx2": 1, "avx512": 2}[args.isa])
    torch.manual_seed(0)
    memory = "freed memory kept" if os.environ.get("MALLOC_MMAP_MAX_") == "0" else "default allocator"
    stat = STATS[args.stat]
    print(f"threads {torch.get_num_threads()}, isa {runtime.ISA_NAMES[isa]}, batch {args.batch or 'preset'}, "
          f"{args.stat} of {args.repeats}, {memory}")
    if args.transfers:
        chosen = ([(None, shape) for shape in shapes]
                  or bench_transfers.preset_shapes(args.preset or ["small", "mgiad3"]))
        return bench_transfers.run(chosen, args.batch, args.repeats, isa, stat)
    args.batch = args.batch or 64
    print(f"{'C':>4} {'g':>2} {'HxW':>6} {'pass':<12} {'ours ms':>8} {'oneDNN ms':>10} {'ours GF/s':>10} "
          f"{'oneDNN GF/s':>12} {'speed-up':>9}")
    for channels, group_size, height, width in shapes or DEFAULT_SHAPES:
        flops = 2 * args.batch * height * width * channels * group_size * 9
        for name, ours, onednn in bench_shape(args.batch, channels, group_size, height, width, args.repeats, isa,
                                              stat):
            print(f"{channels:>4} {group_size:>2} {f'{height}x{width}':>6} {name:<12} {ours * 1e3:>8.2f} "
                  f"{onednn * 1e3:>10.2f} {flops / ours / 1e9:>10.1f} {flops / onednn / 1e9:>12.1f} "
                  f"{onednn / ours:>8.2f}x")


if __name__ == "__main__":
    main()
