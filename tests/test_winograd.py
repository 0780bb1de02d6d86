"""The Winograd F(4x4, 3x3) kernel for dense 3x3 convolutions in inference (mgiad.kernels.winograd):
the weight transform against G g G^T written out here, the convolution and its epilogue against
F.conv2d and the epilogue in PyTorch, the direct fallback, what it refuses, and its place in
optimize_for_inference (every plain convolution of a folded model goes through it)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mgiad
from mgiad.deploy.optimize import optimize_for_inference
from mgiad.kernels import build, epilogue, runtime, winograd
from mgiad.layers import GroupedConv3x3
from mgiad.layers.conv import InferenceConv2d, use_inference_convs

needs_kernels = pytest.mark.skipif(build.missing_tool() is not None or not runtime.available(),
                                   reason="the C++ kernels cannot run here")

# (N, C, K, H, W): maps that are not multiples of the 4x4 tile, 1x1 and 2x3 maps, C != K, vector
# widths of AVX2 (8) and AVX-512 (16), more tiles than a block, one block shared by images
SHAPES = [(2, 16, 16, 8, 8), (3, 32, 48, 7, 5), (1, 16, 32, 1, 1), (2, 48, 16, 2, 3),
          (2, 64, 64, 17, 13), (5, 16, 16, 4, 4), (1, 96, 96, 32, 32)]


def _ops():
    return torch.ops.mgiad_kernels


def _isa_level():
    return runtime.isa()


def _data(shape, seed=0):
    n, c, k, h, w = shape
    g = torch.Generator().manual_seed(seed + sum(shape))
    x = torch.randn(n, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(k, c, 3, 3, generator=g) / (3 * c ** 0.5)
    return x, weight, g


def _close(got, expected):
    """Winograd's rounding: relative to the output's scale, as the transforms mix values."""
    scale = expected.abs().max().item() + 1e-6
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-5 * scale)


@needs_kernels
def test_weight_transform_is_G_g_Gt():
    G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                      [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
    weight = torch.randn(24, 8, 3, 3)
    expected = torch.einsum("ia,kcab,jb->ijck", G, weight.double(), G).reshape(36, 8, 24)
    torch.testing.assert_close(winograd.transform_weight(weight).double(), expected, rtol=1e-6, atol=1e-6)


@needs_kernels
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_the_direct_convolution(isa, two_threads, shape):
    x, weight, _ = _data(shape)
    if shape[1] % winograd.VECTOR_WIDTH[_isa_level()] or shape[2] % winograd.VECTOR_WIDTH[_isa_level()]:
        pytest.skip("channels not a multiple of this instruction set's vector")
    got = winograd.conv2d(x, weight, None, None, None, None, False, None)
    assert got.is_contiguous(memory_format=torch.channels_last) and got.shape == (shape[0], shape[2], *shape[3:])
    _close(got, F.conv2d(x, weight, padding=1))


@needs_kernels
@pytest.mark.parametrize("kind", ["bias_relu", "affine_add_relu", "relu_residual", "alpha_only"])
def test_epilogue_is_applied_to_every_output(isa, kind):
    x, weight, g = _data((3, 32, 32, 9, 6))
    y = F.conv2d(x, weight, padding=1)
    vec = lambda: torch.randn(32, generator=g)  # noqa: E731
    like = lambda: torch.randn(y.shape, generator=g).contiguous(memory_format=torch.channels_last)  # noqa: E731
    ep = {"bias_relu": dict(beta=vec(), relu=True),
          "affine_add_relu": dict(alpha=vec(), beta=vec(), add=like(), add_scale=vec(), relu=True),
          "relu_residual": dict(relu=True, residual=like()),
          "alpha_only": dict(alpha=vec())}[kind]
    with torch.inference_mode():
        got = epilogue.conv2d(x, weight, None, 1, 1, 1, 1, **ep)
    _close(got, epilogue.reference(y, **ep))


@needs_kernels
def test_few_tiles_and_a_large_transform_run_the_direct_convolution():
    """U of 176 x 176 channels (4.5 MB) for 4 tiles: PyTorch's convolution computes it (exactly
    F.conv2d's values), then the epilogue; with 64 tiles the transform pays (Winograd's rounding)."""
    for n, exact in ((1, True), (16, False)):
        x, weight, g = _data((n, 176, 176, 8, 8))
        beta = torch.randn(176, generator=g)
        got = winograd.conv2d(x, weight, None, beta, None, None, True, None)
        expected = F.relu(F.conv2d(x, weight, padding=1) + beta.view(1, -1, 1, 1))
        _close(got, expected)
        assert torch.equal(got, expected) == exact


@needs_kernels
def test_what_it_takes_and_refuses(monkeypatch):
    x, weight, _ = _data((1, 16, 16, 6, 6))
    assert winograd.takes(x, weight, 1, 1, 1, 1)
    assert not winograd.takes(x, weight, 2, 1, 1, 1)                    # stride 2
    assert not winograd.takes(x, weight, 1, 0, 1, 1)                    # no padding
    assert not winograd.takes(x, weight, 1, 1, 2, 1)                    # dilated
    assert not winograd.takes(x, weight[:, :4], 1, 1, 1, 4)             # grouped
    assert not winograd.takes(x.double(), weight.double(), 1, 1, 1, 1)  # float64
    assert not winograd.takes(x[:, :12], weight[:12, :12], 1, 1, 1, 1)  # 12 channels
    assert not winograd.takes(x, torch.randn(16, 16, 5, 5), 1, 2, 1, 1)  # 5x5
    monkeypatch.setenv("MGIAD_WINOGRAD", "off")
    assert not winograd.takes(x, weight, 1, 1, 1, 1)
    monkeypatch.setenv("MGIAD_WINOGRAD", "maybe")
    with pytest.warns(RuntimeWarning, match="MGIAD_WINOGRAD='maybe'"):
        runtime._warn_once.cache_clear()
        assert winograd.takes(x, weight, 1, 1, 1, 1)


@needs_kernels
def test_operator_arguments_are_checked():
    x, weight, _ = _data((1, 16, 16, 6, 6))
    U, isa = winograd.transform_weight(weight), runtime.isa()
    run = lambda *a: _ops().winograd_conv3x3(*a, None, None, None, None, False, None, isa)  # noqa: E731
    with pytest.raises(RuntimeError, match="channels_last"):
        run(x.contiguous(), weight, U)
    with pytest.raises(RuntimeError, match="transform"):
        run(x, weight, U[:, :8])
    with pytest.raises(RuntimeError, match="weight"):
        run(x, weight[:, :8], U)
    x12 = torch.randn(1, 12, 6, 6).contiguous(memory_format=torch.channels_last)
    w12 = torch.randn(12, 12, 3, 3)
    with pytest.raises(RuntimeError, match="multiples"):
        run(x12, w12, winograd.transform_weight(w12))
    with pytest.raises(RuntimeError, match="3, 3"):
        winograd.transform_weight(torch.randn(4, 4, 5, 5))
    empty = run(torch.randn(0, 16, 6, 6).contiguous(memory_format=torch.channels_last), weight, U)
    assert empty.shape == (0, 16, 6, 6)


def test_inference_convs_replace_convolutions_that_would_run_on_pytorch():
    shared = nn.Conv2d(16, 16, 3, padding=1)
    on_kernels = GroupedConv3x3(16, 16, 3, padding=1, groups=4, bias=False)
    on_kernels.use_kernels = True
    model = nn.Sequential(shared, nn.ReLU(), shared, InferenceConv2d(16, 16, 1),
                          GroupedConv3x3(16, 16, 3, padding=1, groups=4, bias=False), on_kernels)
    use_inference_convs(model)
    assert type(model[0]) is InferenceConv2d and model[0] is model[2]
    assert type(model[4]) is InferenceConv2d  # kernels off: it would run F.conv2d
    assert type(model[5]) is GroupedConv3x3
    x = torch.randn(2, 16, 5, 5, requires_grad=True)
    model(x).sum().backward()  # a gradient wanted: PyTorch's operators
    assert x.grad is not None and shared.weight.grad is not None


@needs_kernels
def test_optimized_models_run_their_dense_convolutions_on_it(monkeypatch):
    """ResNet18's 3x3 stride-1 convolutions and MGiaD's coarsest channel level; the weight
    transform is computed once, when the trace is frozen; MGIAD_WINOGRAD=0 turns it off."""
    for name, kwargs in (("resnet18", {}), ("mgiad", dict(width_mult=1, coarse_channels=32, group_size=4))):
        model = mgiad.create_model(name, num_classes=10, **kwargs).eval()
        graph = str(optimize_for_inference(model).runner.inlined_graph)
        assert "winograd_conv3x3" in graph and "winograd_weight" not in graph, name
    monkeypatch.setenv("MGIAD_WINOGRAD", "0")
    graph = str(optimize_for_inference(model).runner.inlined_graph)
    assert "winograd" not in graph
