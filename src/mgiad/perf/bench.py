"""``mgiad bench``: wall-clock speed and memory of models against ResNet18, in one process.

What is measured, per model, on the same input (random images, ``batch_size x 3 x S x S``):

* **train**: one SGD step (forward, cross-entropy, backward, ``step``), in train mode;
* **infer**: one forward of :func:`mgiad.optimize_for_inference` (BatchNorm folded into the
  convolutions, checked against the unfolded model; on the CPU in float32 a traced executor on
  the C++ kernels), under ``torch.inference_mode``;
* **memory**: the peak memory of two training steps above what was in use before them (model,
  input). CUDA: ``torch.cuda.max_memory_allocated``. CPU: PyTorch keeps no counter, so each model
  runs in a fresh subprocess where a thread samples malloc's bytes in use (glibc ``mallinfo2``);
  elsewhere, the growth of the process's peak resident set (``ru_maxrss``).

Timings interleave the models (A B C A B C ...) after warm-up and report medians, so a change in
machine load hits every model alike; every figure is also given as a ratio to the first model
(ResNet18 by default). The CPU results and their discussion: docs/performance.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..utils.device import resolve_device
from ..utils.malloc import malloc_tuned, tune_malloc
from ..utils.limits import check_input, check_size
from .max_batch import fit_largest_batch, parse_size
from .memory import _memory_in_subprocess, _training_bytes, cpu_memory_method, measure_memory
from .specs import DEFAULT_MODELS, ModelSpec, parse_spec
from .timing import _DTYPES, _infer_fn, _interleaved, _setup, _train_step_fn

__all__ = ["ModelSpec", "parse_spec", "DEFAULT_MODELS", "BenchResult", "run_bench", "main"]


@dataclass
class BenchResult:
    label: str
    weights: int
    gflops: float
    train_ms: float | None = None
    infer_ms: float | None = None
    infer_executor: str | None = None
    peak_mb: float | None = None
    train_images_per_s: float | None = None
    infer_images_per_s: float | None = None
    train_ratio: float | None = None
    infer_ratio: float | None = None
    memory_ratio: float | None = None
    max_batch: int | None = None
    max_batch_fit: str | None = None


def run_bench(specs: list[ModelSpec], args: argparse.Namespace, log=print) -> dict[str, Any]:
    from ..utils.counting import count_flops, count_parameters
    device = torch.device(args.device)
    dtype = _DTYPES[args.dtype]
    results, train_fns, infer_fns = [], [], []
    for spec in specs:
        model, x, y = _setup(spec, args.batch_size, args.image_size, args.num_classes, device,
                             args.channels_last)
        flops = count_flops(copy.deepcopy(model).cpu().float(), args.image_size)
        results.append(BenchResult(spec.label, count_parameters(model), flops.flops / 1e9))
        if "train" in args.measure:
            train_fns.append(_train_step_fn(model, x, y, dtype))
        if "infer" in args.measure:
            infer_fns.append(_infer_fn(copy.deepcopy(model), x, dtype))
            results[-1].infer_executor = infer_fns[-1].executor
    n = args.batch_size
    if train_fns:
        log(f"timing training steps ({args.warmup} warm-up, {args.repeats} interleaved repeats)")
        for r, t in zip(results, _interleaved(train_fns, args.warmup, args.repeats, device)):
            r.train_ms, r.train_images_per_s = t * 1e3, n / t
    if infer_fns:
        log(f"timing inference ({args.warmup} warm-up, {args.repeats} interleaved repeats)")
        for r, t in zip(results, _interleaved(infer_fns, args.warmup, args.repeats, device)):
            r.infer_ms, r.infer_images_per_s = t * 1e3, n / t
    if "memory" in args.measure:
        log("measuring peak training memory" + (" (one subprocess per model)"
                                                 if device.type == "cpu" else ""))
        for r, spec in zip(results, specs):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                peak = measure_memory(spec, args.batch_size, args.image_size, args.num_classes,
                                      device, dtype, args.channels_last)
            else:
                peak = _memory_in_subprocess(spec, args)
            r.peak_mb = peak / 2**20
    if getattr(args, "max_batch", None):
        budget = parse_size(args.max_batch)
        log(f"fitting the largest batch within {args.max_batch} (two batch sizes per model)")
        for r, spec in zip(results, specs):
            fit = fit_largest_batch(lambda b: _training_bytes(spec, b, args, device, dtype),
                                    budget, args.batch_size, check=device.type == "cuda")
            r.max_batch, r.max_batch_fit = fit.max_batch, fit.describe()
    base = results[0]
    for r in results:
        for attr, ratio in (("train_ms", "train_ratio"), ("infer_ms", "infer_ratio"),
                            ("peak_mb", "memory_ratio")):
            if getattr(r, attr) is not None and getattr(base, attr):
                setattr(r, ratio, getattr(r, attr) / getattr(base, attr))
    return {"machine": _machine(device), "settings": {
                "batch_size": args.batch_size, "image_size": args.image_size,
                "num_classes": args.num_classes, "device": str(device), "dtype": args.dtype,
                "channels_last": args.channels_last, "warmup": args.warmup,
                "repeats": args.repeats, "threads": torch.get_num_threads(),
                "malloc_tuned": malloc_tuned(), "max_batch": getattr(args, "max_batch", None),
                "memory_method": ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                                  else cpu_memory_method())},
            "baseline": base.label, "models": [asdict(r) for r in results]}


def _machine(device: torch.device) -> dict[str, Any]:
    info = {"torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.processor() or
            platform.machine(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def format_table(report: dict[str, Any]) -> str:
    def f(v, fmt):
        width = int(fmt.split(".")[0].rstrip(",f"))
        return "-".rjust(width) if v is None else format(v, fmt)
    base = report["baseline"]
    w = max(len(r["label"]) for r in report["models"])
    head = (f"{'model':<{w}} {'weights':>10} {'GFLOPs':>7} {'train ms':>9} {'img/s':>7} "
            f"{'x base':>6} {'infer ms':>9} {'img/s':>7} {'x base':>6} {'peak MB':>8} {'x base':>6}")
    lines = [head, "-" * len(head)]
    for r in report["models"]:
        lines.append(
            f"{r['label']:<{w}} {r['weights']:>10,} {r['gflops']:>7.3f} {f(r['train_ms'], '9.1f')} "
            f"{f(r['train_images_per_s'], '7.0f')} {f(r['train_ratio'], '6.2f')} "
            f"{f(r['infer_ms'], '9.1f')} {f(r['infer_images_per_s'], '7.0f')} "
            f"{f(r['infer_ratio'], '6.2f')} {f(r['peak_mb'], '8.0f')} {f(r['memory_ratio'], '6.2f')}")
    fits = [r for r in report["models"] if r.get("max_batch") is not None]
    if fits:
        lines.append(f"largest training batch within {report['settings']['max_batch']}:")
        lines += [f"  {r['label']:<{w}} {r['max_batch_fit']}" for r in fits]
    s = report["settings"]
    lines.append(f"ratios (x base) against {base}; batch {s['batch_size']}, {s['image_size']}x"
                 f"{s['image_size']}, {s['device']}, {s['dtype']}, {s['threads']} threads, "
                 f"channels_last={s['channels_last']}; memory: {s['memory_method']}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", metavar="SPEC",
                   help="a model to measure, repeatable: NAME or NAME:key=value,... (e.g. "
                        "'mgiad:width_mult=3,group_size=4,impl=reference'); the first is the "
                        "baseline of the ratios. Default: resnet18, mgnet, and MGiaD "
                        "(width_mult=3, c_K=64) with group_size 4 and 8")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    p.add_argument("--image-size", type=int, default=32,
                   help="side of the random square RGB inputs (default 32, CIFAR)")
    p.add_argument("--num-classes", type=int, default=10, help="classifier outputs (default 10)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when present)")
    p.add_argument("--dtype", choices=tuple(_DTYPES), default="float32",
                   help="autocast dtype (default float32: no autocast)")
    p.add_argument("--channels-last", action="store_true", help="NHWC model and input")
    p.add_argument("--measure", nargs="+", choices=("train", "infer", "memory"),
                   default=["train", "infer", "memory"], help="what to measure (default: all)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed rounds; medians are reported (default 7)")
    p.add_argument("--max-batch", metavar="BUDGET",
                   help="also find each model's largest training batch within a memory budget "
                        "(e.g. 16GiB, 80GB): peak memory is measured at --batch-size and a "
                        "quarter of it and is linear in the batch; on CUDA the result is then "
                        "checked by a run, on the CPU it is extrapolated")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def cmd_bench(args: argparse.Namespace) -> int:
    for name in ("batch_size", "image_size", "num_classes", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if args.warmup < 0:
        raise ValueError("--warmup must be >= 0")
    if args.threads is not None:
        check_size("--threads", args.threads, 1 << 12)
    specs = [parse_spec(s) for s in (args.model or DEFAULT_MODELS)]
    for spec in specs:  # sizes before anything is allocated
        check_input(args.batch_size, spec.kwargs.get("in_chans", 3), args.image_size,
                    f"the input of {spec.label} (--batch-size x channels x --image-size squared)")
    resolve_device(args.device)  # unknown devices, or CUDA where there is none: one line
    if args.max_batch:
        parse_size(args.max_batch)  # a bad budget fails before any measurement
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_malloc()  # as `mgiad train` does (a no-op when the CLI already did it)
    report = run_bench(specs, args, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_table(report))
    if args.json:
        from ..utils.checkpoint import atomic_write
        atomic_write(Path(args.json), lambda fh: fh.write(json.dumps(report, indent=1).encode()))
        print(f"wrote {args.json}")
    return 0


def _memory_probe(args: argparse.Namespace) -> int:
    spec_data = json.loads(args.memory_probe)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = _DTYPES[args.dtype]
    peak = measure_memory(ModelSpec(spec_data["name"], spec_data["kwargs"]), args.batch_size,
                          args.image_size, args.num_classes, torch.device("cpu"), dtype,
                          args.channels_last)
    print(json.dumps({"peak_bytes": peak}))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mgiad.perf.bench", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_probe:
        return _memory_probe(args)
    try:
        return cmd_bench(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
