"""mgiad.kernels: the C++ grouped 3x3 convolution against F.conv2d and its autograd gradients, on
shapes that do not fill a vector or a register block, both instruction sets, both memory formats;
and the fallback to PyTorch (MGIAD_KERNELS=0, shapes the kernels do not take, no compiler)."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mgiad import kernels
from mgiad.kernels import autograd, build, grouped_conv, runtime
from train_helpers import benchmark

needs_compiler = pytest.mark.skipif(build.missing_tool() is not None,
                                    reason=f"cannot build the C++ kernels here: {build.missing_tool()}")

# (N, C, H, W, group size): odd widths and heights, 1x1 images, batch 1, C not a multiple of 16
SHAPES = [
    (2, 32, 7, 13, 4), (1, 48, 1, 1, 4), (1, 16, 1, 1, 2), (3, 24, 5, 9, 8), (2, 12, 6, 7, 4),
    (2, 6, 3, 3, 2), (1, 32, 13, 7, 16), (2, 48, 8, 8, 16), (1, 64, 16, 16, 8), (2, 8, 1, 13, 2),
    (1, 16, 13, 1, 4), (2, 40, 4, 12, 8), (1, 36, 9, 17, 4), (1, 2, 2, 2, 2),
]


def _inputs(n, c, h, w, group_size, channels_last, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=generator)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(c, group_size, 3, 3, generator=generator)
    grad_out = torch.randn(n, c, h, w, generator=generator)
    return x, weight, grad_out


def _forward_backward(conv, x, weight, grad_out):
    x = x.detach().requires_grad_()
    weight = weight.detach().requires_grad_()
    y = conv(x, weight)
    y.backward(grad_out)
    return y, x.grad, weight.grad


def _reference(x, weight):
    return F.conv2d(x, weight, padding=1, groups=x.shape[1] // weight.shape[1])


@needs_compiler
def test_available_here():
    assert kernels.available()
    assert runtime.isa() > 0


@needs_compiler
@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "contiguous"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_conv2d_and_its_gradients(isa, shape, channels_last):
    x, weight, grad_out = _inputs(*shape, channels_last=channels_last)
    ours = _forward_backward(kernels.grouped_conv3x3, x, weight, grad_out)
    reference = _forward_backward(_reference, x, weight, grad_out)
    for name, a, b, atol in zip(("output", "grad input", "grad weight"), ours, reference, (1e-4, 1e-4, 1e-3)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=atol, msg=lambda m: f"{name}: {m}")
    out, grad_x, _ = ours
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last or out.shape[2:] == (1, 1)
    assert grad_x.is_contiguous(memory_format=torch.channels_last) == channels_last or out.shape[2:] == (1, 1)


@needs_compiler
def test_large_outputs_written_past_the_caches(isa):
    """Outputs of 16 MB and more are written with non-temporal stores."""
    x, weight, grad_out = _inputs(4, 64, 128, 128, 4, channels_last=True)
    ours = _forward_backward(kernels.grouped_conv3x3, x, weight, grad_out)
    reference = _forward_backward(_reference, x, weight, grad_out)
    for a, b, atol in zip(ours, reference, (1e-4, 1e-4, 5e-3)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=atol)


@needs_compiler
def test_kernels_run_on_applicable_inputs(isa, monkeypatch):
    calls = []
    real_apply = autograd.KernelConv.apply
    monkeypatch.setattr(autograd.KernelConv, "apply", lambda *a: calls.append(1) or real_apply(*a))
    x, weight, _ = _inputs(1, 16, 5, 5, 4, channels_last=True)
    kernels.grouped_conv3x3(x, weight)
    assert calls == [1]


@needs_compiler
@pytest.mark.parametrize("shape", [(1, 8, 3, 5, 4), (2, 4, 2, 3, 2), (1, 16, 4, 4, 16)], ids=str)
def test_gradients_match_finite_differences(isa, shape):
    """The convolution is linear in x and in the weight, so central differences are exact up to rounding."""
    x, weight, grad_out = _inputs(*shape, channels_last=True, seed=1)
    _, grad_x, grad_weight = _forward_backward(kernels.grouped_conv3x3, x, weight, grad_out)
    generator = torch.Generator().manual_seed(2)
    for which, grad in ((0, grad_x), (1, grad_weight)):
        direction = torch.randn(grad.shape, generator=generator)
        args_plus, args_minus = [x, weight], [x, weight]
        args_plus[which] = args_plus[which] + direction
        args_minus[which] = args_minus[which] - direction
        with torch.no_grad():
            difference = (kernels.grouped_conv3x3(*args_plus) - kernels.grouped_conv3x3(*args_minus)) / 2
        expected = (difference * grad_out).sum()
        torch.testing.assert_close((grad * direction).sum(), expected, rtol=1e-3, atol=1e-3)


@needs_compiler
def test_operators_check_their_arguments():
    x, weight, _ = _inputs(1, 16, 4, 4, 4, channels_last=False)
    x = x[:, :, :, :].permute(0, 1, 3, 2)  # neither format
    with pytest.raises(RuntimeError, match="channels_last"):
        torch.ops.mgiad_kernels.conv3x3_forward(x, weight, runtime.isa())


def test_disabled_by_environment_uses_pytorch(monkeypatch):
    monkeypatch.setenv("MGIAD_KERNELS", "0")
    monkeypatch.setattr(autograd.KernelConv, "apply", lambda *a: pytest.fail("kernels used"))
    assert not kernels.available()
    x, weight, grad_out = _inputs(2, 16, 5, 7, 4, channels_last=True)
    ours = _forward_backward(kernels.grouped_conv3x3, x, weight, grad_out)
    reference = _forward_backward(_reference, x, weight, grad_out)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("case", ["float64", "group size 3", "5x5 kernel", "out != in channels", "empty"])
def test_inputs_the_kernels_do_not_take_use_pytorch(case, monkeypatch):
    monkeypatch.setattr(autograd.KernelConv, "apply", lambda *a: pytest.fail("kernels used"))
    x, weight, _ = _inputs(1, 12, 5, 5, 4, channels_last=True)
    if case == "float64":
        x, weight = x.double(), weight.double()
    elif case == "group size 3":
        weight = torch.randn(12, 3, 3, 3)
    elif case == "5x5 kernel":
        weight = torch.randn(12, 4, 5, 5)
        assert not kernels.kernel_applies(x, weight)
        return
    elif case == "out != in channels":
        weight = torch.randn(24, 4, 3, 3)
    elif case == "empty":
        x = x[:0]
    assert not kernels.kernel_applies(x, weight)
    torch.testing.assert_close(kernels.grouped_conv3x3(x, weight), _reference(x, weight))


def test_no_compiler_warns_once_in_one_line_and_uses_pytorch(monkeypatch, tmp_path):
    """No compiler and no verified build (an empty cache): load() is False after one warning of one
    line. In a fresh process: this one has the kernels loaded, and a loaded or verified build
    needs no compiler."""
    code = ("import warnings\nfrom mgiad.kernels import build\n"
            "with warnings.catch_warnings(record=True) as record:\n"
            "    warnings.simplefilter('always')\n"
            "    loaded = build.load()\n"
            "print(loaded, len(record), repr(str(record[0].message)) if record else '')\n")
    env = {**os.environ, "CXX": "no-such-c++-compiler", "MGIAD_KERNELS_CACHE": str(tmp_path)}
    env.pop("MGIAD_KERNELS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    loaded, count, message = out.strip().split(" ", 2)
    assert loaded == "False" and count == "1", out
    assert "no C++ compiler" in message and "\\n" not in message, out
    monkeypatch.setattr(runtime, "available", lambda: False)
    monkeypatch.setattr(autograd.KernelConv, "apply", lambda *a: pytest.fail("kernels used"))
    x, weight, _ = _inputs(1, 8, 4, 4, 4, channels_last=True)
    torch.testing.assert_close(kernels.grouped_conv3x3(x, weight), _reference(x, weight))


@needs_compiler
def test_benchmark_runs(capsys):
    bench = benchmark("kernels_bench")

    bench.main(["--shape", "16,4,5,6", "--batch", "1", "--repeats", "1", "--stat", "min"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 3 and lines[-1].split()[3] == "grad-weight"


@needs_compiler
@pytest.mark.parametrize("channels", [8, 16])
def test_dense_convolutions_of_8_and_16_channels_run_as_one_group(channels, monkeypatch):
    """The coarsest channel level's dense 3x3 convolution (c_K = 8 or 16) is the kernels' group size
    8 or 16 with one group: built as GroupedConv3x3, same values and gradients as F.conv2d."""
    from mgiad import layers
    conv = layers.conv(channels, channels)
    assert type(conv) is layers.GroupedConv3x3 and conv.groups == 1
    assert type(layers.conv(32, 32)) is torch.nn.Conv2d  # 32 channels: no such group size
    conv.use_kernels = True
    calls = []
    original = kernels.grouped_conv3x3
    monkeypatch.setattr(kernels, "grouped_conv3x3", lambda *a: calls.append(1) or original(*a))
    x = torch.randn(2, channels, 7, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    w_ref = conv.weight.detach().clone().requires_grad_()
    out, expected = conv(x), F.conv2d(x_ref, w_ref, padding=1)
    assert calls and grouped_conv.kernel_applies(x, conv.weight)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(out)
    out.backward(g)
    expected.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, w_ref.grad, rtol=1e-4, atol=1e-4)
