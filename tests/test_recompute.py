"""recompute=False / "level" / "step" (mgiad.recompute): the same outputs, gradients and BatchNorm
buffers as the plain model, less memory at the peak, and the lean autograd functions on their own."""
import argparse
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mgiad
from mgiad.layers import recompute
from mgiad.cli import add_model_arguments, model_kwargs_from_args
from mgiad.layers import ConvBNReLU, SmoothingStep, conv
from mgiad.perf.memory import LiveTensorPeak

from test_fast import CONFIGS, _batch, _close, check_same_step


def _close_scaled(a, b, what):
    """Float32 agreement relative to the tensor's scale (sums over batch and pixels)."""
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * (1 + float(a.abs().max())),
                               msg=lambda m: f"{what}: {m}")


def _bn_modes(model):
    """Every other BatchNorm with the cumulative average, to cover both running-stat modes."""
    for bn in [b for b in model.modules() if isinstance(b, nn.BatchNorm2d)][::2]:
        bn.momentum = None
    return model


def _check_same_training(plain, lean, size, steps=2):
    for seed in range(steps):
        check_same_step(plain, lean, *_batch(plain, size, seed=seed))
    for (n, p), q in zip(plain.named_parameters(), lean.parameters()):
        assert q.grad is not None, n
        _close_scaled(p.grad, q.grad, f"gradient of {n}")
    for (n, a), b in zip(plain.named_buffers(), lean.buffers()):
        _close(a, b, f"buffer {n}")  # a second running-stat update would show here
    assert all(b.num_batches_tracked.item() == steps for b in lean.modules()
               if isinstance(b, nn.BatchNorm2d))


@pytest.mark.parametrize("mode", ["level", "step"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_recompute_trains_exactly_like_the_plain_model(config, mode):
    name, kwargs, size = CONFIGS[config]
    torch.manual_seed(0)
    plain = _bn_modes(mgiad.create_model(name, num_classes=5, **kwargs))
    lean = copy.deepcopy(plain)
    lean.recompute = mode
    _check_same_training(plain, lean, size)


@pytest.mark.parametrize("config", ["mgiad-small", "mgnet-A", "mgiad-eta-2-3-prolong-norm"])
def test_step_recompute_with_the_reference_implementation(config):
    name, kwargs, size = CONFIGS[config]
    torch.manual_seed(0)
    plain = _bn_modes(mgiad.create_model(name, num_classes=5, impl="reference", **kwargs))
    lean = copy.deepcopy(plain)
    lean.recompute = "step"
    _check_same_training(plain, lean, size)


def test_step_recompute_on_channels_last_inputs_and_sgd_steps():
    torch.manual_seed(0)
    kwargs = dict(widths=(16, 32), coarse_channels=4, group_size=4)
    plain = mgiad.create_model("mgiad", num_classes=5, **kwargs)
    lean = copy.deepcopy(plain)
    lean.recompute = "step"
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (plain, lean)]
    for step in range(3):
        x, y = _batch(plain, 13, n=5, seed=step)  # odd size: slices and borders
        x = x.contiguous(memory_format=torch.channels_last)
        for model, opt in zip((plain, lean), opts):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    for (n, p), q in zip(plain.named_parameters(), lean.parameters()):
        _close(p, q, f"parameter {n} after 3 SGD steps")
    plain.eval(), lean.eval()
    with torch.no_grad():
        _close(plain(x), lean(x), "eval logits")


# ------------------------------------------------------------------------------ peak memory
def _peak_bytes(model, x, y):
    with LiveTensorPeak() as tracker:
        F.cross_entropy(model(x), y).backward()
    return tracker.peak


@pytest.mark.parametrize("name, kwargs", [
    ("mgiad", dict(widths=(48, 96), coarse_channels=12, group_size=4)),
    ("mgnet", dict(widths=(32, 64), smoothing_steps=2)),
])
def test_each_mode_needs_less_memory_at_the_peak(name, kwargs):
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,))
    peaks = {}
    for mode in (False, "level", "step"):
        model = mgiad.create_model(name, num_classes=5, recompute=mode, **kwargs)
        F.cross_entropy(model(x), y).backward()  # warm: lazily created state is not activation
        peaks[mode] = _peak_bytes(model, x, y)
    assert peaks["step"] < peaks["level"] < peaks[False], peaks
    assert peaks["step"] < 0.6 * peaks[False], peaks


# ------------------------------------------------------------------------ the lean functions
def _step_and_convs(channels, groups):
    torch.manual_seed(0)
    step, A, B = SmoothingStep(channels), conv(channels, channels, 3, groups=groups), \
        conv(channels, channels, 3, groups=groups)
    for bn in (step.norm_residual[0], step.norm_correction[0]):
        nn.init.uniform_(bn.weight, 0.5, 1.5), nn.init.uniform_(bn.bias, -0.2, 0.2)
    return step, A, B


