"""The model zoo: shapes, gradients, weight sharing, configuration errors, tracing, state dicts."""
import pytest
import torch
from torch import nn

import mgiad
from mgiad.models import SiC, channel_levels

SMALL = {  # small members of each family, for the slower checks
    "mgiad": dict(widths=(16, 32, 64), coarse_channels=8, group_size=4),
    "mgnet": dict(widths=(16, 32, 64), smoothing_steps=2),
    "mgic": dict(widths=(16, 32, 64), coarse_channels=8, group_size=4),
    "resnet18": dict(width_mult=0.25),
    "resnet20": dict(),
}


def test_list_models_names_every_family():
    assert mgiad.list_models() == ["mgiad", "mgic", "mgnet", "resnet18", "resnet20"]
    assert mgiad.list_models("mg*") == ["mgiad", "mgic", "mgnet"]


@pytest.mark.parametrize("name", ["mgiad", "mgic", "mgnet", "resnet18", "resnet20"])
@pytest.mark.parametrize("size", [28, 32, 64, 224])
def test_forward_backward_every_geometry(name, size):
    torch.manual_seed(0)
    model = mgiad.create_model(name, num_classes=7, in_chans=3)
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()
    logits.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
@pytest.mark.parametrize("name", list(SMALL))
def test_stems_and_channels(name, stem):
    model = mgiad.create_model(name, num_classes=3, in_chans=1, stem=stem, **SMALL[name])
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 3)
    assert model.num_classes == 3 and model.in_chans == 1


def test_wrong_in_chans_for_input_is_a_clear_error():
    model = mgiad.create_model("mgiad", in_chans=1, **SMALL["mgiad"])
    with pytest.raises(ValueError, match="in_chans=1"):
        model(torch.randn(2, 3, 32, 32))


def test_sic_shares_A_and_B_between_pre_and_post_smoothing():
    sic = SiC(64, coarse_channels=16, group_size=8, pre_smooth=2, post_smooth=3)
    calls = {"A": 0, "B": 0}
    sic.A.register_forward_hook(lambda *a: calls.__setitem__("A", calls["A"] + 1))
    sic.B.register_forward_hook(lambda *a: calls.__setitem__("B", calls["B"] + 1))
    f = torch.randn(2, 64, 8, 8)
    for step in [*sic.pre, *sic.post, *sic.coarse.pre, *sic.coarse.post]:
        step.impl = "reference"  # the fast training path calls B's weight directly (no hooks)
    sic(f, torch.zeros_like(f), torch.zeros_like(f))
    assert calls["B"] == 5  # one B-hat tensor for all 2 + 3 steps
    # A(u) once per step except the first (given), plus the residual before restriction
    assert calls["A"] == 5
    convs = {n for n, m in sic.named_children() if isinstance(m, nn.Conv2d)}
    assert convs == {"A", "B", "P"}  # the smoothing steps hold no convolution of their own
    assert not any(isinstance(m, nn.Conv2d) for m in [*sic.pre.modules(), *sic.post.modules()])
    assert len(sic.pre) == 2 and len(sic.post) == 3  # each step has its own BatchNorms
    assert sic.pre[0].norm_residual[0] is not sic.post[0].norm_residual[0]


def test_mgnet_sharing_modes():
    ab = mgiad.create_model("mgnet", widths=(16, 32), smoothing_steps=3, share="AB")
    a = mgiad.create_model("mgnet", widths=(16, 32), smoothing_steps=3, share="A")
    assert isinstance(ab.smoothers[0].B, nn.Conv2d)
    assert len(a.smoothers[0].B) == 3
    per_B = 9 * 16 * 16 + 9 * 32 * 32
    assert mgiad.count_parameters(a) - mgiad.count_parameters(ab) == 2 * per_B


def test_channel_levels_follow_the_halving_rule():
    assert channel_levels(192, 64) == [192, 96]
    assert channel_levels(768, 64) == [768, 384, 192, 96]
    assert channel_levels(64, 64) == [64]
    assert channel_levels(32, 64) == [32]
    assert channel_levels(127, 64) == [127]  # half is below c_K: no halving needed
    with pytest.raises(ValueError, match="cannot be halved"):
        channel_levels(50, 8)


