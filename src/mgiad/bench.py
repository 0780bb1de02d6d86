"""``mgiad bench``: wall-clock speed and memory of models against ResNet18, in one process.

What is measured, per model, on the same input (random images, ``batch_size x 3 x S x S``):

* **train**: one SGD step (forward, cross-entropy, backward, ``step``), in train mode;
* **infer**: one forward in eval mode under ``torch.inference_mode``, BatchNorm folded into the
  convolutions (:func:`mgiad.export.fuse_bn`, checked against the unfolded model first);
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
import ctypes
import ctypes.util
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .fast import malloc_tuned, tune_malloc
from .max_batch import fit_largest_batch, parse_size

__all__ = ["ModelSpec", "parse_spec", "DEFAULT_MODELS", "BenchResult", "run_bench", "main"]


@dataclass
class ModelSpec:
    """A model to benchmark: a registered name and its keyword arguments."""
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self):
        if not self.label:
            args = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
            self.label = f"{self.name}({args})" if args else self.name

    def build(self, num_classes: int) -> torch.nn.Module:
        from .registry import create_model
        return create_model(self.name, num_classes=num_classes, **self.kwargs)


def _literal(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_spec(text: str) -> ModelSpec:
    """``name`` or ``name:key=value,key=value`` (values parsed as JSON where they can be, so
    ``widths=[16,32,64]`` and ``impl=reference`` both work)."""
    name, _, rest = text.partition(":")
    kwargs: dict[str, Any] = {}
    if rest:
        depth, start, parts = 0, 0, []
        for i, ch in enumerate(rest + ","):  # split on commas outside brackets
            depth += (ch in "[(") - (ch in "])")
            if ch == "," and depth == 0:
                parts.append(rest[start:i])
                start = i + 1
        for part in filter(None, parts):
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise ValueError(f"bad model argument {part!r} in {text!r}; expected key=value")
            kwargs[key.strip()] = _literal(value.strip())
    from .registry import model_arguments
    valid = model_arguments(name.strip())  # raises for unknown models
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"model {name!r} got unknown argument(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(valid)}")
    return ModelSpec(name.strip(), kwargs)


# The issue's default set: ResNet18, MgNet^{A,B}, MGiaD(lambda=3, c_K=64, g_s=4 and 8), CIFAR size.
DEFAULT_MODELS = ("resnet18", "mgnet",
                  "mgiad:width_mult=3,coarse_channels=64,group_size=4",
                  "mgiad:width_mult=3,coarse_channels=64,group_size=8")


@dataclass
class BenchResult:
    label: str
    weights: int
    gflops: float
    train_ms: float | None = None
    infer_ms: float | None = None
    peak_mb: float | None = None
    train_images_per_s: float | None = None
    infer_images_per_s: float | None = None
    train_ratio: float | None = None
    infer_ratio: float | None = None
    memory_ratio: float | None = None
    max_batch: int | None = None
    max_batch_fit: str | None = None


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
    x = torch.randn(batch_size, 3, image_size, image_size, device=device)
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
    from .export import fuse_bn
    model.eval()
    fused = fuse_bn(model)
    with torch.inference_mode():
        ref, out = model(x), fused(x)
    err = (ref - out).abs().max().item()
    scale = ref.abs().max().item() + 1.0
    if not err <= 1e-3 * scale:
        raise RuntimeError(f"folded model differs from the unfolded one by {err:.3g}")
    autocast = dtype != torch.float32

    def infer():
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=dtype, enabled=autocast):
            fused(x)
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
    cmd = [sys.executable, "-m", "mgiad.bench", "--memory-probe", payload,
           "--batch-size", str(batch_size or args.batch_size), "--image-size", str(args.image_size),
           "--num-classes", str(args.num_classes), "--dtype", args.dtype,
           "--threads", str(torch.get_num_threads())]
    if args.channels_last:
        cmd.append("--channels-last")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"memory probe for {spec.label} failed:\n{done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_bytes"])


def run_bench(specs: list[ModelSpec], args: argparse.Namespace, log=print) -> dict[str, Any]:
    from .counting import count_flops, count_parameters
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


def _training_bytes(spec: ModelSpec, batch_size: int, args: argparse.Namespace,
                    device: torch.device, dtype: torch.dtype) -> float:
    """Everything a training step at ``batch_size`` holds at its peak: weights and input as well
    as the measured peak above them."""
    from .counting import count_parameters
    weights = count_parameters(spec.build(args.num_classes)) * 4
    image = 3 * args.image_size ** 2 * 4 + 8
    if device.type == "cuda":
        torch.cuda.empty_cache()
        peak = measure_memory(spec, batch_size, args.image_size, args.num_classes, device, dtype,
                              args.channels_last)
    else:
        peak = _memory_in_subprocess(spec, args, batch_size)
    return weights + image * batch_size + peak


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
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    if args.max_batch:
        parse_size(args.max_batch)  # a bad budget fails before any measurement
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_malloc()  # as `mgiad train` does (a no-op when the CLI already did it)
    specs = [parse_spec(s) for s in (args.model or DEFAULT_MODELS)]
    report = run_bench(specs, args, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_table(report))
    if args.json:
        from .checkpoint import atomic_write
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
    p = argparse.ArgumentParser(prog="python -m mgiad.bench", description=__doc__.split("\n\n")[0])
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
