"""The fused element-wise passes of the smoothing step (mgiad.kernels.batchnorm) against PyTorch,
and the fast path with them against the readable reference path."""
import copy

import pytest
import torch
import torch.nn.functional as F

import mgiad
from mgiad import kernels
from mgiad.layers import fast
from mgiad.kernels import batchnorm as fused
from test_fast import CONFIGS, _batch, _close

pytestmark = pytest.mark.skipif(not kernels.available(), reason="C++ kernels unavailable here")
CL = torch.channels_last
# (N, C, H, W): vector tails (C not a multiple of 16), batch 1, 1x1 images, and maps large enough
# that two threads sum their halves separately
SHAPES = [(3, 6, 5, 7), (1, 24, 4, 3), (5, 16, 1, 1), (2, 37, 9, 2), (32, 16, 32, 32), (16, 48, 16, 16)]


def _map(shape, seed, scale=1.0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * scale + offset).contiguous(memory_format=CL)


def _close_in_norm(a, b, what, rel=5e-2):
    assert (a - b).norm() <= rel * b.norm() + 1e-7, f"{what}: {(a - b).norm() / b.norm():.3g} apart"


def _per_channel(v):
    return v.view(1, -1, 1, 1)


@pytest.mark.parametrize("shape", SHAPES)
def test_residual_and_batch_statistics(shape):
    f, A_u = _map(shape, 0), _map(shape, 1, 2.0, 3.0)  # a mean well away from zero
    r, mean, var = fused.residual_stats(f, A_u)
    expected = f - A_u
    assert r.is_contiguous(memory_format=CL)
    torch.testing.assert_close(r, expected, rtol=0, atol=0)
    torch.testing.assert_close(mean, expected.mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var, expected.var((0, 2, 3), unbiased=False), rtol=1e-5, atol=1e-6)
    mean2, var2 = fused.batch_stats(expected)
    torch.testing.assert_close((mean2, var2), (mean, var), rtol=0, atol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_affine_relu_and_update(shape):
    x, u = _map(shape, 2), _map(shape, 3)
    scale, shift = torch.randn(shape[1]), torch.randn(shape[1])
    expected = (x * _per_channel(scale) + _per_channel(shift)).relu()
    torch.testing.assert_close(fused.affine_relu(x, scale, shift), expected)
    out = fused.affine_relu(x, scale, shift, u=u)
    assert out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, u + expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_batch_norm_backward(shape):
    x, g = _map(shape, 4, 1.5, -0.5), _map(shape, 5)
    gamma, beta = torch.rand(shape[1]) + 0.5, torch.randn(shape[1]) * 0.5
    mean, var = fused.batch_stats(x)
    invstd = (var + 1e-5).rsqrt()
    # autograd of relu(bn(x)) with the same statistics written as differentiable functions of x
    xr, gr, br = (t.clone().requires_grad_() for t in (x, gamma, beta))
    m = xr.mean((0, 2, 3), keepdim=True)
    v = ((xr - m) ** 2).mean((0, 2, 3), keepdim=True)
    y = ((xr - m) * (v + 1e-5).rsqrt() * _per_channel(gr) + _per_channel(br)).relu()
    y.backward(g)
    g_x, neg, g_gamma, g_beta = fused.relu_bn_backward(g, x, mean, invstd, gamma, beta, negated=True)
    scale = (1e-3 * g_x.abs().max()).item()
    torch.testing.assert_close(g_x, xr.grad, rtol=1e-3, atol=scale)
    torch.testing.assert_close(neg, -g_x, rtol=0, atol=0)
    torch.testing.assert_close(g_gamma, gr.grad, rtol=1e-3, atol=1e-3 * gr.grad.abs().max().item())
    torch.testing.assert_close(g_beta, br.grad, rtol=1e-3, atol=1e-3 * br.grad.abs().max().item())
    assert fused.relu_bn_backward(g, x, mean, invstd, gamma, beta)[1] is None


def test_applies_only_to_channels_last_float_maps():
    x = _map((2, 8, 4, 4), 6)
    assert fused.applies(x, x)
    assert not fused.applies(x.contiguous(), x)
    assert not fused.applies(x.double().contiguous(memory_format=CL))
    assert not fused.applies(x, _map((2, 8, 4, 5), 7))
    assert not fused.applies(_map((1, 8, 1, 1), 8))  # one value per channel: no unbiased variance
    with torch.utils._python_dispatch.TorchDispatchMode():
        assert not fused.applies(x)


def test_operators_check_their_arguments():
    x = _map((2, 8, 4, 4), 9)
    with pytest.raises(RuntimeError, match="channels_last"):
        torch.ops.mgiad_kernels.residual_stats(x.contiguous(), x.contiguous())
    with pytest.raises(RuntimeError, match="another shape"):
        torch.ops.mgiad_kernels.residual_stats(x, _map((2, 8, 4, 5), 1))
    with pytest.raises(RuntimeError, match="8 channels"):
        fused.affine_relu(x, torch.ones(7), torch.ones(8))


# The small configurations (the paper-size ones take minutes). Gradients are compared in norm: a
# pre-activation within rounding of zero flips its ReLU mask under any change of rounding, which moves
# that element's gradient by O(|g|): here up to 3% of a weight gradient, with the fused or the PyTorch
# passes (whichever it is varies with the batch) as far from impl="reference" as from each other, and
# 0.5-5% in the paper-size models under a 1e-6 change of their input. Wrong wiring or formulas move
# whole tensors; the passes and functions themselves are checked element-wise above.
CONFIGS_TESTED = ["mgiad-small", "mgiad-eta-2-3-prolong-norm", "mgiad-post-only-lambda-2",
                    "mgiad-imagenet-stem", "mgnet-AB", "mgnet-A"]


@pytest.mark.parametrize("config", CONFIGS_TESTED)
def test_fused_passes_match_the_pytorch_passes(config, monkeypatch):
    """Channels-last fast models, fused passes on and off: equal outputs, input and parameter
    gradients and BatchNorm buffers (running averages, counters) over two SGD steps. (The fast
    path against the reference is test_fast's; the convolution kernels sum in another order, so
    this comparison isolates the fused passes.)"""
    name, kwargs, size = CONFIGS[config]
    torch.manual_seed(0)
    model = mgiad.create_model(name, num_classes=5, **kwargs).to(memory_format=CL)
    for i, bn in enumerate(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        if i % 2:
            bn.momentum = None  # cumulative average on half of them
    models = {True: model, False: copy.deepcopy(model)}
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=0.1) for k, m in models.items()}
    original, calls = fused.applies, []
    for step in range(2):
        x, y = _batch(model, size, n=4, seed=step)
        outputs = {}
        for use_fused, m in models.items():
            monkeypatch.setattr(fused, "applies", lambda *maps, on=use_fused: (
                on and original(*maps) and not calls.append(1)))
            xi = x.contiguous(memory_format=CL).requires_grad_()
            logits = m(xi)
            F.cross_entropy(logits, y).backward()
            outputs[use_fused] = logits, xi.grad
        _close(outputs[True][0], outputs[False][0], "logits")
        _close_in_norm(outputs[True][1], outputs[False][1], "input gradient")
        for (n, p), q in zip(models[True].named_parameters(), models[False].parameters()):
            _close_in_norm(p.grad, q.grad, f"gradient of {n}")
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad()
    for (n, a), b in zip(models[True].named_buffers(), models[False].buffers()):
        _close(a, b, f"buffer {n}")
    assert calls, "the fused passes did not run"


