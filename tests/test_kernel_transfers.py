"""mgiad.kernels' transfer kernels (depthwise 3x3 stride 2, 1x1 channel pairs) against F.conv2d and
its gradients, on both instruction sets and memory formats, odd sizes and channel counts; the
fallbacks to PyTorch; and the models on them (impl="fast", MGIAD_KERNELS=1 against 0)."""
import copy

import pytest

from train_helpers import benchmark
import torch
import torch.nn.functional as F

import mgiad
from mgiad import kernels, layers
from mgiad.kernels import autograd, build, runtime, transfers

needs_compiler = pytest.mark.skipif(build.missing_tool() is not None,
                                    reason=f"cannot build the C++ kernels here: {build.missing_tool()}")

# depthwise: (N, C_in, H, W, multiplier); odd and even sizes, 1x1 and 2x2 images, batch 1, C % 16 != 0
DEPTHWISE = [(2, 16, 32, 32, 2), (1, 6, 5, 7, 2), (3, 24, 1, 1, 1), (2, 6, 2, 2, 2), (1, 40, 9, 4, 1),
             (2, 33, 3, 6, 1), (1, 5, 8, 8, 2), (2, 16, 7, 1, 2), (1, 24, 11, 13, 2), (1, 32, 6, 9, 1),
             (1, 200, 5, 23, 2), (1, 130, 4, 21, 1)]  # wide: several tiles of columns per row
# pairs: (N, C narrow, H, W, input channels per group: 2 = 2C -> C, 1 = C -> 2C)
PAIRS = [(2, 16, 8, 8, 2), (2, 16, 8, 8, 1), (1, 3, 5, 7, 2), (1, 3, 5, 7, 1), (2, 24, 1, 1, 2),
         (1, 24, 3, 3, 1), (1, 40, 2, 3, 2), (1, 40, 2, 3, 1), (1, 1, 3, 3, 1), (1, 6, 2, 2, 2)]


def _depthwise_case(n, c, h, w, multiplier, channels_last, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    weight = torch.randn(multiplier * c, 1, 3, 3, generator=g)
    return _format(x, channels_last), weight, dict(stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=c)


def _pairs_case(n, c, h, w, in_per_group, channels_last, seed=0):
    g = torch.Generator().manual_seed(seed)
    c_in, c_out = (2 * c, c) if in_per_group == 2 else (c, 2 * c)
    x = torch.randn(n, c_in, h, w, generator=g)
    weight = torch.randn(c_out, in_per_group, 1, 1, generator=g)
    return _format(x, channels_last), weight, dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=c)


def _format(x, channels_last):
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _forward_backward(conv, x, weight, args, seed=3):
    x = x.detach().requires_grad_()
    weight = weight.detach().requires_grad_()
    y = conv(x, weight, **args)
    grad_out = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))
    y.backward(grad_out)
    return y, x.grad, weight.grad, grad_out


def _reference(x, weight, **args):
    return F.conv2d(x, weight, None, **args)


def _check(x, weight, args, channels_last, monkeypatch, weight_atol=1e-4):
    calls = []
    real_apply = autograd.KernelConv.apply
    monkeypatch.setattr(autograd.KernelConv, "apply", lambda *a: calls.append(1) or real_apply(*a))
    ours = _forward_backward(kernels.transfer_conv, x, weight, args)
    reference = _forward_backward(_reference, x, weight, args)
    assert calls == [1]
    for name, a, b, atol in zip(("output", "grad input", "grad weight"), ours, reference, (1e-4, 1e-4, weight_atol)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=atol, msg=lambda m: f"{name}: {m}")
    out, grad_x = ours[0], ours[1]
    if not (x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)):  # else both
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last or out.shape[2:] == (1, 1)
        assert grad_x.is_contiguous(memory_format=torch.channels_last) == channels_last
    # the autograd-free pair used inside autograd functions (mgiad.recompute)
    with torch.no_grad():
        torch.testing.assert_close(kernels.conv2d(x, weight, **args), reference[0], rtol=1e-4, atol=1e-4)
        g_x, g_w = kernels.conv2d_backward(reference[3], x, weight, *args.values(), [True, True])
    torch.testing.assert_close(g_x, reference[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g_w, reference[2], rtol=1e-4, atol=weight_atol)


@needs_compiler
@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "contiguous"])
@pytest.mark.parametrize("shape", DEPTHWISE, ids=lambda s: "x".join(map(str, s)))
def test_depthwise_matches_conv2d_and_its_gradients(isa, shape, channels_last, monkeypatch):
    _check(*_depthwise_case(*shape, channels_last), channels_last, monkeypatch)


