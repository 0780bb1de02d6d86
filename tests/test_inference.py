"""Inference with BatchNorm folded: the convolution kernels' epilogues (mgiad.kernels.epilogue)
against the same operations in PyTorch, the folded layers (mgiad.layers.inference) in every model,
and optimize_for_inference (the traced executor) against the unfolded eval-mode model."""
import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

import mgiad
from mgiad.deploy.optimize import InferenceModel, optimize_for_inference
from mgiad.kernels import build, epilogue, runtime
from mgiad.layers import inference
from mgiad.layers.fold import FoldedSmoothingStep, fuse_bn

needs_kernels = pytest.mark.skipif(build.missing_tool() is not None or not runtime.available(),
                                   reason="the C++ kernels cannot run here")

# (C_in, C_out, kernel, stride, groups, H, W): grouped 3x3 with g 2, 4, 8, 16 (C % 16 != 0 too),
# a dense 16-channel one, depthwise stride 2 with multiplier 1 and 2, 1x1 pairs both ways
CONVS = [(48, 48, 3, 1, 12, 9, 10), (20, 20, 3, 1, 5, 7, 8), (24, 24, 3, 1, 12, 5, 5),
         (40, 40, 3, 1, 5, 6, 3), (32, 32, 3, 1, 2, 4, 9), (16, 16, 3, 1, 1, 6, 7),
         (24, 48, 3, 2, 24, 9, 10), (40, 40, 3, 2, 40, 8, 5), (24, 12, 1, 1, 12, 5, 6),
         (12, 24, 1, 1, 12, 5, 6), (6, 6, 3, 1, 3, 1, 1),
         # maps large enough for the kernels to split them between threads (small ones run on one)
         (48, 48, 3, 1, 12, 40, 36), (24, 48, 3, 2, 24, 64, 60), (24, 12, 1, 1, 12, 64, 64)]
EPILOGUES = ["none", "bias_relu_residual", "affine_add_relu", "add_residual", "alpha_only"]


def _epilogue(kind, y, g):
    c = y.shape[1]
    vec = lambda: torch.randn(c, generator=g)  # noqa: E731
    like = lambda: torch.randn(y.shape, generator=g)  # noqa: E731  (NCHW: the wrapper converts)
    return {"none": {}, "bias_relu_residual": dict(beta=vec(), relu=True, residual=like()),
            "affine_add_relu": dict(alpha=vec(), beta=vec(), add=like(), add_scale=vec(), relu=True),
            "add_residual": dict(add=like(), residual=like()),
            "alpha_only": dict(alpha=vec())}[kind]