@pytest.mark.parametrize("shape", [(4, 16, 8, 8), (3, 12, 5, 3), (8, 32, 1, 1)])
def test_smoothing_step_function_fused_and_not(shape, monkeypatch):
    """One smoothing step (eq. 5) with the fused passes and with PyTorch's: output, the gradients of
    u, f, A_u, B and both BatchNorms, and the running averages."""
    channels = shape[1]
    results = []
    for use_fused in (True, False):
        torch.manual_seed(0)
        step = mgiad.layers.SmoothingStep(channels).train()
        B = mgiad.layers.conv(channels, channels, groups=channels // 4)
        for bn in (step.norm_residual[0], step.norm_correction[0]):
            torch.nn.init.uniform_(bn.weight, 0.5, 1.5)
            torch.nn.init.uniform_(bn.bias, -0.5, 0.5)
        inputs = [_map(shape, seed).requires_grad_() for seed in (10, 11, 12)]
        monkeypatch.setattr(fused, "applies", lambda *maps, on=use_fused, original=fused.applies: (
            on and original(*maps)))
        assert fast.applies(step, B, inputs[0])
        out = fast.smoothing_step(step, *inputs, B)
        out.backward(_map(shape, 13))
        monkeypatch.undo()
        results.append([out] + [t.grad for t in inputs]
                       + [p.grad for p in (*step.parameters(), B.weight)] + list(step.buffers()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(8, 16, 8, 8), (3, 12, 5, 3), (6, 24, 1, 1)])
def test_batch_norm_relu_function(shape):
    """The transfers' BN-ReLU in fused passes: output, gradients, running averages and counter
    equal ``relu(nn.BatchNorm2d(x))``'s."""
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(shape[1])
    torch.nn.init.uniform_(bn.weight, 0.5, 1.5)
    torch.nn.init.uniform_(bn.bias, -0.5, 0.5)
    reference = copy.deepcopy(bn)
    x, g = _map(shape, 20), _map(shape, 21)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = fast.batch_norm_relu(bn, x1)
    out.backward(g)
    expected = torch.relu(reference(x2))
    expected.backward(g)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)
    for a, b in ((bn.weight.grad, reference.weight.grad), (bn.bias.grad, reference.bias.grad),
                 *zip(bn.buffers(), reference.buffers())):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert fast.batch_norm_relu(bn.eval(), x) is None  # eval mode: PyTorch's BatchNorm
