"""The fast path (impl="fast", the default) against the readable reference (impl="reference"):
same outputs, gradients and BatchNorm buffers; fewer stored activations; the benchmark command."""
import copy
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mgiad
from mgiad.layers import fast
from mgiad.perf.specs import parse_spec
from mgiad.utils import malloc
from mgiad.cli import main as cli_main

# every MgNet / MGiaD configuration the model-zoo tests build, at small inputs
CONFIGS = {
    "mgiad-small": ("mgiad", dict(widths=(16, 32, 64), coarse_channels=8, group_size=4), 16),
    "mgiad-paper-default": ("mgiad", dict(), 16),
    "mgiad-eta-2-3-prolong-norm": ("mgiad", dict(widths=(16, 32), coarse_channels=4, group_size=2,
                                                 pre_smooth=2, post_smooth=3, prolong_norm=True), 12),
    "mgiad-post-only-lambda-2": ("mgiad", dict(widths=(8, 16), width_mult=2, coarse_channels=8,
                                               group_size=8, pre_smooth=0, post_smooth=2), 16),
    "mgiad-imagenet-stem": ("mgiad", dict(widths=(16, 32), coarse_channels=8, group_size=4,
                                          stem="imagenet", in_chans=1), 32),
    "mgnet-AB": ("mgnet", dict(widths=(16, 32, 64), smoothing_steps=2), 16),
    "mgnet-A": ("mgnet", dict(widths=(16, 32), smoothing_steps=(3, 2), share="A"), 16),
    "mgnet-grouped": ("mgnet", dict(widths=(16, 32), group_size=4), 16),
    "mgnet-paper-default": ("mgnet", dict(), 16),
}


def _pair(name, kwargs):
    torch.manual_seed(0)
    reference = mgiad.create_model(name, num_classes=5, impl="reference", **kwargs)
    fast_model = copy.deepcopy(reference).set_impl("fast")
    return reference, fast_model


def _batch(model, size, n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, model.in_chans, size, size, generator=g),
            torch.randint(0, 5, (n,), generator=g))


def _close(a, b, what):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m: f"{what}: {m}")


def check_same_step(model_a, model_b, x, y):
    """One forward and backward of both models: equal logits and input gradients (parameter
    gradients are left in ``.grad`` for the caller)."""
    outputs, input_grads = [], []
    for model in (model_a, model_b):
        xi = x.clone().requires_grad_()
        logits = model(xi)
        F.cross_entropy(logits, y).backward()
        outputs.append(logits)
        input_grads.append(xi.grad)
    _close(outputs[0], outputs[1], "logits")
    _close(input_grads[0], input_grads[1], "input gradient")


@pytest.mark.parametrize("config", list(CONFIGS))
def test_fast_matches_reference_forward_gradients_and_buffers(config):
    name, kwargs, size = CONFIGS[config]
    reference, fast_model = _pair(name, kwargs)
    assert fast_model.impl == "fast" and fast_model.config["impl"] == "fast"
    x, y = _batch(reference, size)
    check_same_step(reference, fast_model, x, y)
    for (n, p), q in zip(reference.named_parameters(), fast_model.parameters()):
        assert q.grad is not None, n
        _close(p.grad, q.grad, f"gradient of {n}")
    for (n, a), b in zip(reference.named_buffers(), fast_model.buffers()):
        _close(a, b, f"buffer {n}")  # running means/variances and num_batches_tracked


def test_several_sgd_steps_then_eval_agree():
    reference, fast_model = _pair("mgiad", CONFIGS["mgiad-small"][1])
    opts = [torch.optim.SGD(m.parameters(), lr=0.02, momentum=0.9) for m in (reference, fast_model)]
    for step in range(3):
        x, y = _batch(reference, 16, n=4, seed=step)
        for model, opt in zip((reference, fast_model), opts):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    x, _ = _batch(reference, 16, seed=9)
    reference.eval(), fast_model.eval()
    with torch.no_grad():  # float rounding (NHWC convolutions sum in another order) grows a little
        torch.testing.assert_close(reference(x), fast_model(x), rtol=1e-3, atol=2e-4)