@needs_kernels
@pytest.mark.parametrize("shape", CONVS)
@pytest.mark.parametrize("kind", EPILOGUES)
def test_conv_epilogue_matches_pytorch(isa, shape, kind):
    c_in, c_out, k, stride, groups, h, w = shape
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(2, c_in, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(c_out, c_in // groups, k, k, generator=g)
    y = F.conv2d(x, weight, None, stride, k // 2, 1, groups)
    ep = _epilogue(kind, y, g)
    with torch.inference_mode():
        got = epilogue.conv2d(x, weight, None, stride, k // 2, 1, groups, **ep)
    torch.testing.assert_close(got, epilogue.reference(y, **ep), rtol=1e-4, atol=1e-4)
    assert got.is_contiguous(memory_format=torch.channels_last)


@needs_kernels
def test_conv_epilogue_on_outputs_past_the_caches(isa):
    """Outputs from 16 MiB on are written with non-temporal stores, epilogue included."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 64, 264, 256, generator=g).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(64, 4, 3, 3, generator=g), torch.randn(64, generator=g)
    r = torch.randn(1, 64, 264, 256, generator=g)
    with torch.inference_mode():
        got = epilogue.conv2d(x, weight, bias, 1, 1, 1, 16, relu=True, residual=r)
    expected = epilogue.reference(F.conv2d(x, weight, None, 1, 1, 1, 16), beta=bias, relu=True,
                                  residual=r)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


# transfers and the standalone epilogue with outputs past 16 MiB: each block is computed into a
# buffer and the epilogue streams it out (C_in, C_out, kernel, groups, N, H, W; None: the epilogue)
STREAMED = [(64, 128, 3, 64, 8, 130, 128), (128, 128, 3, 128, 8, 130, 128),
            (96, 192, 1, 96, 2, 128, 96), (192, 96, 1, 96, 4, 128, 96), (None, 96, None, None, 4, 128, 96)]


@needs_kernels
@pytest.mark.parametrize("shape", STREAMED, ids=["dw-x2", "dw-x1", "pair-expand", "pair-reduce", "standalone"])
@pytest.mark.parametrize("kind", ["affine_add_relu", "bias_relu_residual"])
def test_epilogue_streams_large_outputs_exactly(isa, shape, kind):
    """Past 16 MiB the transfers and the standalone epilogue write through the caches' bypass;
    the values are those of PyTorch's convolution and the reference epilogue."""
    c_in, c_out, k, groups, n, h, w = shape
    g = torch.Generator().manual_seed(c_out + h)
    if c_in is None:  # the epilogue of an existing map, into a new tensor
        y = torch.randn(n, c_out, h, w, generator=g).contiguous(memory_format=torch.channels_last)
        ep = _epilogue(kind, y, g)
        with torch.inference_mode():
            got = epilogue.apply(y, **ep)
    else:
        x = torch.randn(n, c_in, h, w, generator=g).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(c_out, c_in // groups, k, k, generator=g)
        stride = 2 if k == 3 else 1
        y = F.conv2d(x, weight, None, stride, k // 2, 1, groups)
        ep = _epilogue(kind, y, g)
        with torch.inference_mode():
            got = epilogue.conv2d(x, weight, None, stride, k // 2, 1, groups, **ep)
    assert y.numel() * 4 >= 16 * 2**20
    torch.testing.assert_close(got, epilogue.reference(y, **ep), rtol=1e-4, atol=1e-4)
    assert got.is_contiguous(memory_format=torch.channels_last)


def _step_reference(u, f, A, A_u, s1, t1, B, b2):
    """Eq. (5) with BatchNorm folded, in PyTorch operations."""
    shape, groups = (1, -1, 1, 1), f.shape[1] // B.shape[1]
    if u is None:
        z = F.relu(s1.view(shape) * f + t1.view(shape))
    else:
        A_u = F.conv2d(u, A, padding=1, groups=groups) if A_u is None else A_u
        z = F.relu(s1.view(shape) * (f - A_u) + t1.view(shape))
    out = F.relu(F.conv2d(z, B, b2, padding=1, groups=groups))
    return out if u is None else u + out


@needs_kernels
@pytest.mark.parametrize("mode", ["A", "A_u", "u=0"])
@pytest.mark.parametrize("shape", [(1, 48, 37, 41), (1, 48, 7, 9), (3, 48, 7, 9), (5, 20, 6, 5),
                                   (4, 64, 130, 128)],
                         ids=["by-rows", "one-small-image", "by-images", "channel-tail", "streamed"])
def test_fused_smoothing_step_matches_pytorch(isa, two_threads, mode, shape):
    """One call for a folded smoothing step: z stays in each thread's cache (an image per thread),
    or with fewer images than threads two passes over rows; outputs past 16 MiB are streamed."""
    n, c, h, w = shape
    gs = 4
    g = torch.Generator().manual_seed(n + c)
    nhwc = lambda *s: torch.randn(*s, generator=g).contiguous(memory_format=torch.channels_last)  # noqa: E731
    u, f = nhwc(n, c, h, w), nhwc(n, c, h, w)
    A, B = torch.randn(c, gs, 3, 3, generator=g) * 0.2, torch.randn(c, gs, 3, 3, generator=g) * 0.2
    s1, t1, b2 = torch.rand(c, generator=g) + 0.5, torch.randn(c, generator=g), torch.randn(c, generator=g)
    A_u = F.conv2d(u, A, padding=1, groups=c // gs) if mode == "A_u" else None
    args = dict(u=None if mode == "u=0" else u, f=f, A=A if mode == "A" else None, A_u=A_u)
    with torch.inference_mode():
        got = epilogue.smoothing_step(**args, s1=s1, t1=t1, B=B, b2=b2)
    expected = _step_reference(args["u"], f, A, A_u, s1, t1, B, b2)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert got.is_contiguous(memory_format=torch.channels_last)


@needs_kernels
def test_fused_smoothing_step_refuses_inconsistent_arguments():
    ops, isa = torch.ops.mgiad_kernels, runtime.isa()
    x = torch.randn(2, 16, 4, 4).contiguous(memory_format=torch.channels_last)
    w, v = torch.randn(16, 4, 3, 3), torch.ones(16)
    with pytest.raises(RuntimeError, match="give A or A_u, not both"):
        ops.conv3x3_smoothing_step(x, x, w, x, v, v, v, w, v, isa)
    with pytest.raises(RuntimeError, match="A or A_u without u"):
        ops.conv3x3_smoothing_step(None, x, w, None, v, v, v, w, v, isa)
    with pytest.raises(RuntimeError, match="u and f shapes differ"):
        ops.conv3x3_smoothing_step(x[:1], x, w, None, v, v, v, w, v, isa)
    with pytest.raises(RuntimeError, match="same group size"):
        ops.conv3x3_smoothing_step(x, x, torch.randn(16, 2, 3, 3), None, v, v, v, w, v, isa)
    # convolutions the kernel does not take (32 channels per group): not fused (None), the caller
    # runs two passes
    y, w32, v32 = torch.randn(2, 32, 4, 4), torch.randn(32, 32, 3, 3), torch.ones(32)
    assert epilogue.smoothing_step(y, y, w32, None, v32, v32, w32, v32) is None


@needs_kernels
def test_optimized_mgiad_runs_each_grouped_smoothing_step_as_one_call(two_threads):
    model = mgiad.create_model("mgiad", num_classes=10, width_mult=1, coarse_channels=16,
                               group_size=4).eval()
    fast = optimize_for_inference(model)
    graph = str(fast.runner.inlined_graph)
    assert "conv3x3_smoothing_step" in graph
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)


@needs_kernels
def test_conv_epilogue_runs_on_the_kernels_in_inference_only(monkeypatch):
    """Without a gradient the kernel's operator computes convolution and epilogue in one call;
    with a gradient wanted (or the kernels off) PyTorch does, and the values agree."""
    from mgiad.kernels import grouped_conv
    calls = []
    ops = grouped_conv.GROUPED_3X3
    monkeypatch.setattr(grouped_conv, "GROUPED_3X3", ops._replace(
        epilogue=lambda *a: calls.append("epilogue") or ops.epilogue(*a)))
    x = torch.randn(2, 16, 5, 5).contiguous(memory_format=torch.channels_last)
    weight, bias, r = torch.randn(16, 4, 3, 3), torch.randn(16), torch.randn(2, 16, 5, 5)
    expected = epilogue.reference(F.conv2d(x, weight, None, 1, 1, 1, 4), beta=bias, relu=True,
                                  residual=r)
    run = lambda: epilogue.conv2d(x, weight, bias, 1, 1, 1, 4, relu=True, residual=r)  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(run(), expected, rtol=1e-4, atol=1e-4)
    assert calls == ["epilogue"]
    weight.requires_grad_(True)
    out = run()
    out.sum().backward()  # PyTorch's operations, with autograd
    assert weight.grad is not None and calls == ["epilogue"]
    torch.testing.assert_close(out.detach(), expected, rtol=1e-4, atol=1e-4)
    monkeypatch.setenv("MGIAD_KERNELS", "0")
    with torch.no_grad():
        torch.testing.assert_close(run(), expected, rtol=1e-4, atol=1e-4)
    assert calls == ["epilogue"]


class _Spy:
    def __init__(self, ops, calls):
        self.ops, self.calls = ops, calls

    def __getattr__(self, name):
        op = getattr(self.ops, name)
        return lambda *a: self.calls.append(name) or op(*a)


@needs_kernels
@pytest.mark.parametrize("in_place", [False, True])
def test_standalone_epilogue(in_place, monkeypatch):
    g = torch.Generator().manual_seed(3)
    y = torch.randn(2, 24, 3, 5, generator=g).contiguous(memory_format=torch.channels_last)
    ep = dict(alpha=torch.randn(24, generator=g), beta=torch.randn(24, generator=g),
              add=torch.randn(2, 24, 3, 5, generator=g), relu=True,
              residual=torch.randn(2, 24, 3, 5, generator=g))
    expected = epilogue.reference(y, **ep)
    calls = []
    monkeypatch.setattr(epilogue, "operators", lambda: _Spy(torch.ops.mgiad_kernels, calls))
    with torch.inference_mode():
        got = epilogue.apply_(y, **ep) if in_place else epilogue.apply(y, **ep)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert calls == ["epilogue_" if in_place else "epilogue"]
    assert (got.data_ptr() == y.data_ptr()) == in_place


@needs_kernels
def test_empty_maps():
    x = torch.empty(0, 16, 5, 5).contiguous(memory_format=torch.channels_last)
    ep = dict(alpha=torch.ones(16), add=torch.empty(0, 16, 5, 5), add_scale=torch.ones(16),
              relu=True, residual=torch.empty(0, 16, 5, 5))
    with torch.inference_mode():
        assert epilogue.conv2d(x, torch.randn(16, 4, 3, 3), None, 1, 1, 1, 4, **ep).shape == x.shape
        assert epilogue.apply(x, **ep).shape == x.shape
        assert epilogue.conv2d(x, torch.randn(32, 1, 3, 3), None, 2, 1, 1, 16).shape == (0, 32, 3, 3)


@needs_kernels
def test_epilogue_arguments_are_checked():
    y = torch.randn(1, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    with pytest.raises(TypeError, match="unknown epilogue arguments"):
        epilogue.apply(y, bias=torch.ones(8))
    with pytest.raises(TypeError, match="bias or beta"):
        epilogue.conv2d(y, torch.randn(8, 4, 3, 3), torch.ones(8), 1, 1, 1, 2, beta=torch.ones(8))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="8 channels"):
        epilogue.apply(y, beta=torch.ones(5))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="output's shape"):
        epilogue.apply(y, residual=torch.ones(1, 8, 4, 5))
    with torch.inference_mode(), pytest.raises(RuntimeError, match="add_scale without add"):
        epilogue.apply(y, add_scale=torch.ones(8))


def _trained_like(name, **kwargs):
    """A model with non-trivial BatchNorm statistics and affine parameters."""
    torch.manual_seed(0)
    model = mgiad.create_model(name, num_classes=7, **kwargs)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.uniform_(-0.2, 0.2, generator=g)
    return model.eval()


MODELS = [  # every registered architecture; MGiaD with dense 8/16 levels, imagenet stem, prolong_norm
    ("mgiad", dict(in_chans=1, widths=(16, 32, 64), group_size=4, coarse_channels=16)),
    ("mgiad", dict(widths=(16, 32), group_size=8, coarse_channels=8, prolong_norm=True,
                   stem="imagenet")),
    ("mgnet", dict(widths=(16, 32))),
    ("mgnet", dict(widths=(16, 32), group_size=8, transfer_norm=False)),
    ("mgic", dict(widths=(16, 32), coarse_channels=8)),
    ("resnet18", dict(width_mult=0.25)),
    ("resnet20", dict(in_chans=1)),
]


def test_every_architecture_is_covered():
    assert {name for name, _ in MODELS} == set(mgiad.list_models())


@pytest.mark.parametrize("name,kwargs", MODELS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(MODELS)])
def test_optimize_for_inference_matches_the_model(name, kwargs):
    model = _trained_like(name, **kwargs)
    before = copy.deepcopy(model.state_dict())
    fast = optimize_for_inference(model)
    assert isinstance(fast, InferenceModel) and fast.executor == "trace"
    assert fast.config == model.config and fast.num_classes == 7
    c = model.in_chans
    for shape in [(1, c, 32, 32), (3, c, 17, 23), (2, c, 8, 8), (2, c, 1, 1)]:
        for channels_last in (False, True):
            x = torch.randn(shape)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                expected = model(x)
            torch.testing.assert_close(fast(x), expected, rtol=1e-4, atol=1e-5)
    assert fast(torch.randn(0, c, 32, 32)).shape == (0, 7)  # an empty batch
    for key, value in model.state_dict().items():  # the model itself is untouched
        assert torch.equal(value, before[key]), key


def test_folded_steps_run_as_two_convolutions_with_epilogues(monkeypatch):
    """In a folded MGiaD every smoothing step goes through mgiad.layers.inference (the kernels'
    epilogues), and gives the values of the step as written."""
    model = _trained_like("mgiad", widths=(16, 32), group_size=4, coarse_channels=8)
    folded = fuse_bn(model)
    steps = [m for m in folded.modules() if isinstance(m, FoldedSmoothingStep)]
    assert steps and all(s.folded for s in steps)
    calls = []
    real = inference.smoothing_step
    monkeypatch.setattr(inference, "smoothing_step",
                        lambda step, *a: calls.append(step) or real(step, *a))
    x = torch.randn(2, 3, 16, 16)
    with torch.inference_mode():
        out, expected = folded(x), model(x)
    assert {id(s) for s in calls} == {id(s) for s in steps}
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    for s in steps:  # impl="reference": the step as written
        s.impl = "reference"
    calls.clear()
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-5)
    assert calls == []


def test_inference_model_options_and_errors(monkeypatch):
    model = _trained_like("mgiad", widths=(16, 32), group_size=4, coarse_channels=8)
    x = torch.randn(2, 3, 12, 12)
    with torch.inference_mode():
        expected = model(x)
    eager = optimize_for_inference(model, executor="eager")
    assert eager.executor == "eager"
    torch.testing.assert_close(eager(x), expected, rtol=1e-4, atol=1e-5)
    assert optimize_for_inference(eager) is eager
    with pytest.raises(ValueError, match="executor must be one of"):
        optimize_for_inference(model, executor="onnx")
    with pytest.raises(RuntimeError, match="cannot be trained"):
        eager.train()
    assert not eager.eval().training
    x.requires_grad_(True)
    assert not eager(x).requires_grad  # inference mode inside
    monkeypatch.setenv("MGIAD_KERNELS", "0")  # traced without the kernels: PyTorch's operators
    plain = optimize_for_inference(model, input_size=(12, 10))
    assert plain.executor == "trace"
    torch.testing.assert_close(plain(x.detach()), expected, rtol=1e-4, atol=1e-5)


def test_tracing_failure_falls_back_to_eager(monkeypatch):
    from mgiad.deploy import optimize

    def broken(*args):
        raise RuntimeError("no trace today")
    monkeypatch.setattr(optimize, "_trace", broken)
    model = _trained_like("resnet20", in_chans=1)
    with pytest.warns(RuntimeWarning, match="no trace today"):
        fast = optimize_for_inference(model)
    assert fast.executor == "eager"
    with pytest.raises(RuntimeError, match="no trace today"):
        optimize_for_inference(model, executor="trace")


def test_a_wrong_optimisation_is_refused(monkeypatch):
    """The check compares with the original model: a folding that changed the function fails."""
    from mgiad.deploy import optimize
    real = optimize.fuse_bn

    def wrong(model):
        folded = real(model)
        folded.head.fc.bias.data += 1.0
        return folded
    monkeypatch.setattr(optimize, "fuse_bn", wrong)
    with pytest.raises(RuntimeError, match="differs from the original"):
        optimize_for_inference(_trained_like("resnet20", in_chans=1))


def test_export_of_a_folded_model_sees_pytorch_operators():
    """Tracing for export (not for the executor) records aten convolutions, never our operators."""
    model = fuse_bn(_trained_like("mgiad", widths=(16, 32), group_size=4, coarse_channels=8))
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace's own
        traced = torch.jit.trace(model, torch.randn(1, 3, 8, 8), check_trace=False)
    graph = str(traced.inlined_graph)
    assert "mgiad_kernels" not in graph and "aten::_convolution" in graph