@pytest.mark.parametrize("shape, groups, channels_last", [
    ((4, 8, 9, 7), 2, False), ((1, 12, 5, 5), 3, True), ((3, 6, 1, 1), 1, False),
    ((9, 16, 8, 8), 4, True),
])
def test_recomputed_smoothing_step_matches_the_step(shape, groups, channels_last):
    step, A, B = _step_and_convs(shape[1], groups)
    lean_step = copy.deepcopy(step)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    g = torch.Generator().manual_seed(1)
    u, f, w = (torch.randn(shape, generator=g).contiguous(memory_format=fmt) for _ in range(3))
    results = []
    for s in (step, lean_step):
        ui, fi = u.clone().requires_grad_(), f.clone().requires_grad_()
        for p in (*A.parameters(), *B.parameters()):
            p.grad = None
        out = (s(ui, fi, A(ui), B) if s is step
               else recompute.smoothing_step(s, ui, fi, A, B))
        (out * w).sum().backward()
        results.append((out, ui.grad, fi.grad, A.weight.grad.clone(), B.weight.grad.clone(),
                        *[p.grad for p in s.parameters()], *s.buffers()))
    for a, b in zip(*results):
        _close_scaled(a, b, "step output, gradient or buffer")


def test_recomputed_step_from_the_initial_zero_and_a_given_A_u():
    step, A, B = _step_and_convs(8, 2)
    lean_step = copy.deepcopy(step)
    f = torch.randn(3, 8, 6, 6, requires_grad=True)
    zero = f.new_zeros(()).expand_as(f)
    out_plain = step(torch.zeros_like(f), f, torch.zeros_like(f), B)
    g_plain = torch.autograd.grad(out_plain.square().sum(), [f, B.weight, A.weight],
                                  allow_unused=True)
    out_lean = recompute.smoothing_step(lean_step, zero, f, A, B, A_u=zero)
    g_lean = torch.autograd.grad(out_lean.square().sum(), [f, B.weight, A.weight],
                                 allow_unused=True)
    _close(out_plain, out_lean, "output")
    _close(g_plain[0], g_lean[0], "gradient of f")
    _close(g_plain[1], g_lean[1], "gradient of B")
    assert g_lean[2] is None or g_lean[2].abs().max() == 0  # A(0) = 0 whatever A is


@pytest.mark.parametrize("stride, groups, kernel", [(2, 4, 3), (1, 6, 1), (1, 1, 3)])
def test_recomputed_conv_bn_relu_matches_the_block(stride, groups, kernel):
    torch.manual_seed(0)
    block = ConvBNReLU(12, 12 if groups != 4 else 24, kernel, stride=stride, groups=groups)
    lean = copy.deepcopy(block)
    lean.recompute = True
    x = torch.randn(5, 12, 9, 9)
    results = []
    for b in (block, lean):
        xi = x.clone().requires_grad_()
        out = b(xi)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out, xi.grad, *[p.grad for p in b.parameters()], *b.buffers()))
    for a, c in zip(*results):
        _close_scaled(a, c, "output, gradient or buffer")


def test_lean_paths_run_only_when_training_with_gradients(monkeypatch):
    calls = []
    original = recompute.RecomputedSmoothingStep.apply
    monkeypatch.setattr(recompute.RecomputedSmoothingStep, "apply",
                        lambda *args: calls.append(1) or original(*args))
    model = mgiad.create_model("mgiad", num_classes=5, recompute="step", **CONFIGS["mgiad-small"][1])
    x, _ = _batch(model, 16)
    model(x).sum().backward()
    steps = sum(isinstance(m, SmoothingStep) for m in model.modules())
    assert len(calls) >= steps  # every step at least once (again when a segment is rerun)
    calls.clear()
    with torch.no_grad():
        model(x)
    model.eval()
    model(x).sum().backward()
    assert calls == []


# ------------------------------------------------------------------------------ the option
def test_recompute_is_validated_normalised_and_recorded():
    with pytest.raises(ValueError, match="recompute must be one of False, 'level', 'step'"):
        mgiad.create_model("mgnet", recompute="yes")
    model = mgiad.create_model("mgiad", recompute=True, **CONFIGS["mgiad-small"][1])
    assert model.recompute == "level"
    model.recompute = "step"
    assert model.config["recompute"] == "step"
    assert all(m.recompute for m in model.modules() if isinstance(m, SmoothingStep))
    model.recompute = False
    assert not any(m.recompute for m in model.modules() if isinstance(m, SmoothingStep))


def test_command_line_recompute_flag():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mgiad")
    add_model_arguments(parser)
    for argv, expected in ([["--recompute", "step"], "step"], [["--recompute"], "level"],
                           [["--no-recompute"], False], [[], None]):
        kwargs = model_kwargs_from_args(parser.parse_args(argv))
        assert kwargs.get("recompute") == expected, argv
    with pytest.raises(SystemExit):
        parser.parse_args(["--recompute", "always"])