def test_cumulative_batchnorm_average_is_followed():
    reference, fast_model = _pair("mgnet", CONFIGS["mgnet-AB"][1])
    for model in (reference, fast_model):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # running stats = average over all batches seen
    for seed in range(2):
        x, y = _batch(reference, 16, seed=seed)
        for model in (reference, fast_model):
            F.cross_entropy(model(x), y).backward()
    for (n, a), b in zip(reference.named_buffers(), fast_model.buffers()):
        _close(a, b, f"buffer {n}")


def _count_fast_calls(monkeypatch):
    calls = []
    original = fast.SmoothingStepFunction.apply
    monkeypatch.setattr(fast.SmoothingStepFunction, "apply",
                        lambda *args: calls.append(1) or original(*args))
    return calls


def test_fast_path_runs_only_when_training_with_gradients(monkeypatch):
    calls = _count_fast_calls(monkeypatch)
    _, model = _pair("mgiad", CONFIGS["mgiad-small"][1])
    x, _ = _batch(model, 16)
    model(x).sum().backward()
    steps = sum(isinstance(m, mgiad.layers.SmoothingStep) for m in model.modules())
    assert len(calls) == steps  # every smoothing step, once
    calls.clear()
    with torch.no_grad():
        model(x)
    model.eval()
    model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.train()(x)
    model.set_impl("reference")
    model(x).sum().backward()
    assert calls == []


def _saved_bytes(model, x, y):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    return total


def test_fast_path_stores_far_fewer_activations():
    reference, fast_model = _pair("mgiad", dict(widths=(32, 64), coarse_channels=8, group_size=4))
    x, y = _batch(reference, 32, n=4)
    ref_bytes, fast_bytes = _saved_bytes(reference, x, y), _saved_bytes(fast_model, x, y)
    assert fast_bytes < 0.75 * ref_bytes, (fast_bytes, ref_bytes)


def test_impl_is_validated_and_checkpoints_are_interchangeable():
    with pytest.raises(ValueError, match="impl must be one of"):
        mgiad.create_model("mgiad", impl="turbo")
    reference, fast_model = _pair("mgnet", CONFIGS["mgnet-A"][1])
    assert reference.state_dict().keys() == fast_model.state_dict().keys()
    fast_model.load_state_dict(reference.state_dict())
    assert reference.config["impl"] == "reference"
    assert mgiad.create_model("mgiad").impl == "fast"  # the default


def test_channels_last_inputs_and_models_agree():
    reference, fast_model = _pair("mgiad", CONFIGS["mgiad-small"][1])
    fast_model = fast_model.to(memory_format=torch.channels_last)
    x, y = _batch(reference, 16)
    for model, xi in ((reference, x), (fast_model, x.contiguous(memory_format=torch.channels_last))):
        F.cross_entropy(model(xi), y).backward()
    for (n, p), q in zip(reference.named_parameters(), fast_model.parameters()):
        _close(p.grad, q.grad, f"gradient of {n}")


def test_tune_malloc_is_idempotent():
    first = malloc.tune_malloc()
    assert isinstance(first, bool) and malloc.tune_malloc() is first and malloc.malloc_tuned() is first


