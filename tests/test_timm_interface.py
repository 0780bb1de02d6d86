"""timm's model interface, for every registered architecture, against timm's documented semantics:
features_only / out_indices / feature_info, forward_head(pre_logits), num_features, num_classes=0
and reset_classifier(0), global_pool, drop_rate / drop_path_rate, no_weight_decay and parameter
groups, group_matcher, set_grad_checkpointing, forward_features' memory format, torch.jit."""
import re

import pytest
import torch
import torch.nn.functional as F

import mgiad
from mgiad.models import param_groups_weight_decay

SMALL = {
    "mgiad": dict(widths=(8, 16, 32), coarse_channels=4, group_size=4),
    "mgnet": dict(widths=(8, 16, 32), smoothing_steps=2),
    "mgic": dict(widths=(8, 16, 32), coarse_channels=4, group_size=4),
    "resnet18": dict(width_mult=0.125),
    "resnet20": dict(width_mult=0.5),
}
ARCHITECTURES = mgiad.list_models()


def small(name, **kwargs):
    torch.manual_seed(0)
    return mgiad.create_model(name, in_chans=3, **{**SMALL[name], **kwargs})


def test_every_registered_architecture_is_covered():
    assert sorted(SMALL) == ARCHITECTURES


@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_features_only_maps_match_feature_info(name, stem):
    full = small(name, stem=stem)
    levels = len(full.feature_info)
    model = small(name, stem=stem, features_only=True)
    x = torch.randn(2, 3, 64, 48)
    maps = model(x)
    info = model.feature_info
    assert isinstance(maps, list) and len(maps) == levels == len(info.channels())
    assert info.out_indices == tuple(range(levels))
    assert [m.shape[1] for m in maps] == info.channels() == [d["num_chs"] for d in full.feature_info]
    for m, r in zip(maps, info.reduction()):
        assert m.shape[2:] == (-(-64 // r), -(-48 // r))  # stride-2 layers round up
    first = 4 if stem == "imagenet" else 1
    assert info.reduction() == [first * 2 ** l for l in range(levels)]
    modules = dict(model.named_modules())
    assert all(n in modules for n in info.module_names())
    assert maps[-1].shape[1] == full.num_features
    assert not any(k.startswith("head.") for k in model.state_dict())  # no classifier


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_out_indices_select_levels_and_equal_the_module_outputs(name):
    model = small(name, features_only=True, out_indices=(-1, 1)).eval()
    assert model.feature_info.out_indices == (len(model.feature_info) - 1, 1)
    seen = {}
    hooks = [dict(model.named_modules())[n].register_forward_hook(
        lambda mod, inp, out, n=n: seen.__setitem__(n, out if torch.is_tensor(out) else out[0]))
        for n in model.feature_info.module_names()]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = model(x)
    for h in hooks:
        h.remove()
    assert [m.shape[1] for m in maps] == model.feature_info.channels()
    for m, n in zip(maps, model.feature_info.module_names()):
        torch.testing.assert_close(m, seen[n])
    with pytest.raises(ValueError, match="out_indices"):
        small(name, features_only=True, out_indices=(0, 9))
    with pytest.raises(ValueError, match="features_only"):
        small(name, out_indices=(0,))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_forward_head_pre_logits_and_headless_model(name):
    model = small(name, num_classes=5).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        logits = model(x)
    assert features.shape[1] == model.num_features
    assert pooled.shape == (3, model.num_features)
    torch.testing.assert_close(pooled, features.mean((2, 3)))
    torch.testing.assert_close(logits, model.get_classifier()(pooled))
    headless = small(name, num_classes=0).eval()
    headless.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(headless(x), pooled)
    model.reset_classifier(0)
    assert model.num_classes == 0 and isinstance(model.get_classifier(), torch.nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(model(x), pooled)
    model.reset_classifier(4)
    assert model(x).shape == (3, 4) and model.config["num_classes"] == 4


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_global_pool_choices(name):
    x = torch.randn(2, 3, 32, 32)
    model = small(name, num_classes=0, global_pool="max").eval()
    with torch.no_grad():
        features = model.forward_features(x)
        torch.testing.assert_close(model(x), features.amax((2, 3)))
        model.reset_classifier(0, global_pool="")
        torch.testing.assert_close(model(x), features)  # no pooling: the feature map
    with pytest.raises(ValueError, match="num_classes=0"):
        small(name, num_classes=3, global_pool="")
    with pytest.raises(ValueError, match="global_pool"):
        small(name, global_pool="mean")


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_drop_rate_and_drop_path_act_only_while_training(name):
    x = torch.randn(8, 3, 32, 32)
    plain = small(name)
    dropping = small(name, drop_rate=0.5, drop_path_rate=0.5)
    dropping.load_state_dict(plain.state_dict())
    for m in (plain, dropping):
        m.eval()
    with torch.no_grad():
        torch.testing.assert_close(dropping(x), plain(x))
    rates = [getattr(m, "drop_path") for m in dropping.modules()
             if isinstance(getattr(m, "drop_path", None), float)]
    assert rates and rates[0] == 0.0 and rates[-1] == pytest.approx(0.5)
    assert rates == sorted(rates)
    dropping.train()
    torch.manual_seed(1)
    with torch.no_grad():
        pooled = dropping.forward_head(dropping.forward_features(x), pre_logits=True)
    assert (pooled == 0).any()  # dropout on the pooled features
    out = dropping(x)
    out.square().sum().backward()  # drop path trains through the reference code
    with pytest.raises(ValueError, match="drop_path_rate"):
        small(name, drop_path_rate=1.5)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_no_weight_decay_param_groups_and_group_matcher(name):
    model = small(name)
    assert isinstance(model.no_weight_decay(), set)
    no_decay, decay = param_groups_weight_decay(model, 0.05)
    assert no_decay["weight_decay"] == 0 and decay["weight_decay"] == 0.05
    assert all(p.ndim <= 1 for p in no_decay["params"]) and all(p.ndim > 1 for p in decay["params"])
    assert len(no_decay["params"]) + len(decay["params"]) == len(list(model.parameters()))
    for coarse in (False, True):
        matcher = model.group_matcher(coarse=coarse)
        rules = matcher["blocks"] if isinstance(matcher["blocks"], list) else [(matcher["blocks"], None)]
        groups = {}
        for n, _ in model.named_parameters():  # as timm's group_with_matcher orders them
            if re.match(matcher["stem"], n):
                key = (0,)
            else:
                hit = [(m, suffix) for m, suffix in ((re.match(r, n), s) for r, s in rules) if m]
                key = ((1,) + tuple(map(float, hit[0][0].groups())) + tuple(hit[0][1] or ())
                       if hit else (2,))
            groups.setdefault(key, []).append(n)
        heads = groups.pop((2,))
        assert heads and all(n.startswith("head.") for n in heads)
        assert len(groups) >= (1 + len(model.feature_info) if coarse else 3)
    coarse = model.group_matcher(coarse=True)["blocks"]
    assert len(coarse) >= len(model.feature_info) - 1


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_set_grad_checkpointing_gives_the_same_gradients(name):
    x = torch.randn(4, 3, 32, 32)
    grads = []
    for enable in (False, True):
        model = small(name)
        model.set_grad_checkpointing(enable)
        assert model.grad_checkpointing is enable
        model(x).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_forward_features_keeps_the_input_memory_format(name):
    model = small(name).eval()
    with torch.no_grad():
        out = model.forward_features(torch.randn(2, 3, 32, 32))
        assert out.is_contiguous()
        out.view(2, -1)  # a plain NCHW tensor
        nhwc = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        assert model.forward_features(nhwc).is_contiguous(memory_format=torch.channels_last)
        one = mgiad.create_model(name, in_chans=1, **SMALL[name]).eval()
        assert one.forward_features(torch.randn(2, 1, 32, 32)).is_contiguous()


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_torch_jit_script_refuses_with_a_clear_message_and_trace_works(name):
    model = small(name).eval()
    with pytest.raises(TypeError, match="torch.jit.trace"):
        torch.jit.script(model)
    x = torch.randn(2, 3, 32, 32)
    traced = torch.jit.trace(model, x, check_trace=False)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))


def test_pretrained_features_and_pooling_change_nothing_else():
    name = mgiad.list_pretrained()[0]
    full = mgiad.create_model(name, pretrained=True)
    assert full.training  # as timm: ready to fine-tune
    features = mgiad.create_model(name, pretrained=True, features_only=True, out_indices=(-1,))
    x = torch.randn(2, full.in_chans, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(features.eval()(x)[0], full.eval().forward_features(x))
    pooled = mgiad.create_model(name, pretrained=True, num_classes=0, global_pool="max").eval()
    with torch.no_grad():
        torch.testing.assert_close(pooled(x), F.adaptive_max_pool2d(full.forward_features(x), 1).flatten(1))
