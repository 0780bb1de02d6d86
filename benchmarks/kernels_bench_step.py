"""Micro-benchmark: the smoothing step's element-wise work (eq. 5), fused passes against PyTorch's
ops on the same channels_last float32 maps, interleaved in one process.

    forward:  r = f - A_u, BN statistics, relu(bn1(r)); BN statistics of z, u + relu(bn2(z))
              PyTorch: sub, native_batch_norm, relu_, native_batch_norm, relu_, add
    backward: the backward of relu(bn(x)) with the gradient of A_u (-g)
              PyTorch: threshold_backward (mask from bn(x)), native_batch_norm_backward, neg

For each shape it prints the median (--stat min: the best) milliseconds, the effective bandwidth of
the fused version (bytes it must read and write: forward 6 map reads and 3 writes, backward 4 reads
and 2 writes) and the speed-up (PyTorch time / fused time).
"""
import argparse

import torch

from bench_timing import STATS, interleaved

from mgiad.kernels import runtime

DEFAULT_SHAPES = ((192, 32, 32), (384, 16, 16), (16, 32, 32), (32, 16, 16))


def passes(shape):
    """{name: (fused, PyTorch)} as zero-argument callables on random maps of ``shape``."""
    from mgiad.kernels import batchnorm as fused
    cl, C = torch.channels_last, shape[1]
    f, A_u, u, g = (torch.randn(shape).contiguous(memory_format=cl) for _ in range(4))
    gamma, beta = torch.rand(C) + 0.5, torch.randn(C)
    running = torch.zeros(C), torch.ones(C)
    mean, var = fused.batch_stats(f)
    invstd = (var + 1e-5).rsqrt()
    scale = gamma * invstd
    shift = beta - mean * scale

    def fused_forward():
        r, m, v = fused.residual_stats(f, A_u)
        s = (v + 1e-5).rsqrt() * gamma
        fused.affine_relu(r, s, beta - m * s)
        m2, v2 = fused.batch_stats(r)
        s2 = (v2 + 1e-5).rsqrt() * gamma
        return fused.affine_relu(r, s2, beta - m2 * s2, u=u)

    def pytorch_forward():
        r = f - A_u
        torch.native_batch_norm(r, gamma, beta, *running, True, 0.1, 1e-5)[0].relu_()
        n2 = torch.native_batch_norm(r, gamma, beta, *running, True, 0.1, 1e-5)[0]
        return torch.add(u, n2.relu_())

    def pytorch_backward():
        y = torch.addcmul(shift.view(1, -1, 1, 1), f, scale.view(1, -1, 1, 1))
        g_n = torch.ops.aten.threshold_backward(g, y, 0)
        g_x = torch.ops.aten.native_batch_norm_backward(g_n, f, gamma, None, None, mean, invstd,
                                                        True, 1e-5, [True, True, True])[0]
        return g_x.neg()

    return {"forward": (fused_forward, pytorch_forward),
            "backward": (lambda: fused.relu_bn_backward(g, f, mean, invstd, gamma, beta, True),
                         pytorch_backward)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/kernels_bench_step.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--shape", action="append", metavar="C,H,W",
                        help="channels, height, width; repeatable (default: 192,32,32 384,16,16 "
                             "16,32,32 32,16,16)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of each pass (default 15)")
    parser.add_argument("--stat", choices=sorted(STATS), default="median")
    args = parser.parse_args(argv)
    if not runtime.available():
        parser.exit(1, "mgiad.kernels: kernels unavailable here (see the warning above, or MGIAD_KERNELS=0)\n")
    if args.threads:
        torch.set_num_threads(args.threads)
    from mgiad.utils.malloc import tune_malloc
    tune_malloc()
    stat = STATS[args.stat]
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape] if args.shape else DEFAULT_SHAPES
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, {args.stat} of {args.repeats}")
    print(f"{'C':>4} {'HxW':>6} {'pass':<9} {'fused ms':>9} {'PyTorch ms':>11} {'fused GB/s':>11} {'speed-up':>9}")
    for channels, height, width in shapes:
        shape = (args.batch, channels, height, width)
        map_bytes = 4 * args.batch * channels * height * width
        for name, (ours, theirs) in passes(shape).items():
            t_ours, t_theirs = interleaved(ours, theirs, args.repeats, stat)
            moved = map_bytes * (9 if name == "forward" else 6)
            print(f"{channels:>4} {f'{height}x{width}':>6} {name:<9} {t_ours * 1e3:>9.2f} {t_theirs * 1e3:>11.2f} "
                  f"{moved / t_ours / 1e9:>11.1f} {t_theirs / t_ours:>8.2f}x")


if __name__ == "__main__":
    main()
