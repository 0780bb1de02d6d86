"""The profile section of ``gpu_suite.py`` and the suite's summary tables.

A profiled training step's device time is split by what launched each kernel: the chain of
PyTorch operators above its launch (``aten::convolution_backward`` under ``ConvolutionBackward0``,
``aten::cudnn_batch_norm``, ``Optimizer.step``...), and for convolutions the weight's shape
(grouped 3x3, dense 3x3, stride-2 depthwise transfer, 1x1 transfer) and the pass (forward, input
gradient ``dgrad``, weight gradient ``wgrad``, read off cuDNN's kernel names). On a CPU, where
there are no kernels, the leaf operators' own CPU time stands in for them (rehearsal only).
"""
from __future__ import annotations

import collections
import json
import statistics
from pathlib import Path

import torch


def conv_kind(shapes) -> str | None:
    """From a convolution operator's input shapes: ``x (N, C, H, W)``, ``w (O, C/g, k, k)``."""
    four = [s for s in shapes or [] if isinstance(s, (list, tuple)) and len(s) == 4]
    if len(four) < 2:
        return None
    # forward: (x, w); backward: (grad_out, x, w)
    x, w = (four[0], four[1]) if len(four) == 2 else (four[1], four[2])
    cin, k = x[1], w[-1]
    groups = max(1, cin // max(1, w[1]))
    if k == 1:
        return "transfer 1x1" if groups > 1 else "dense 1x1 conv"
    if groups == 1:
        return "dense conv" if k == 3 else "stem conv"
    if groups == cin:
        return "transfer depthwise s2"
    return "grouped 3x3 conv"


def classify(chain: list[tuple[str, list]], kernel: str) -> str:
    """Category of one kernel: ``chain`` is [(operator name, input shapes)] innermost first."""
    names = [n for n, _ in chain]
    text = " ".join(names).lower()
    if "optimizer" in text or "_foreach" in text or "sgd" in text:
        return "optimizer"
    for name, shapes in chain:
        if "convolution" in name or "conv2d" in name:
            kind = conv_kind(shapes) or "conv"
            k = kernel.lower()
            backward = "backward" in text
            if "wgrad" in k or "wgrad" in name:
                p = "wgrad"
            elif "dgrad" in k:
                p = "dgrad"
            else:
                p = "bwd" if backward else "fwd"
            return f"{kind} {p}"
    if kernel.startswith("triton_") or "triton" in kernel:
        return "fused (triton)"
    if "batch_norm" in text:
        return "BatchNorm bwd" if "backward" in text else "BatchNorm fwd"
    if "cross_entropy" in text or "nll_loss" in text or "log_softmax" in text:
        return "loss"
    if any(n in text for n in ("aten::copy_", "aten::contiguous", "aten::clone", "aten::to",
                               "aten::_to_copy")):
        return "layout/copy"
    return "element-wise/other"


def _chain(event) -> list[tuple[str, list]]:
    chain, e = [], event
    while e is not None:
        chain.append((e.name, getattr(e, "input_shapes", None) or []))
        e = e.cpu_parent
    return chain


def breakdown(prof, steps: int) -> dict:
    """Device time per category (ms per step), kernels per step, and the top kernels."""
    cats, kernels, count = collections.Counter(), collections.Counter(), 0
    events = prof.events()
    cuda = any(getattr(e, "kernels", None) for e in events)
    for e in events:
        if cuda:
            for k in getattr(e, "kernels", None) or []:
                cats[classify(_chain(e), k.name)] += k.duration / 1e3
                kernels[k.name[:90]] += k.duration / 1e3
                count += 1
        elif e.name.startswith("aten::") and not any(c.name.startswith("aten::")
                                                     for c in e.cpu_children):
            ms = e.self_cpu_time_total / 1e3
            cats[classify(_chain(e), e.name)] += ms
            kernels[e.name] += ms
            count += 1
    total = sum(cats.values()) or 1.0
    ops = sorted(prof.key_averages(), key=lambda a: -_self_device(a))[:20]
    return {"device_ms_per_step": round(total / steps, 3),
            "kernels_per_step": count // steps,
            "shares_pct": {c: round(100 * v / total, 1) for c, v in cats.most_common()},
            "ms_per_step": {c: round(v / steps, 3) for c, v in cats.most_common()},
            "top_kernels_ms": {k: round(v / steps, 3) for k, v in kernels.most_common(15)},
            "top_ops_self_device_ms": {a.key: round(_self_device(a) / 1e3 / steps, 3) for a in ops}}


def _self_device(avg) -> float:
    for name in ("self_device_time_total", "self_cuda_time_total", "self_cpu_time_total"):
        value = getattr(avg, name, None)
        if value:
            return value
    return 0.0


def section_profile(rec, device, models, batch, size, Step, how="eager") -> None:
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    for label, name, kwargs, chans in models:
        if rec.left() < 30:
            rec.write("skip", section="profile", model=label, why="deadline")
            return
        try:
            step = Step(label, name, kwargs, chans, batch, size, device, True, how)
            with profile(activities=activities, record_shapes=True) as prof:
                for _ in range(2):
                    step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            rec.write("profile", model=label, how=how, batch=batch, **breakdown(prof, 2))
            del step, prof
        except Exception as exc:  # noqa: BLE001
            rec.error(f"profile {label} {how}", exc)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        torch._dynamo.reset()


# ------------------------------------------------------------------------------------ summary
def _table(rows, header) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def summarize(out: Path) -> str:
    """Markdown tables of a suite's results (``out``: its folder or its ``results.jsonl``)."""
    path = Path(out) if Path(out).is_file() else Path(out) / "results.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    parts = []
    env = [r for r in records if r["kind"] == "env"]
    if env:
        parts.append("env: " + ", ".join(f"{k}={v}" for k, v in env[-1].items()
                                          if k not in ("kind", "t")))
    steps = [r for r in records if r["kind"] == "step"]
    for batch in sorted({r["batch"] for r in steps}, reverse=True):
        at = [r for r in steps if r["batch"] == batch]
        modes = list(dict.fromkeys(r["mode"] for r in at))
        labels = list(dict.fromkeys(r["model"] for r in at))
        ms = {(r["model"], r["mode"]): r for r in at}
        rows = []
        for lbl in labels:
            row = [lbl]
            for m in modes:
                r = ms.get((lbl, m))
                base = ms.get(("ResNet20" if "16-32-64" in lbl or lbl == "ResNet20"
                               else "ResNet18", m))
                if r is None:
                    row.append("-")
                    continue
                ratio = f" ({r['ms'] / base['ms']:.2f}x)" if base else ""
                mem = f", {r['peak_mb'] / 1024:.1f} GiB" if r.get("peak_mb") else ""
                row.append(f"{r['ms']:.2f} ms{ratio}{mem}")
            rows.append(row)
        parts.append(f"training step, batch {batch} (ms, ratio to ResNet18 / ResNet20 in the same "
                     f"mode, peak memory)\n" + _table(rows, ["model"] + modes))
        best = {}
        for lbl in labels:
            cands = [(ms[(lbl, m)]["ms"], m) for m in modes if (lbl, m) in ms]
            best[lbl] = min(cands)
        rows = []
        for lbl, (t, m) in best.items():
            ref = best.get("ResNet20" if "16-32-64" in lbl else "ResNet18")
            rows.append([lbl, m, f"{t:.2f}", f"{t / ref[0]:.2f}x" if ref else "-"])
        parts.append(f"best mode each, batch {batch}\n" + _table(rows, ["model", "mode", "ms",
                                                                       "ratio"]))
    conv = [r for r in records if r["kind"] == "conv"]
    if conv:
        rows = []
        keyed = collections.defaultdict(dict)
        for r in conv:
            keyed[(r["shape"], r["fmt"], r["cudnn_benchmark"])][r["pass_"]] = r
        for (shape, fmt, bench), ps in keyed.items():
            rows.append([shape, fmt, "on" if bench else "off"] + [
                f"{ps[p]['ms']:.3f} ({ps[p]['tflops']:.0f} TF/s, {ps[p]['gbs']:.0f} GB/s)"
                if p in ps else "-" for p in ("fwd", "dgrad", "wgrad")])
        parts.append("convolutions, batch 256\n" + _table(rows, ["shape", "format", "benchmark",
                                                                 "fwd ms", "dgrad ms", "wgrad ms"]))
    for r in (r for r in records if r["kind"] == "profile"):
        shares = ", ".join(f"{c} {v}%" for c, v in r["shares_pct"].items())
        parts.append(f"profile {r['model']} ({r['how']}, batch {r['batch']}): "
                     f"{r['device_ms_per_step']} ms device time, {r['kernels_per_step']} kernels"
                     f"/step: {shares}")
    for r in (r for r in records if r["kind"] == "train"):
        parts.append(f"trainer compile={r['compile']}: epoch seconds {r['epoch_seconds']}, "
                     f"img/s {r['images_per_s']}, wall {r['wall_s']} s")
    infer = [r for r in records if r["kind"] == "infer"]
    if infer:
        parts.append("folded inference (bf16)\n" + _table(
            [[r["model"], r["batch"], r["how"], r["ms"], r["images_per_s"]] for r in infer],
            ["model", "batch", "how", "ms", "img/s"]))
    errors = [r for r in records if r["kind"] == "error"]
    parts += [f"ERROR {r['where']}: {r['error'][:300]}" for r in errors]
    text = "\n\n".join(parts)
    print(text)
    return text


def median(values):
    return statistics.median(values) if values else None