@needs_compiler
@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "contiguous"])
@pytest.mark.parametrize("shape", PAIRS, ids=lambda s: "x".join(map(str, s)))
def test_pairs_match_conv2d_and_their_gradients(isa, shape, channels_last, monkeypatch):
    _check(*_pairs_case(*shape, channels_last), channels_last, monkeypatch)


@needs_compiler
@pytest.mark.parametrize("case", ["depthwise", "expand", "reduce"])
def test_large_outputs_written_past_the_caches(isa, case, monkeypatch):
    """Outputs (forward or input gradient) of 16 MB and more are written with non-temporal stores."""
    if case == "depthwise":  # the input gradient is 16 MB
        _check(*_depthwise_case(4, 64, 128, 128, 1, True), True, monkeypatch, weight_atol=5e-3)
    else:  # the forward output is 16 MB
        _check(*_pairs_case(4, 32 if case == "expand" else 64, 128, 128, 1 if case == "expand" else 2, True),
               True, monkeypatch, weight_atol=5e-3)


@needs_compiler
def test_one_gradient_only(isa):
    """needs_input_grad / output_mask: the input's gradient alone, or the weight's alone."""
    x, weight, args = _depthwise_case(2, 8, 6, 6, 2, True)
    for requires in ((True, False), (False, True)):
        xs, ws = x.clone().requires_grad_(requires[0]), weight.clone().requires_grad_(requires[1])
        kernels.transfer_conv(xs, ws, **args).sum().backward()
        assert (xs.grad is None) != requires[0] and (ws.grad is None) != requires[1]
    g = torch.randn(2, 16, 3, 3)
    assert kernels.conv2d_backward(g, x, weight, *args.values(), [False, True])[0] is None