_MMAP_PROBE = """
import ctypes, os, torch
from mgiad.utils import malloc
from mgiad.perf.memory import MallocPeak
applied = malloc.tune_malloc()
info = MallocPeak()._mallinfo2
before = info().hblkhd
x = torch.empty(64 * 2**20 // 4)  # 64 MiB: glibc would mmap this
print(applied, info().hblkhd - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tune_malloc_keeps_large_blocks_out_of_mmap():
    def probe(flag):
        env = {**os.environ, "MGIAD_TUNE_MALLOC": flag}
        out = subprocess.run([sys.executable, "-c", _MMAP_PROBE], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        return out[0] == "True", int(out[1])
    applied, mmapped = probe("1")
    assert applied and mmapped == 0  # served from the heap, reusable without page faults
    applied, mmapped = probe("0")
    assert not applied and mmapped >= 64 * 2**20


def _last_level(model, x):
    """The last smoother's output (inside the model: the fast path's layout)."""
    seen = []
    hook = model.smoothers[-1].register_forward_hook(lambda m, i, out: seen.append(out))
    try:
        features = model.forward_features(x)
    finally:
        hook.remove()
    return seen[0], features


def test_fast_path_runs_channels_last_on_cpu():
    reference, fast_model = _pair("mgiad", CONFIGS["mgiad-small"][1])
    x, _ = _batch(reference, 16)
    inside, features = _last_level(fast_model, x)
    assert inside.is_contiguous(memory_format=torch.channels_last)
    assert features.is_contiguous()  # handed back in the input's NCHW layout
    assert reference.forward_features(x).is_contiguous()


@pytest.mark.parametrize("name", ["mgiad", "mgnet"])
def test_one_channel_images_run_channels_last(name):
    """A [N, 1, H, W] image counts as contiguous in both formats; the fast path must still give the
    stem NHWC strides, or every map after it stays NCHW (the grayscale datasets)."""
    torch.manual_seed(0)
    model = mgiad.create_model(name, in_chans=1, num_classes=5, widths=(8, 16))
    x = torch.randn(2, 1, 8, 8)
    inside, features = _last_level(model, x)
    assert inside.is_contiguous(memory_format=torch.channels_last) and features.is_contiguous()
    reference = copy.deepcopy(model).set_impl("reference")
    _close(model(x), reference(x), "logits")


# ------------------------------------------------------------------------------ mgiad bench
def test_parse_spec():
    spec = parse_spec("mgiad:widths=[16,32],group_size=4,impl=reference")
    assert (spec.name, spec.kwargs) == ("mgiad", {"widths": [16, 32], "group_size": 4,
                                                  "impl": "reference"})
    assert parse_spec("resnet18").kwargs == {}
    with pytest.raises(ValueError, match="unknown argument"):
        parse_spec("mgiad:depth=3")
    with pytest.raises(ValueError, match="unknown model"):
        parse_spec("vgg16")
    with pytest.raises(ValueError, match="key=value"):
        parse_spec("mgiad:widths")


def test_bench_command_writes_ratios_against_the_first_model(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = cli_main(["bench", "--model", "resnet20:width_mult=0.5", "--model",
                   "mgiad:widths=[8,16],coarse_channels=4,group_size=2", "--batch-size", "4",
                   "--image-size", "16", "--warmup", "1", "--repeats", "2", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    base, other = report["models"]
    assert report["baseline"] == base["label"] == "resnet20(width_mult=0.5)"
    assert base["train_ratio"] == base["infer_ratio"] == base["memory_ratio"] == 1.0
    for key in ("train_ms", "infer_ms", "peak_mb"):
        assert other[key] > 0 and base[key] > 0
    assert other["train_ratio"] == pytest.approx(other["train_ms"] / base["train_ms"])
    assert other["weights"] == mgiad.count_parameters(mgiad.create_model(
        "mgiad", widths=[8, 16], coarse_channels=4, group_size=2))
    assert report["settings"]["batch_size"] == 4 and report["machine"]["torch"] == torch.__version__
    assert report["settings"]["malloc_tuned"] == malloc.malloc_tuned()
    assert "x base" in capsys.readouterr().out


def test_bench_rejects_bad_arguments(capsys):
    assert cli_main(["bench", "--batch-size", "0"]) == 2
    assert "--batch-size must be positive" in capsys.readouterr().err
    assert cli_main(["bench", "--model", "mgiad:group_size"]) == 2


def test_fast_path_runs_grouped_convolutions_on_the_kernels(monkeypatch):
    from mgiad import kernels
    calls = []
    original = kernels.grouped_conv3x3
    monkeypatch.setattr(kernels, "grouped_conv3x3", lambda *a: calls.append(1) or original(*a))
    reference, fast_model = _pair("mgiad", CONFIGS["mgiad-small"][1])
    x, y = _batch(reference, 16)
    F.cross_entropy(fast_model(x), y).backward()
    grouped = [m for m in fast_model.modules() if isinstance(m, mgiad.layers.GroupedConv3x3)]
    assert grouped and all(m.use_kernels for m in grouped)
    assert calls  # every A-hat on a grouped channel level (B-hat runs inside the fast step)
    calls.clear()
    F.cross_entropy(reference(x), y).backward()
    assert calls == [] and not any(m.use_kernels for m in reference.modules()
                                   if isinstance(m, mgiad.layers.GroupedConv3x3))
    torch.jit.trace(fast_model.eval(), x, check_trace=False)  # records F.conv2d, not the kernels
    assert calls == []
