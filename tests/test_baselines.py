"""The baselines exactly as their references build them: MGIC as its authors' code
(BGUCompSci/MultigridInChannelsCNNs, ``ResNetMGGroup`` + ``MgBlockDwGroup``, basic blocks, grouped
point-wise transfers), ResNet20 with He et al.'s option-A shortcuts, MgNet's transfers as in the
MGiaD authors' code."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mgiad
from mgiad.models.mgic import MGICCycle, mgic_levels
from mgiad.models.resnet import ZeroPadShortcut

# (widths, blocks per level, group size, threshold) -> weights of the reference code's network on a
# 3-channel 32x32 input with a 3x3 stride-1 stem and 10 classes, counted by instantiating it
MGIC_REFERENCE_COUNTS = [
    ((64, 128, 256, 256), 2, 8, 64, 523_978),
    ((64, 128, 256, 256), 2, 4, 64, 348_874),
    ((64, 128, 256, 256), 2, 16, 64, 874_186),
    ((16, 32, 64), 3, 4, 16, 56_122),
    ((16, 32, 64), 2, 8, 32, 68_730),
    ((128, 256, 512, 512), 2, 8, 64, 980_362),
    ((32, 64, 128, 256), (1, 2, 3, 1), 8, 64, 311_530),
]


@pytest.mark.parametrize("widths, blocks, group_size, threshold, weights", MGIC_REFERENCE_COUNTS)
def test_mgic_weight_count_equals_the_reference_code(widths, blocks, group_size, threshold, weights):
    model = mgiad.create_model("mgic", widths=widths, blocks=blocks, group_size=group_size,
                               coarse_channels=threshold)
    assert mgiad.count_parameters(model) == weights


def test_mgic_threshold_halves_at_least_once_and_while_the_half_reaches_it():
    assert mgic_levels(128, 64) == [128, 64, 32]   # the reference: threshold 64 -> 32 coarsest
    assert mgic_levels(64, 64) == [64, 32]
    assert mgic_levels(16, 64) == [16, 8]          # every block restricts at least once
    assert mgic_levels(256, 16) == [256, 128, 64, 32, 16, 8]
    assert mgic_levels(24, 8) == [24, 12, 6]
    with pytest.raises(ValueError, match="cannot be halved"):
        mgic_levels(20, 4)                          # 20 -> 10 -> 5 >= 4 must halve again: odd


def test_mgic_block_structure_and_forward_by_hand():
    """Nothing but R on the way down; coarsest a dense basic block; up: x + bn(P(x_c' - x_c)),
    then a basic block of two grouped 3x3 convolutions."""
    torch.manual_seed(0)
    cycle = MGICCycle(32, threshold=16, group_size=8)
    assert isinstance(cycle.R, nn.Conv2d) and cycle.R.kernel_size == (1, 1) and cycle.R.groups == 4
    assert (cycle.R.in_channels, cycle.R.out_channels) == (32, 16)
    P, norm_P = cycle.P
    assert P.groups == 4 and (P.in_channels, P.out_channels) == (16, 32) and P.kernel_size == (1, 1)
    assert isinstance(norm_P, nn.BatchNorm2d)
    assert cycle.smooth.conv1[0].groups == 4 and cycle.smooth.conv2[0].groups == 4
    inner = cycle.coarse                            # 16 >= 16: restricts again, to 8 (dense)
    assert isinstance(inner, MGICCycle) and inner.R.groups == 2
    assert inner.coarse.conv1[0].groups == 1 and inner.coarse.conv1[0].in_channels == 8
    cycle.eval()
    for m in cycle.modules():                       # non-trivial BatchNorms
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.5, 0.5)

    def basic(block, z):
        return F.relu(z + block.conv2(block.conv1(z)))

    def by_hand(c, x):
        x_c = c.R(x)
        x_c_new = basic(c.coarse, x_c) if not isinstance(c.coarse, MGICCycle) else by_hand(c.coarse, x_c)
        return basic(c.smooth, x + c.P[1](c.P[0](x_c_new - x_c)))

    x = torch.randn(2, 32, 6, 6)
    torch.testing.assert_close(cycle(x), by_hand(cycle, x))


def test_mgic_stage_transition_is_depthwise_strided_with_bn_relu():
    model = mgiad.create_model("mgic", widths=(16, 32), blocks=1, group_size=4, coarse_channels=8)
    transition = model.blocks[1]
    conv, bn, relu = transition
    assert conv.stride == (2, 2) and conv.groups == 16 and conv.out_channels == 32
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)


def test_mgic_bad_group_size_is_a_clear_error():
    with pytest.raises(ValueError, match="group_size"):
        mgiad.create_model("mgic", widths=(48,), group_size=32, coarse_channels=16)


def test_resnet20_option_a_is_the_papers_270k():
    a = mgiad.create_model("resnet20")
    b = mgiad.create_model("resnet20", shortcut="B")
    assert mgiad.count_parameters(a) == 269_722
    assert mgiad.count_parameters(b) == 272_474
    assert a.config["shortcut"] == "A" and mgiad.create_model("resnet18").config["shortcut"] == "B"
    shortcuts = [blk.shortcut for blk in a.blocks if not isinstance(blk.shortcut, nn.Identity)]
    assert len(shortcuts) == 2 and all(isinstance(s, ZeroPadShortcut) for s in shortcuts)
    assert a(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="shortcut must be one of"):
        mgiad.create_model("resnet20", shortcut="C")


def test_option_a_shortcut_subsamples_and_pads_zero_channels():
    x = torch.randn(2, 16, 8, 8)
    y = ZeroPadShortcut(16, 32, stride=2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2]) and not y[:, 16:].any()


def test_mgnet_transfers_as_the_authors_code():
    """transfer_norm=False: u' = Pi(u), f' = R(relu(f - A u)) + A'(u'): no BN/ReLU after them."""
    torch.manual_seed(0)
    kw = dict(widths=(8, 16), smoothing_steps=1)
    plain, code = (mgiad.create_model("mgnet", transfer_norm=t, **kw) for t in (True, False))
    assert mgiad.count_parameters(plain) - mgiad.count_parameters(code) == 4 * 16
    transfer = code.transfers[0]
    assert isinstance(transfer.Pi, nn.Conv2d) and isinstance(transfer.R, nn.Conv2d)
    u, r = torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8)
    A_coarse = code.smoothers[1].A
    u_c, f_c, A_u_c = transfer(u, r, A_coarse)
    torch.testing.assert_close(u_c, transfer.Pi(u))
    torch.testing.assert_close(A_u_c, A_coarse(u_c))
    torch.testing.assert_close(f_c, transfer.R(F.relu(r)) + A_coarse(u_c))
    assert code(torch.randn(2, 3, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize("num_classes, in_chans, stem, exclude_head, paper_k", [
    (10, 3, "cifar", False, 2751), (10, 1, "cifar", True, 2747), (100, 3, "cifar", False, 2774),
    (200, 3, "cifar", False, 2799), (1000, 3, "imagenet", False, 3013)])
def test_mgnet_code_variant_gives_the_papers_counts_to_the_thousand(num_classes, in_chans, stem,
                                                                    exclude_head, paper_k):
    from mgiad.paper import level1_transfer_weights
    model = mgiad.create_model("mgnet", num_classes=num_classes, in_chans=in_chans, stem=stem,
                               transfer_norm=False)
    weights = mgiad.count_parameters(model, exclude_head=exclude_head)
    assert round((weights + level1_transfer_weights(model)) / 1000) == paper_k
    default = mgiad.create_model("mgnet", num_classes=num_classes, in_chans=in_chans, stem=stem)
    assert round((mgiad.count_parameters(default, exclude_head=exclude_head)
                  + level1_transfer_weights(default)) / 1000) != paper_k


def test_reproduce_trains_the_papers_mgnet_rows_with_the_code_transfers():
    from mgiad.paper import rows
    mgnet_rows = [r for r in rows() if r.model == "mgnet"]
    assert len(mgnet_rows) == 7 and all(r.train_kwargs["transfer_norm"] is False for r in mgnet_rows)