def test_mgiad_structure_matches_the_paper_conventions():
    model = mgiad.create_model("mgiad", width_mult=3, group_size=8, coarse_channels=64)
    sic = model.smoothers[0]                      # 192 channels -> [192, 96]
    assert sic.A.groups == 192 // 8 and sic.B.groups == 24
    assert sic.coarse.A.groups == 1 and sic.coarse.coarse is None   # dense coarsest level
    assert sic.transfer.R[0].kernel_size == (1, 1) and sic.transfer.R[0].groups == 96
    assert sic.P.groups == 96 and isinstance(sic.P, nn.Conv2d)      # no BN after P-hat
    R = model.transfers[0].R[0]
    assert (R.kernel_size, R.stride, R.groups, R.out_channels) == ((3, 3), (2, 2), 192, 384)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    normed = mgiad.create_model("mgiad", prolong_norm=True)
    assert isinstance(normed.smoothers[1].P[1], nn.BatchNorm2d)


def test_group_size_at_least_the_channel_level_means_fully_coupled():
    model = mgiad.create_model("mgiad", widths=(32, 64), coarse_channels=16, group_size=64)
    assert model.smoothers[0].A.groups == 1           # 32 channels, g_s=64
    assert model.smoothers[1].A.groups == 1           # 64 channels, g_s=64: one group
    assert model.smoothers[1].coarse.A.groups == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(group_size=48), "group_size=48 does not divide the 128 channels"),
    (dict(group_size=0), "group_size"),
    (dict(group_size=-4), "group_size"),
    (dict(coarse_channels=0), "coarse_channels"),
    (dict(width_mult=0.3), "width_mult=0.3 gives fractional channels"),
    (dict(width_mult=-1), "width_mult"),
    (dict(widths=(64, 0)), "widths"),
    (dict(widths=()), "widths"),
    (dict(num_classes=-1), "num_classes"),  # 0 is valid: no classifier (timm)
    (dict(in_chans=0), "in_chans"),
    (dict(pre_smooth=-1), "pre_smooth"),
    (dict(pre_smooth=0, post_smooth=0), "pre_smooth"),
    (dict(stem="vit"), "stem"),
    (dict(widths=(100,), coarse_channels=8), "cannot be halved"),
])
def test_bad_mgiad_configurations(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mgiad.create_model("mgiad", **kwargs)


@pytest.mark.parametrize("name, kwargs, match", [
    ("mgnet", dict(share="B"), "share"),
    ("mgnet", dict(smoothing_steps=0), "smoothing_steps"),
    ("mgnet", dict(smoothing_steps=(2, 2)), "smoothing_steps has 2 entries"),
    ("mgnet", dict(group_size=48), "group_size=48"),
    ("mgic", dict(blocks=0), "blocks"),
    ("resnet18", dict(width_mult=0.1), "fractional"),
])
def test_bad_baseline_configurations(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mgiad.create_model(name, **kwargs)


def test_unknown_model_or_argument_lists_the_valid_ones():
    with pytest.raises(ValueError, match="available models: mgiad, mgic, mgnet, resnet18, resnet20"):
        mgiad.create_model("resnet50")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) group_sizes; valid arguments: .*group_size"):
        mgiad.create_model("mgiad", group_sizes=8)


def test_config_records_every_argument_as_json():
    import json
    model = mgiad.create_model("mgiad", width_mult=2, widths=(32, 64))
    config = json.loads(json.dumps(model.config))
    assert config["model"] == "mgiad" and config["width_mult"] == 2 and config["widths"] == [32, 64]
    assert set(config) - {"model"} == set(mgiad.model_arguments("mgiad"))
    rebuilt = mgiad.create_model(config.pop("model"), **config)
    assert mgiad.count_parameters(rebuilt) == mgiad.count_parameters(model)


@pytest.mark.parametrize("name", list(SMALL))
def test_state_dict_round_trip(name):
    torch.manual_seed(0)
    a = mgiad.create_model(name, **SMALL[name])
    torch.manual_seed(1)
    b = mgiad.create_model(name, **SMALL[name])
    x = torch.randn(2, 3, 32, 32)
    a.train()(x)  # moves BN running statistics away from their initial values
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_reset_classifier():
    model = mgiad.create_model("mgiad", **SMALL["mgiad"])
    model.reset_classifier(5)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5) and model.num_classes == 5


def test_jit_trace_and_fx_match_eager():
    torch.manual_seed(0)
    model = mgiad.create_model("mgiad", **SMALL["mgiad"]).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    traced = torch.jit.trace(model, x)
    torch.testing.assert_close(traced(x), expected)
    graph = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(graph(x), expected)
    other = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(graph(other), model(other))


def test_torch_compile_forward_and_backward_match_eager():
    torch.manual_seed(0)
    model = mgiad.create_model("mgiad", widths=(16, 32), coarse_channels=8, group_size=4)
    x = torch.randn(2, 3, 16, 16)
    expected = model(x)
    expected.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model)
    out = compiled(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    out.sum().backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, g, rtol=1e-3, atol=1e-4)
