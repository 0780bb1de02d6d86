"""The GPU transfer implementations (mgiad.kernels.gpu): element-wise arithmetic and Triton
kernels (run by Triton's interpreter on the CPU) give F.conv2d's map and gradients, keep the
input's memory format, and the layers dispatch to the one chosen."""
import os

import pytest
import torch
import torch.nn.functional as F

import mgiad
from mgiad.kernels import elementwise, gpu, triton_transfers
from mgiad.layers import TransferConv, conv

# (in, out, kernel, stride, groups): R-hat/Pi-hat, P-hat, R/Pi with multiplier 2 and 1
TRANSFERS = [(12, 6, 1, 1, 6), (6, 12, 1, 1, 6), (8, 16, 3, 2, 8), (8, 8, 3, 2, 8)]


@pytest.mark.parametrize("shape", TRANSFERS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(9, 9), (8, 11), (1, 2)])
def test_equals_conv2d_with_gradients(shape, channels_last, size):
    cin, cout, k, s, g = shape
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, cin, *size, dtype=torch.float64).contiguous(memory_format=fmt)
    x.requires_grad_()
    w = torch.randn(cout, cin // g, k, k, dtype=torch.float64, requires_grad=True)
    ref = F.conv2d(x, w, None, s, k // 2, 1, g)
    out = elementwise.conv2d(x, w, (s, s), (k // 2, k // 2), g)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    if size != (1, 2):  # (a 1x1 map is contiguous in both formats)
        assert out.is_contiguous(memory_format=fmt)
    grad = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ref, (x, w), grad), torch.autograd.grad(out, (x, w), grad)):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_autocast_returns_the_autocast_dtype_and_accumulates_in_float32():
    torch.manual_seed(1)
    x = torch.randn(2, 8, 10, 10)
    w = torch.randn(16, 1, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = elementwise.conv2d(x, w, 2, 1, 8)
        ref = F.conv2d(x, w, None, 2, 1, 1, 8)
    assert out.dtype == ref.dtype == torch.bfloat16
    exact = F.conv2d(x.double(), w.double(), None, 2, 1, 1, 8)
    # one rounding to bf16 at the end, as the convolution: not nine
    assert (out.double() - exact).abs().max() <= (exact.abs().max() * 2 ** -8).item()


def test_bad_weight_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        elementwise.conv2d(torch.randn(1, 6, 4, 4), torch.randn(6, 1, 1, 1), 1, 0, 3)


def _cuda_like(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda t: True))
    return torch.empty(1, 8, 6, 6, device="meta")


def test_applies_only_to_few_tap_grouped_calls_on_gpus(monkeypatch):
    w = torch.randn(16, 1, 3, 3)
    assert not gpu.applies(torch.randn(1, 8, 6, 6), w, (2, 2), (1, 1), (1, 1), 8)  # a CPU tensor
    x = _cuda_like(monkeypatch)
    assert gpu.applies(x, w, (2, 2), (1, 1), (1, 1), 8)
    assert not gpu.applies(x, torch.randn(8, 2, 3, 3), (1, 1), (1, 1), (1, 1), 4)  # 18 taps
    assert not gpu.applies(x, torch.randn(8, 8, 3, 3), (1, 1), (1, 1), (1, 1), 1)  # dense
    assert not gpu.applies(x, w, (2, 2), (2, 2), (2, 2), 8)  # dilated
    assert not gpu.applies(x, w, (2, 2), (0, 0), (1, 1), 8)  # not 'same' padding


def test_the_implementation_is_chosen_by_environment(monkeypatch):
    monkeypatch.delenv("MGIAD_GPU_TRANSFERS", raising=False)
    assert gpu.implementation() == "cudnn"
    for impl in gpu.IMPLEMENTATIONS:
        monkeypatch.setenv("MGIAD_GPU_TRANSFERS", impl.upper())
        assert gpu.implementation() == impl
    monkeypatch.setenv("MGIAD_GPU_TRANSFERS", "fastest")
    with pytest.raises(ValueError, match="MGIAD_GPU_TRANSFERS='fastest'"):
        gpu.implementation()


@pytest.mark.parametrize("impl", ["elementwise", "triton"])
def test_transfer_layers_dispatch_to_the_chosen_one(monkeypatch, impl):
    """Where it applies (on a GPU), every transfer of a model computes through the chosen
    implementation and the model's output does not change; with cudnn, none does."""
    torch.manual_seed(2)
    model = mgiad.create_model("mgiad", widths=(16, 32), coarse_channels=4, group_size=4,
                               impl="reference").eval()
    transfers = [m for m in model.modules() if isinstance(m, TransferConv)]
    assert len(transfers) >= 5
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        ref = model(x)
    calls = []
    module = elementwise if impl == "elementwise" else triton_transfers
    real = elementwise.conv2d

    def counting(x, weight, stride, *rest):
        calls.append(weight.shape)
        s = stride if isinstance(stride, tuple) else (stride, stride)
        return real(x, weight, s, (weight.shape[-1] // 2,) * 2, rest[-1])

    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda t: True))
    monkeypatch.setattr(gpu, "applies", lambda *a: True)
    monkeypatch.setattr(triton_transfers, "available", lambda: True)
    monkeypatch.setattr(module, "conv2d", counting)
    for chosen, expected in ((impl, len(transfers)), ("cudnn", 0)):
        monkeypatch.setenv("MGIAD_GPU_TRANSFERS", chosen)
        calls.clear()
        with torch.no_grad():
            out = model(x)
        assert len(calls) == expected
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_only_transfers_are_transfer_layers():
    assert isinstance(conv(16, 8, 1, groups=8), TransferConv)
    assert isinstance(conv(16, 32, 3, stride=2, groups=16), TransferConv)
    assert not isinstance(conv(16, 16, 3, groups=4), TransferConv)


triton_only = pytest.mark.skipif(
    not triton_transfers.available() or os.environ.get("TRITON_INTERPRET") != "1",
    reason="needs Triton and its interpreter (TRITON_INTERPRET=1, which conftest sets without a GPU)")


@triton_only
@pytest.mark.parametrize("shape", TRANSFERS + [(40, 80, 3, 2, 40)])
@pytest.mark.parametrize("size", [(9, 10), (8, 8), (1, 3)])
def test_triton_kernels_equal_conv2d_with_gradients(shape, size):
    """Every direction, under Triton's interpreter, on channels-last and contiguous inputs."""
    cin, cout, k, s, g = shape
    torch.manual_seed(3)
    for fmt in (torch.channels_last, torch.contiguous_format):
        x = torch.randn(2, cin, *size).contiguous(memory_format=fmt).requires_grad_()
        w = torch.randn(cout, cin // g, k, k, requires_grad=True)
        ref = F.conv2d(x, w, None, s, k // 2, 1, g)
        out = triton_transfers.conv2d(x, w, s, g)
        assert out.shape == ref.shape and out.dtype == ref.dtype
        assert out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        grad = torch.randn_like(ref)
        for a, b in zip(torch.autograd.grad(ref, (x, w), grad),
                        torch.autograd.grad(out, (x, w), grad)):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


@triton_only
def test_triton_kernels_under_autocast_return_the_autocast_dtype():
    x = torch.randn(2, 8, 9, 9).contiguous(memory_format=torch.channels_last)
    w = torch.randn(16, 1, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = triton_transfers.conv2d(x, w, 2, 8)
    exact = F.conv2d(x.double(), w.double(), None, 2, 1, 1, 8)
    assert out.dtype == torch.bfloat16
    assert (out.double() - exact).abs().max() <= 3 * (exact.abs().max() * 2 ** -8).item()