@needs_compiler
def test_conv2d_without_autograd_runs_the_kernel_of_each_call(monkeypatch):
    """kernels.conv2d / conv2d_backward (the fast path's) pick the kernel that computes the call; the
    values alone cannot show it, since PyTorch computes the same."""
    from mgiad.kernels import functional, grouped_conv
    x16 = torch.randn(2, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    x32 = torch.randn(2, 32, 6, 6).contiguous(memory_format=torch.channels_last)
    cases = [  # (x, weight shape, stride, padding, groups, the kernels expected)
        (x16, (16, 4, 3, 3), 1, 1, 4, grouped_conv.GROUPED_3X3),
        (x16, (16, 16, 3, 3), 1, 1, 1, grouped_conv.GROUPED_3X3),       # dense 16 channels: one group
        (x16, (32, 1, 3, 3), 2, 1, 16, transfers.KERNELS[transfers.DEPTHWISE]),
        (x32, (16, 2, 1, 1), 1, 0, 16, transfers.KERNELS[transfers.PAIRS]),
        (x16, (32, 1, 1, 1), 1, 0, 16, transfers.KERNELS[transfers.PAIRS]),
        (x16, (16, 4, 3, 3), 2, 1, 4, None),                           # stride 2: PyTorch
        (x32, (32, 32, 3, 3), 1, 1, 1, None),                          # group of 32: PyTorch
        (x16, (16, 16, 1, 1), 1, 0, 1, None),
    ]
    for x, shape, stride, padding, groups, expected in cases:
        weight = torch.randn(shape)
        args = ((stride, stride), (padding, padding), (1, 1), groups)
        assert functional.kernels_for(x, weight, *args) is expected, (shape, stride, groups)
        torch.testing.assert_close(kernels.conv2d(x, weight, *args), F.conv2d(x, weight, None, *args),
                                   rtol=1e-4, atol=1e-4)
    monkeypatch.setenv("MGIAD_KERNELS", "0")
    assert functional.kernels_for(x16, torch.randn(16, 4, 3, 3), (1, 1), (1, 1), (1, 1), 4) is None


@needs_compiler
def test_operators_check_their_arguments():
    x, weight, _ = _depthwise_case(1, 8, 4, 4, 2, channels_last=False)
    with pytest.raises(RuntimeError, match="channels_last"):
        torch.ops.mgiad_kernels.dw3x3s2_forward(x.permute(0, 1, 3, 2), weight, runtime.isa())
    with pytest.raises(RuntimeError, match="output channels"):
        torch.ops.mgiad_kernels.dw3x3s2_forward(_format(x, True), torch.randn(24, 1, 3, 3), runtime.isa())
    with pytest.raises(RuntimeError, match="channels per group"):
        torch.ops.mgiad_kernels.pair1x1_forward(_format(x, True), torch.randn(8, 2, 1, 1), runtime.isa())


FALLBACKS = {
    "float64": lambda: (torch.randn(1, 4, 6, 6, dtype=torch.float64), torch.randn(8, 1, 3, 3, dtype=torch.float64),
                        dict(stride=2, padding=1, groups=4)),
    "multiplier 3": lambda: (torch.randn(1, 4, 6, 6), torch.randn(12, 1, 3, 3), dict(stride=2, padding=1, groups=4)),
    "stride 1": lambda: (torch.randn(1, 4, 6, 6), torch.randn(8, 1, 3, 3), dict(stride=1, padding=1, groups=4)),
    "padding 0": lambda: (torch.randn(1, 4, 6, 6), torch.randn(4, 1, 3, 3), dict(stride=2, padding=0, groups=4)),
    "dilation 2": lambda: (torch.randn(1, 4, 9, 9), torch.randn(4, 1, 3, 3), dict(stride=2, padding=1, dilation=2,
                                                                                  groups=4)),
    "1x1 2 -> 2": lambda: (torch.randn(1, 8, 5, 5), torch.randn(8, 2, 1, 1), dict(groups=4)),
    "1x1 stride 2": lambda: (torch.randn(1, 8, 5, 5), torch.randn(4, 2, 1, 1), dict(stride=2, groups=4)),
    "empty": lambda: (torch.randn(0, 4, 6, 6), torch.randn(8, 1, 3, 3), dict(stride=2, padding=1, groups=4)),
}


@pytest.mark.parametrize("case", list(FALLBACKS))
def test_calls_the_kernels_do_not_take_use_pytorch(case, monkeypatch):
    monkeypatch.setattr(autograd.KernelConv, "apply", lambda *a: pytest.fail("kernels used"))
    x, weight, args = FALLBACKS[case]()
    assert kernels.transfer_kind(x, weight, **args) is None
    torch.testing.assert_close(kernels.transfer_conv(x, weight, **args), F.conv2d(x, weight, None, **args))


def test_disabled_by_environment_uses_pytorch(monkeypatch):
    monkeypatch.setenv("MGIAD_KERNELS", "0")
    monkeypatch.setattr(autograd.KernelConv, "apply", lambda *a: pytest.fail("kernels used"))
    x, weight, args = _depthwise_case(2, 8, 5, 7, 2, True)
    assert kernels.transfer_kind(x, weight, **args) == "depthwise"
    ours = _forward_backward(kernels.transfer_conv, x, weight, args)
    for a, b in zip(ours, _forward_backward(_reference, x, weight, args)):
        torch.testing.assert_close(a, b)


def test_dispatch_modes_see_aten_convolution(monkeypatch):
    """FLOP counters (a dispatch mode) and autocast get PyTorch's convolution."""
    from torch.utils.flop_counter import FlopCounterMode
    monkeypatch.setattr(autograd.KernelConv, "apply", lambda *a: pytest.fail("kernels used"))
    x, weight, args = _pairs_case(1, 8, 4, 4, 2, True)
    with FlopCounterMode(display=False) as counter:
        kernels.transfer_conv(x, weight, **args)
    assert counter.get_total_flops() == 2 * 16 * 8 * 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kernels.transfer_conv(x, weight, **args)


# ------------------------------------------------------------------ layers and models
def test_conv_factory_builds_transfer_convolutions():
    expected = {(16, 32, 3, 2, 16): True, (16, 16, 3, 2, 16): True, (32, 16, 1, 1, 16): True,
                (16, 32, 1, 1, 16): True, (16, 48, 3, 2, 16): False, (16, 32, 3, 1, 16): False,
                (32, 32, 1, 1, 16): False, (16, 32, 3, 2, 1): False}
    for args, is_transfer in expected.items():
        module = layers.conv(*args)
        assert isinstance(module, layers.TransferConv) == is_transfer, args
        plain = torch.nn.Conv2d(*args[:2], args[2], stride=args[3], padding=args[2] // 2, groups=args[4],
                                bias=False)
        assert module.state_dict().keys() == plain.state_dict().keys()
        assert module.weight.shape == plain.weight.shape


def _small_mgiad(**kwargs):
    torch.manual_seed(0)
    return mgiad.create_model("mgiad", in_chans=1, num_classes=5, widths=(8, 16), coarse_channels=4,
                              group_size=4, **kwargs)


def _step(model, x, y):
    xi = x.clone().requires_grad_()
    logits = model(xi)
    F.cross_entropy(logits, y).backward()
    return [logits, xi.grad] + [p.grad for p in model.parameters()] + list(model.buffers())


@pytest.fixture
def one_thread():
    """Many tiny operators: one thread keeps them quick on a shared machine (no waiting for a
    descheduled OpenMP thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@needs_compiler
@pytest.mark.parametrize("recompute", [False, "step"], ids=["stored", "recompute-step"])
def test_fast_model_same_with_and_without_kernels(recompute, monkeypatch, one_thread):
    model = _small_mgiad(recompute=recompute)
    transfer_convs = [m for m in model.modules() if isinstance(m, layers.TransferConv)]
    kinds = {(tuple(m.weight.shape[1:]), m.stride) for m in transfer_convs}
    assert {((1, 3, 3), (2, 2)), ((2, 1, 1), (1, 1)), ((1, 1, 1), (1, 1))} <= kinds
    assert all(m.use_kernels for m in transfer_convs) and model.impl == "fast"
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 1, 12, 11, generator=g), torch.randint(0, 5, (3,), generator=g)
    calls = []
    for kind, ops in list(transfers.KERNELS.items()):
        monkeypatch.setitem(transfers.KERNELS, kind, autograd.ConvKernels(
            *(lambda *a, f=f, tag=tag: calls.append(tag) or f(*a) for f, tag in zip(ops, "fiwe"))))
    other = copy.deepcopy(model)
    with_kernels = _step(model, x, y)
    assert {"f", "i", "w"} <= set(calls)
    calls.clear()
    monkeypatch.setenv("MGIAD_KERNELS", "0")
    without = _step(other, x, y)
    assert calls == []
    for i, (a, b) in enumerate(zip(with_kernels, without)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m: f"tensor {i}: {m}")


def test_reference_model_does_not_use_the_kernels():
    model = _small_mgiad(impl="reference")
    assert not any(m.use_kernels for m in model.modules() if isinstance(m, layers.KernelConv2d))
    assert any(isinstance(m, layers.TransferConv) for m in model.modules())
    assert all(m.use_kernels for m in model.set_impl("fast").modules() if isinstance(m, layers.KernelConv2d))


@needs_compiler
def test_benchmark_runs(capsys):
    bench = benchmark("kernels_bench")

    bench.main(["--transfers", "--shape", "dw,6,2,5,7", "--shape", "pair,6,2,4,4", "--batch", "1",
                "--repeats", "1", "--stat", "min"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + 6 and lines[-1].split()[4] == "grad-weight"
