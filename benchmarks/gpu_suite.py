"""Where MGiaD stands on a GPU, in one call: environment, convolutions, training steps, profile.

    python benchmarks/gpu_suite.py --out gpu-results --deadline 420          # on the GPU
    python benchmarks/gpu_suite.py --device cpu --quick --out rehearsal  # rehearsal on a CPU

Every result is one JSON line in ``<out>/results.jsonl``, written as soon as it is measured, so a
run stopped by its deadline (or killed) still returns everything measured before. Sections run in
order of value and each starts only if the time it needs is left:

1. ``env``: torch, CUDA, cuDNN, Triton, the GPU; the measured copy bandwidth and bf16/fp32 matrix
   rates (the ceilings every later figure is compared with);
2. ``step``: the training step (forward, cross-entropy, backward, SGD) of ResNet18, MgNet^{A,B},
   MGiaD(3, g_s=4), MGiaD(3, g_s=8), ResNet20 and table 2's 16-32-64 MGiaD, interleaved, in the
   modes of :data:`MODES` (eager bf16 channels-last; eager fp32 with TF32 on and off; the whole
   step captured in one CUDA graph; ``torch.compile`` with and without a CUDA graph), median ms,
   images/s, peak memory, and set-up seconds (compilation, capture);
3. ``conv``: single convolutions of MGiaD's and ResNet18's shapes at batch 256, forward, input
   gradient and weight gradient, bf16 NHWC and fp32 NCHW, ``cudnn.benchmark`` on and off;
4. ``profile``: one profiled step per model, device time by category and kernels per step;
5. ``train``: ``mgiad``'s own trainer on synthetic CIFAR-10 in each compile setting;
6. ``infer``: BatchNorm-folded inference at batch 1 and 256, eager and in a CUDA graph;
7. ``maxbatch``: ``mgiad bench --max-batch``, the largest bf16 training batch in the GPU's memory.

``summarize(out)`` (also ``--summarize DIR``) prints the tables from ``results.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_profile  # noqa: E402  (beside this file)

import mgiad  # noqa: E402

# name, registered model, arguments, input channels
MODELS = [
    ("ResNet18", "resnet18", {}, 3),
    ("MgNet^{A,B}", "mgnet", {}, 3),
    ("MGiaD(3,g4)", "mgiad", dict(width_mult=3, coarse_channels=64, group_size=4), 3),
    ("MGiaD(3,g8)", "mgiad", dict(width_mult=3, coarse_channels=64, group_size=8), 3),
    ("ResNet20", "resnet20", {}, 1),
    ("MGiaD 16-32-64", "mgiad", dict(widths=[16, 32, 64], coarse_channels=16, group_size=4), 1),
]
QUICK_MODELS = [
    ("ResNet20", "resnet20", {}, 1),
    ("MGiaD 16-32-64", "mgiad", dict(widths=[16, 32, 64], coarse_channels=16, group_size=4), 1),
]
# mode: (autocast bf16, TF32, how the step runs)
MODES = {
    "eager-bf16": (True, True, "eager"),
    "graph-bf16": (True, True, "graph"),
    "compile-bf16": (True, True, "compile"),  # also times the compiled step in a CUDA graph
    "eager-fp32-tf32": (False, True, "eager"),
    "eager-fp32": (False, False, "eager"),
    "graph-fp32": (False, False, "graph"),
}


class Recorder:
    """Appends one JSON line per result and keeps the deadline."""

    def __init__(self, out: Path, deadline: float):
        out.mkdir(parents=True, exist_ok=True)
        self.path, self.deadline, self.t0 = out / "results.jsonl", deadline, time.time()
        self.file = open(self.path, "a", buffering=1)

    def left(self) -> float:
        return self.deadline - (time.time() - self.t0)

    def write(self, kind: str, **record) -> None:
        record = {"kind": kind, "t": round(time.time() - self.t0, 1), **record}
        self.file.write(json.dumps(record, default=str) + "\n")
        print(json.dumps(record, default=str)[:400], flush=True)

    def error(self, where: str, exc: BaseException) -> None:
        self.write("error", where=where, error=f"{type(exc).__name__}: {exc}"[:2000],
                   trace=traceback.format_exc()[-3000:])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Milliseconds per call of ``fn`` over ``n`` calls: CUDA events on a GPU, else perf_counter."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn, n: int) -> float:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / n
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) * 1e3 / n


# ---------------------------------------------------------------------------------------- env
def section_env(rec: Recorder, device: torch.device, quick: bool) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "mgiad": mgiad.__version__, "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        import triton
        info["triton"] = triton.__version__
    except Exception as exc:  # noqa: BLE001  (absent or broken: say so)
        info["triton"] = f"unavailable ({type(exc).__name__})"
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), gpu=p.name,
                    sms=p.multi_processor_count, memory_gib=round(p.total_memory / 2**30, 1),
                    capability=f"{p.major}.{p.minor}")
        try:
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception as exc:  # noqa: BLE001
            info["driver"] = f"nvidia-smi failed ({exc})"
    timer = Timer(device)
    n = (1 << 20) if quick else (1 << 30)  # bytes per buffer
    a = torch.empty(n // 4, device=device).normal_()
    b = torch.empty_like(a)
    b.copy_(a)
    ms = statistics.median(timer(lambda: b.copy_(a), 5) for _ in range(5))
    info["copy_gbs"] = round(2 * n / ms / 1e6, 1)  # read + write
    for dtype, size in ((torch.bfloat16, 8192), (torch.float32, 8192)):
        size = 512 if quick else size
        x = torch.randn(size, size, device=device, dtype=dtype)
        y = torch.randn(size, size, device=device, dtype=dtype)
        saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        x @ y
        ms = statistics.median(timer(lambda: x @ y, 5) for _ in range(3))
        torch.backends.cuda.matmul.allow_tf32 = saved
        info[f"matmul_{str(dtype)[6:]}_tflops"] = round(2 * size**3 / ms / 1e9, 1)
    del a, b, x, y
    rec.write("env", **info)
    return info


# --------------------------------------------------------------------------------------- step
def build(name: str, kwargs: dict, in_chans: int, device: torch.device):
    kwargs = {k: v for k, v in kwargs.items() if k != "_env"}
    model = mgiad.create_model(name, num_classes=10, in_chans=in_chans, **kwargs).to(device)
    return model.to(memory_format=torch.channels_last)


class Environ:
    """Environment variables set while a model builds, compiles, captures and runs (``_env`` in
    a model's arguments: e.g. ``MGIAD_GPU_TRANSFERS=triton``)."""

    def __init__(self, env: dict | None):
        self.env, self.saved = env or {}, []  # a stack: the same object may be entered nested

    def __enter__(self):
        self.saved.append({k: os.environ.get(k) for k in self.env})
        os.environ.update(self.env)

    def __exit__(self, *exc):
        for k, v in self.saved.pop().items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def transfers_variant(model, impl: str):
    """The same model with its transfers by ``impl`` (mgiad.kernels.gpu: elementwise, triton)."""
    label, name, kwargs, chans = model
    return (f"{label} {impl} transfers", name, dict(kwargs, _env={"MGIAD_GPU_TRANSFERS": impl}),
            chans)


class Step:
    """One model's training step in one mode, with static input and target."""

    def __init__(self, label, name, kwargs, in_chans, batch, size, device, amp, how):
        self.environ = Environ(kwargs.get("_env"))
        with self.environ:
            self._init(label, name, kwargs, in_chans, batch, size, device, amp, how)

    def _init(self, label, name, kwargs, in_chans, batch, size, device, amp, how):
        self.label, self.device, self.amp, self.how = label, device, amp, how
        torch.manual_seed(0)
        self.model = build(name, kwargs, in_chans, device)
        self.model.train()
        self.net = self.model
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9,
                                   weight_decay=1e-4)
        self.x = torch.randn(batch, in_chans, size, size, device=device).contiguous(
            memory_format=torch.channels_last)
        self.y = torch.randint(0, 10, (batch,), device=device)
        self.graph = None
        t = time.time()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        if how == "compile":
            self.net = torch.compile(self.model, dynamic=False)
        if how == "graph":
            self._capture()
        else:
            for _ in range(3):
                self._eager()
        sync(device)
        self.setup_s = time.time() - t
        self.peak_mb = ((torch.cuda.max_memory_allocated(device) - base) / 2**20
                        if device.type == "cuda" else None)

    def _autocast(self):
        if not self.amp:
            return nullcontext()
        # no cast cache: a cached weight copy would not follow the weights inside a graph
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)

    def _eager(self):
        with self._autocast():
            loss = F.cross_entropy(self.net(self.x).float(), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss

    def _capture(self):
        with self.environ:
            self._capture_graph()

    def _capture_graph(self):
        if self.device.type != "cuda":  # the CPU rehearsal runs the same steps eagerly
            for _ in range(3):
                self._eager()
            return
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._eager()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.loss = self._eager()
        self.graph.replay()

    def __call__(self):
        if self.graph is not None:
            self.graph.replay()
        else:
            with self.environ:
                self._eager()


def section_step(rec: Recorder, device, models, mode: str, batch: int, size: int, rounds: int,
                 per_round: int) -> dict:
    """All models in one mode at one batch size, timed interleaved; returns {label: ms}."""
    amp, tf32, how = MODES[mode]
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    steps = []
    for label, name, kwargs, chans in models:
        if rec.left() < 20:
            rec.write("skip", section="step", mode=mode, batch=batch, model=label, why="deadline")
            break
        try:
            steps.append(Step(label, name, kwargs, chans, batch, size, device, amp, how))
        except Exception as exc:  # noqa: BLE001  (one model failing must not stop the rest)
            rec.error(f"step {mode} b{batch} {label}", exc)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result = _time_steps(rec, device, steps, mode, batch, rounds, per_round)
    if how == "compile":  # the same compiled models, the whole step captured in a CUDA graph
        for s in steps:
            try:
                t = time.time()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                s._capture()
                sync(device)
                s.setup_s, s.peak_mb = s.setup_s + time.time() - t, (
                    torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                    else None)
            except Exception as exc:  # noqa: BLE001
                rec.error(f"step compile+graph b{batch} {s.label}", exc)
        steps = [s for s in steps if s.graph is not None or device.type != "cuda"]
        result.update(_time_steps(rec, device, steps, mode.replace("compile", "compile+graph"),
                                  batch, rounds, per_round))
    del steps
    if device.type == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()
    return result


def _time_steps(rec, device, steps, mode, batch, rounds, per_round) -> dict:
    timer, times = Timer(device), {s.label: [] for s in steps}
    for _ in range(rounds):
        for s in steps:
            times[s.label].append(timer(s, per_round))
    result = {}
    for s in steps:
        ms = statistics.median(times[s.label])
        result[s.label] = ms
        rec.write("step", mode=mode, batch=batch, model=s.label, ms=round(ms, 3),
                  ms_all=[round(t, 3) for t in times[s.label]], images_per_s=round(batch / ms * 1e3),
                  peak_mb=None if s.peak_mb is None else round(s.peak_mb, 1),
                  setup_s=round(s.setup_s, 1))
    return result


def section_recompute(rec: Recorder, device, batch: int, size: int, rounds: int) -> None:
    """MGiaD(3, g_s=4) with recompute="step" against its default and ResNet18 (eager bf16)."""
    models = [MODELS[0], MODELS[2],
              ("MGiaD(3,g4) recompute=step", "mgiad",
               dict(MODELS[2][2], recompute="step"), 3)]
    for mode in ("eager-bf16", "graph-bf16"):
        section_step(rec, device, models, mode, batch, size, rounds, 3)


# --------------------------------------------------------------------------------------- conv
def conv_shapes(batch: int, quick: bool):
    """(label, N, C_in, C_out, H, kernel, stride, groups) at MGiaD(3)'s and ResNet18's sizes."""
    s = 8 if quick else 1  # quick: the same shapes, narrower
    shapes = []
    for c, h in ((192, 32), (384, 16), (768, 8)):
        for g in (4, 8):
            shapes.append((f"grouped g_s={g} {c}@{h}", c // s, c // s, h, 3, 1, c // s // g))
    shapes += [("dense c_K level 96@32", 96 // s, 96 // s, 32, 3, 1, 1),
               ("dense c_K level 96@16", 96 // s, 96 // s, 16, 3, 1, 1),
               ("R/Pi depthwise s2 192@32->384", 192 // s, 384 // s, 32, 3, 2, 192 // s),
               ("R/Pi depthwise s2 384@16->768", 384 // s, 768 // s, 16, 3, 2, 384 // s),
               ("R-hat/Pi-hat 1x1 192->96 @32", 192 // s, 96 // s, 32, 1, 1, 96 // s),
               ("P-hat 1x1 96->192 @32", 96 // s, 192 // s, 32, 1, 1, 96 // s),
               ("ResNet18 64@32", 64 // s, 64 // s, 32, 3, 1, 1),
               ("ResNet18 128@16", 128 // s, 128 // s, 16, 3, 1, 1)]
    return [(lbl, batch, ci, co, h, k, st, g) for lbl, ci, co, h, k, st, g in shapes]


def section_conv(rec: Recorder, device, batch: int, quick: bool, env: dict) -> None:
    timer = Timer(device)
    peak_bw = env.get("copy_gbs") or 1.0
    for bench in (True, False):
        torch.backends.cudnn.benchmark = bench
        for fmt, dtype in (("bf16 NHWC", torch.bfloat16), ("fp32 NCHW", torch.float32)):
            torch.backends.cudnn.allow_tf32 = False
            peak_fl = env.get("matmul_bfloat16_tflops" if dtype == torch.bfloat16
                              else "matmul_float32_tflops") or 1.0
            for label, n, ci, co, h, k, st, g in conv_shapes(batch, quick):
                if rec.left() < 10:
                    rec.write("skip", section="conv", why="deadline")
                    return
                try:
                    mf = torch.channels_last if fmt.endswith("NHWC") else torch.contiguous_format
                    x = torch.randn(n, ci, h, h, device=device, dtype=dtype).contiguous(memory_format=mf)
                    w = torch.randn(co, ci // g, k, k, device=device, dtype=dtype).contiguous(memory_format=mf)
                    out = F.conv2d(x, w, None, st, k // 2, 1, g)
                    gy = torch.randn_like(out)
                    ho = out.shape[-1]
                    flops = 2 * n * co * ho * ho * (ci // g) * k * k
                    e = x.element_size()
                    passes = {
                        "fwd": (lambda: F.conv2d(x, w, None, st, k // 2, 1, g),
                                (x.numel() + w.numel() + out.numel()) * e),
                        "dgrad": (lambda: torch.ops.aten.convolution_backward(
                            gy, x, w, None, [st, st], [k // 2] * 2, [1, 1], False, [0, 0], g,
                            [True, False, False]), (gy.numel() + w.numel() + x.numel()) * e),
                        "wgrad": (lambda: torch.ops.aten.convolution_backward(
                            gy, x, w, None, [st, st], [k // 2] * 2, [1, 1], False, [0, 0], g,
                            [False, True, False]), (gy.numel() + x.numel() + w.numel()) * e),
                    }
                    for p, (fn, nbytes) in passes.items():
                        fn()
                        ms = statistics.median(timer(fn, 3 if quick else 10) for _ in range(3))
                        rec.write("conv", shape=label, fmt=fmt, cudnn_benchmark=bench, pass_=p,
                                  batch=n, ms=round(ms, 4), tflops=round(flops / ms / 1e9, 2),
                                  gbs=round(nbytes / ms / 1e6, 1),
                                  pct_flops_peak=round(100 * flops / ms / 1e9 / peak_fl, 1),
                                  pct_bw_peak=round(100 * nbytes / ms / 1e6 / peak_bw, 1))
                except Exception as exc:  # noqa: BLE001
                    rec.error(f"conv {label} {fmt}", exc)
    torch.backends.cudnn.benchmark = True


# -------------------------------------------------------------------------------------- train
def section_train(rec: Recorder, device, quick: bool, settings, model_args: dict,
                  out: Path) -> None:
    """mgiad's trainer on a synthetic CIFAR-10 (train 2 epochs; the second epoch's speed)."""
    from mgiad.data.synthetic import write_cifar_tarball
    from mgiad.training import TrainConfig, train
    import tempfile
    work = Path(tempfile.mkdtemp(prefix="mgiad-gpu-suite-"))  # data and runs stay out of `out`
    data = work / "cifar-data"
    per_batch = 64 if quick else 5120  # 5 training batches: 25,600 images, 100 steps of 256
    if not (data / "cifar-10-python.tar.gz").is_file():
        write_cifar_tarball(data / "cifar-10-python.tar.gz", n_per_batch=per_batch, n_test=2560)
    for compile_setting in settings:
        if rec.left() < (40 if compile_setting is False else 120):
            rec.write("skip", section="train", compile=compile_setting, why="deadline")
            return
        run = work / "runs" / f"train-{compile_setting}"
        try:
            t = time.time()
            config = TrainConfig(model="mgiad", model_args=model_args, dataset="cifar10",
                                 data_dir=str(data), verify_data=False, epochs=2,
                                 batch_size=32 if quick else 256, device=device.type,
                                 compile=compile_setting, out=str(run), progress=False)
            summary = train(config, log=lambda *a: None)
            history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            rec.write("train", compile=compile_setting, model_args=model_args,
                      epoch_seconds=[h["seconds"] for h in history],
                      images_per_s=[round(h["images_per_s"]) for h in history],
                      wall_s=round(time.time() - t, 1), final_test_acc=summary["final_test_acc"])
        except Exception as exc:  # noqa: BLE001
            rec.error(f"train compile={compile_setting}", exc)
        torch._dynamo.reset()


# -------------------------------------------------------------------------------------- infer
def section_infer(rec: Recorder, device, models, size: int, batches) -> None:
    from mgiad.layers.fold import fuse_bn
    timer = Timer(device)
    for batch in batches:
        for label, name, kwargs, chans in models:
            if rec.left() < 15:
                rec.write("skip", section="infer", why="deadline")
                return
            try:
                model = fuse_bn(build(name, kwargs, chans, device).eval())
                x = torch.randn(batch, chans, size, size, device=device).contiguous(
                    memory_format=torch.channels_last)
                for how in ("eager", "graph"):
                    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16,
                                                                cache_enabled=False):
                        fn = lambda: model(x)  # noqa: E731
                        for _ in range(3):
                            fn()
                        if how == "graph" and device.type == "cuda":
                            g = torch.cuda.CUDAGraph()
                            with torch.cuda.graph(g):
                                model(x)
                            fn = g.replay
                        ms = statistics.median(timer(fn, 10) for _ in range(5))
                    rec.write("infer", model=label, batch=batch, how=how, ms=round(ms, 4),
                              images_per_s=round(batch / ms * 1e3))
            except Exception as exc:  # noqa: BLE001
                rec.error(f"infer {label} b{batch}", exc)


# ----------------------------------------------------------------------------------- maxbatch
def section_maxbatch(rec: Recorder, device, quick: bool, out: Path) -> None:
    """``mgiad bench --max-batch``: each model's largest bf16 training batch in the GPU's memory."""
    from mgiad.bench import main as bench_main
    budget = "1GiB" if quick else "120GiB"
    models = (["resnet20", "mgiad:widths=[16,32,64],coarse_channels=16,group_size=4"] if quick else
              ["resnet18", "mgiad:width_mult=3,coarse_channels=64,group_size=4",
               "mgiad:width_mult=3,coarse_channels=64,group_size=4,recompute=step"])
    path = out / "maxbatch.json"
    argv = ["--device", device.type, "--dtype", "bfloat16", "--channels-last", "--measure",
            "memory", "--max-batch", budget, "--batch-size", "8" if quick else "256",
            "--json", str(path)] + [a for m in models for a in ("--model", m)]
    bench_main(argv)
    rec.write("maxbatch", budget=budget, results=json.loads(path.read_text()))


# ------------------------------------------------------------------------------------ driver
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (rehearsal)")
    p.add_argument("--out", default="gpu-results", help="folder for results.jsonl")
    p.add_argument("--deadline", type=float, default=420, help="seconds for the whole suite")
    p.add_argument("--quick", action="store_true", help="tiny sizes and repeats (rehearsal)")
    p.add_argument("--sections", default="env,step,conv,profile,recompute,train,infer,maxbatch",
                   help="comma-separated sections to run, in this order")
    p.add_argument("--plan", choices=("full", "transfers"), default="full",
                   help="full: everything; transfers: the GPU transfer implementations (cuDNN, "
                   "Triton, element-wise) in eager, graph and compiled steps, recompute memory")
    p.add_argument("--summarize", metavar="DIR", help="only print the tables of DIR/results.jsonl")
    args = p.parse_args(argv)
    if args.summarize:
        gpu_profile.summarize(Path(args.summarize))
        return 0
    device = torch.device(args.device)
    out = Path(args.out)
    rec = Recorder(out, args.deadline)
    quick = args.quick
    models = QUICK_MODELS if quick else MODELS
    size = 16 if quick else 32
    batches = (4, 8) if quick else (256, 128)
    rounds, per_round = (2, 1) if quick else (5, 3)
    sections = args.sections.split(",")
    env = {}
    plan = [("env", lambda: env.update(section_env(rec, device, quick)))]
    big = batches[0]
    targets = [m for m in models if m[0] in ("ResNet18", "MGiaD(3,g4)", "ResNet20",
                                             "MGiaD 16-32-64")]
    fp32_models = models + [(f"{m[0]} impl=reference", m[1], dict(m[2], impl="reference"), m[3])
                            for m in models if m[0] == "MGiaD(3,g4)"]

    def step(mode, batch=big, which=models):
        return ("step", lambda: section_step(rec, device, which, mode, batch, size, rounds,
                                             per_round))
    # value first: the targets' modes at batch 256, then the rest
    plan += [step("eager-bf16"), step("graph-bf16"),
             ("conv", lambda: section_conv(rec, device, big, quick, env)),
             ("profile", lambda: gpu_profile.section_profile(rec, device, models, big, size, Step)),
             step("compile-bf16", which=targets),
             ("recompute", lambda: section_recompute(rec, device, big, size, rounds)),
             step("eager-fp32-tf32", which=fp32_models), step("eager-fp32", which=fp32_models),
             step("graph-fp32", which=fp32_models),
             ("profile", lambda: gpu_profile.section_profile(
                 rec, device, targets[1:2] + targets[3:], big, size, Step, how="compile")),
             ("train", lambda: section_train(
                 rec, device, quick, (False, "default", "reduce-overhead"),
                 dict(width_mult=3, coarse_channels=64, group_size=4) if not quick else
                 dict(widths=[16, 32, 64], coarse_channels=16, group_size=4), out)),
             step("eager-bf16", batches[1]), step("graph-bf16", batches[1]),
             step("compile-bf16", batches[1], targets),
             step("compile-bf16", big, [m for m in models if m not in targets]),
             ("infer", lambda: section_infer(rec, device, models, size, (1, big))),
             ("maxbatch", lambda: section_maxbatch(rec, device, quick, out))]
    if args.plan == "transfers":
        mg = [m for m in models if m[0] in ("MGiaD(3,g4)", "MGiaD 16-32-64")]
        ab = [m for m in models if m[0] in ("ResNet18", "ResNet20")] + mg + [
            transfers_variant(m, impl) for impl in ("triton", "elementwise") for m in mg]
        plan = plan[:1] + [
            step("eager-bf16", which=ab), step("graph-bf16", which=ab),
            ("profile", lambda: gpu_profile.section_profile(
                rec, device, [transfers_variant(m, "triton") for m in mg], big, size, Step)),
            step("compile-bf16", which=mg + [transfers_variant(m, i) for i in ("elementwise", "triton")
                                             for m in mg]),
            ("profile", lambda: gpu_profile.section_profile(
                rec, device, [transfers_variant(mg[0], "elementwise")], big, size, Step,
                how="compile")),
            ("recompute", lambda: section_recompute(rec, device, big, size, rounds))]
    for name, run in plan:
        if name not in sections:
            continue
        if rec.left() < 15:
            rec.write("skip", section=name, why="deadline")
            continue
        t = time.time()
        try:
            run()
        except Exception as exc:  # noqa: BLE001
            rec.error(name, exc)
        print(f"# section {name} took {time.time() - t:.1f} s, {rec.left():.0f} s left", flush=True)
    rec.write("done", left_s=round(rec.left(), 1))
    gpu_profile.summarize(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
