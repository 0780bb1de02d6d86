"""TrainConfig.compile: what each value means on each device, and the CLI's --compile."""
import pytest

from mgiad.cli import build_parser
from mgiad.cli.train import _train_config
from mgiad.training import COMPILE_MODES, TrainConfig, compile_mode, resolve_config


def test_unset_compiles_in_cuda_graphs_on_one_gpu_only():
    assert compile_mode(None, "cuda") == "reduce-overhead"
    assert compile_mode(None, "cuda", distributed=True) is None  # torchrun: eager DDP
    assert compile_mode(None, "cpu") is None


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_explicit_values_win_everywhere(device):
    for off in (False, "off", "none", "false"):
        assert compile_mode(off, device) is None
    for on in (True, "true", "on"):
        assert compile_mode(on, device) == "default"
    for mode in COMPILE_MODES:
        assert compile_mode(mode, device) == mode


def test_unknown_mode_is_refused_when_the_config_is_resolved():
    with pytest.raises(ValueError, match="compile must be"):
        resolve_config(TrainConfig(compile="fastest"))
    assert resolve_config(TrainConfig(compile="max-autotune")).compile == "max-autotune"


@pytest.mark.parametrize("argv, expected", [([], None), (["--compile"], True),
                                            (["--compile", "off"], "off"),
                                            (["--compile", "reduce-overhead"], "reduce-overhead")])
def test_cli_flag(argv, expected):
    args = build_parser().parse_args(["train", *argv])
    assert _train_config(args).compile == expected
