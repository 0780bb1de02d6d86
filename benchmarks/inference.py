"""Inference on the CPU: MGiaD against the ResNet a deploying user would pick, batch 1, 8 and 64.

Pairs: MGiaD(lambda=3, g_s=4, c_K=64) against ResNet18 on 3x32x32, and table 2's 16-32-64 MGiaD
(c_K=16, g_s=4) against ResNet20 on 1x32x32. Each model runs as

* ``optimized``: ``mgiad.optimize_for_inference`` (BatchNorm folded, epilogues on the C++ kernels,
  dense 3x3 convolutions by Winograd's F(4x4, 3x3), the traced executor);
* ``optimized, no Winograd``: the same with ``MGIAD_WINOGRAD=0`` (dense 3x3 convolutions on oneDNN);
* ``PyTorch NCHW`` / ``PyTorch NHWC``: what a PyTorch user deploys without mgiad's kernels: the
  BatchNorm-folded model (``fuse_bn``) traced and frozen (``torch.jit.freeze``), PyTorch's operators
  only, in either memory format;
* ``onnxruntime`` (``--onnx``): the model exported by ``mgiad.deploy.export_model`` and run by
  onnxruntime with the same number of threads.

One process, the PyTorch variants of a pair interleaved per repeat, then the onnxruntime ones
(their thread pools must not compete), every other repeat in reverse order; times are medians,
ratios the median over repeats of a model's time against the same repeat's time of the ResNet's
fastest variant (PyTorch rows) or of the ResNet in onnxruntime (onnxruntime rows); a second ratio
is against the ResNet's faster ``PyTorch`` variant: the ResNet as PyTorch runs it. Models get non-trivial BatchNorm statistics (as a trained model has).

    python benchmarks/inference.py [--batches 1,8,64] [--repeats 15] [--threads 2] [--onnx]
                                   [--only big|small] [--json FILE]

``--breakdown`` instead says where each optimized model's time goes, per kind of operator, with
FLOP/s and bytes/s against this machine's peaks (``op_breakdown.py``: each call timed in the forward,
because ``torch.profiler`` doubles MGiaD's time):

    python benchmarks/inference.py --breakdown --batches 64 [--only big]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import mgiad
from mgiad.layers.fold import fuse_bn
from mgiad.utils.malloc import tune_malloc

import op_breakdown

NO_WINOGRAD, PYTORCH = "optimized, no Winograd", "PyTorch"

PAIRS = {
    "big": (("resnet18", {}), ("mgiad", dict(width_mult=3, coarse_channels=64, group_size=4)), 3),
    "small": (("resnet20", {}), ("mgiad", dict(widths=(16, 32, 64), coarse_channels=16,
                                               group_size=4)), 1),
}


def trained_like(name, in_chans, **kwargs):
    torch.manual_seed(0)
    model = mgiad.create_model(name, num_classes=10, in_chans=in_chans, **kwargs)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
    return model.eval()


def variants(name, kwargs, in_chans, onnx, threads):
    model = trained_like(name, in_chans, **kwargs)
    out = {"optimized": (mgiad.optimize_for_inference(model), False)}
    previous = os.environ.get("MGIAD_WINOGRAD")
    os.environ["MGIAD_WINOGRAD"] = "0"  # read while tracing: the dense 3x3 convolutions stay oneDNN's
    try:
        out[NO_WINOGRAD] = (mgiad.optimize_for_inference(model), False)
    finally:
        os.environ.pop("MGIAD_WINOGRAD") if previous is None else os.environ.update(MGIAD_WINOGRAD=previous)
    for layout, channels_last in (("NCHW", False), ("NHWC", True)):
        folded = fuse_bn(model)
        example = torch.randn(2, in_chans, 32, 32)
        if channels_last:
            folded, example = folded.to(memory_format=torch.channels_last), example.contiguous(
                memory_format=torch.channels_last)
        with torch.inference_mode():  # outside mgiad's trace_kernels: PyTorch's operators only
            frozen = torch.jit.freeze(torch.jit.trace(folded, example, check_trace=False).eval())
        out[f"{PYTORCH} {layout}"] = (frozen, channels_last)
    if onnx:
        out["onnxruntime"] = (onnx_session(model, threads), False)
    return out


def onnx_session(model, threads):
    import onnxruntime as ort
    from mgiad.deploy.export import export_model
    path = Path(tempfile.mkdtemp()) / "model.onnx"
    export_model(model, path, "onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # no busy-waiting between runs: its spinning threads would take the cores from PyTorch's
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})


def time_pair(models, batch, in_chans, repeats, base_prefix):
    """{label: (median ms, ratio, ratio to the ResNet in PyTorch)}: the models interleaved in each of
    ``repeats`` rounds, every other round in reverse order (a model measured 2-4% slower right after a ResNet than after another
    MGiaD); a model's ratio is the median over rounds of its time against the same round's time of
    the ``base_prefix`` model with the lowest median (this machine's speed drifts by up to 30%
    within a minute, and a ratio taken inside one round is not moved by that)."""
    calls = {}
    for label, (run, channels_last) in models.items():
        x = torch.randn(batch, in_chans, 32, 32)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def call(run=run, x=x):
            with torch.inference_mode():
                run(x)
        calls[label] = call
    times = {label: [] for label in calls}
    for r in range(repeats + 2):
        for label, call in (calls.items() if r % 2 == 0 else reversed(calls.items())):
            t0 = time.perf_counter()
            call()
            if r >= 2:
                times[label].append(time.perf_counter() - t0)
    def fastest(labels):
        labels = list(labels)
        return min(labels, key=lambda k: statistics.median(times[k])) if labels else None

    def ratio(t, base):
        return None if base is None else statistics.median(a / b for a, b in zip(t, times[base]))

    resnets = [k for k in times if k.startswith(base_prefix)]
    base = fastest(resnets)
    # the ResNet as PyTorch runs it (onnxruntime rows: the ResNet in onnxruntime)
    in_pytorch = fastest(k for k in resnets if PYTORCH in k or k.endswith("onnxruntime"))
    return {label: (statistics.median(t) * 1e3, ratio(t, base), ratio(t, in_pytorch))
            for label, t in times.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--onnx", action="store_true", help="also onnxruntime (needs onnx, onnxruntime)")
    p.add_argument("--only", choices=sorted(PAIRS))
    p.add_argument("--json", help="write the results here")
    p.add_argument("--breakdown", action="store_true",
                   help="per-operator breakdown of each optimized model instead of the pair timings")
    args = p.parse_args()
    tune_malloc()
    torch.set_num_threads(args.threads)
    rows = []
    if args.breakdown:
        rows = breakdown(args)
        write_json(args, rows)
        return
    for pair, ((resnet, r_kw), (net, n_kw), in_chans) in PAIRS.items():
        if args.only and pair != args.only:
            continue
        models = {f"{resnet} {k}": v for k, v in variants(resnet, r_kw, in_chans, args.onnx, args.threads).items()}
        models.update({f"{net} {k}": v for k, v in variants(net, n_kw, in_chans, args.onnx, args.threads).items()})
        for batch in [int(b) for b in args.batches.split(",")]:
            repeats = args.repeats * (5 if batch == 1 else 1)  # short calls: more of them
            # PyTorch and onnxruntime are timed in separate rounds: their thread pools, interleaved,
            # wait on each other's cores
            torch_models = {k: v for k, v in models.items() if not k.endswith("onnxruntime")}
            ort_models = {k: v for k, v in models.items() if k.endswith("onnxruntime")}
            results = time_pair(torch_models, batch, in_chans, repeats, resnet)
            if ort_models:
                results.update(time_pair(ort_models, batch, in_chans, repeats, resnet))
            for label, (t, ratio, ratio_pytorch) in results.items():
                rows.append(dict(pair=pair, batch=batch, model=label, ms=round(t, 3),
                                 ratio=round(ratio, 3), ratio_pytorch=round(ratio_pytorch, 3)))
                print(f"{pair:5s} batch {batch:3d}  {label:28s} {t:9.2f} ms  {ratio:5.2f}x  "
                      f"{ratio_pytorch:5.2f}x", flush=True)
    write_json(args, rows)


def breakdown(args) -> list:
    peak = op_breakdown.peaks()
    rows = []
    for pair, (resnet, net, in_chans) in PAIRS.items():
        if args.only and pair != args.only:
            continue
        for name, kwargs in (resnet, net):
            model = mgiad.optimize_for_inference(trained_like(name, in_chans, **kwargs))
            for batch in [int(b) for b in args.batches.split(",")]:
                x = torch.randn(batch, in_chans, 32, 32)
                recorder = op_breakdown.Recorder(batch)
                with torch.inference_mode():
                    times = []
                    for r in range(args.repeats + 2):  # the optimized forward and the timed eager one
                        t0 = time.perf_counter()
                        model(x)
                        times.append(time.perf_counter() - t0)
                        with recorder.forward():
                            model.folded(x)  # eager: every call goes through the recorder
                calls = recorder.calls()
                for c in calls:
                    c.seconds = c.seconds[2:]  # the first two forwards warm up
                summary = op_breakdown.summarize(calls)
                forward = statistics.median(times[2:])
                print(f"\n{name} {kwargs or ''} batch {batch}")
                print(op_breakdown.format_table(summary, peak, forward), flush=True)
                rows += [dict(pair=pair, model=name, batch=batch, forward_ms=round(forward * 1e3, 3),
                              **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()})
                         for r in summary]
    rows.append(dict(peak_gflops=round(peak["flops"] / 1e9, 1), peak_gbytes=round(peak["bytes"] / 1e9, 1)))
    return rows


def write_json(args, rows) -> None:
    if args.json:
        meta = dict(torch=torch.__version__, python=platform.python_version(), threads=args.threads,
                    repeats=args.repeats, machine=platform.machine(), processor=platform.processor())
        Path(args.json).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")


if __name__ == "__main__":
    main()
