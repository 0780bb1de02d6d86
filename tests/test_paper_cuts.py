"""First-hour paper cuts: --version, flag help and choices, install hints, --amp on the CPU,
the train-accuracy pass announced, the packaging metadata."""
import re
import tomllib

import pytest
import torch

from mgiad.cli import main
from mgiad.cli.main import build_parser
from mgiad.training import train
from mgiad.training.distributed import Runtime
from mgiad.training.evaluate import autocast
from mgiad.utils.errors import install_hint
from train_helpers import REPO, tiny_config


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert re.fullmatch(r"mgiad \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def help_of(flag: str) -> str:
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    action = next(a for a in train_parser._actions if flag in a.option_strings)
    return action


@pytest.mark.parametrize("flag, words", [("--shortcut", ["zero", "projection"]),
                                         ("--transfer-norm", ["BN", "ReLU", "R"])])
def test_model_flags_explain_themselves(flag, words):
    text = help_of(flag).help
    assert len(text.split()) > 8 and all(w in text for w in words)


def test_fixed_value_flags_offer_choices(capsys):
    assert list(help_of("--stem").choices) == ["cifar", "imagenet"]
    assert list(help_of("--shortcut").choices) == ["A", "B"]
    with pytest.raises(SystemExit):
        main(["train", "--stem", "vit"])
    assert "invalid choice" in capsys.readouterr().err


def test_train_duration_in_help_agrees_with_readme(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "~1.5 min" in capsys.readouterr().out and "~1.5 min" in (REPO / "README.md").read_text()


def test_install_hints_keep_the_constraints_and_never_fetch_mgiad_from_the_index():
    hint = install_hint("plot", "matplotlib")
    assert 'pip install -c constraints.txt -e ".[plot]"' in hint
    assert "pip install -c constraints.txt matplotlib" in hint
    for path in (REPO / "src" / "mgiad").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"pip install '?mgiad\[", text), path
        assert not re.search(r"pip install (?!-c constraints\.txt)", text), path


def test_amp_on_the_cpu_is_bf16_autocast():
    with autocast(Runtime(torch.device("cpu")), True):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast(Runtime(torch.device("cpu")), False):
        assert not torch.is_autocast_enabled("cpu")


def test_train_says_what_it_does_while_it_measures_train_accuracy(tmp_path):
    lines = []
    train(tiny_config(tmp_path / "run", epochs=1, amp=True), log=lambda *a, **k: lines.append(
        " ".join(map(str, a))))
    assert "bf16 autocast" in lines[0]
    measuring = next(i for i, l in enumerate(lines) if "measuring the train accuracy" in l)
    assert "1,437 training images" in lines[measuring]
    assert lines[-1].startswith("done:") and measuring < len(lines) - 1


def test_project_license_is_an_spdx_string():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"


_DDP_STRIDES = """
import os, sys, warnings
import torch, torch.distributed as dist
import mgiad
kwargs = {"mgiad": dict(widths=(8, 16), coarse_channels=4, group_size=2), "mgnet": dict(widths=(8, 16)),
          "mgic": dict(widths=(8, 16), coarse_channels=4, group_size=2), "resnet20": {}}
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
for name, kw in kwargs.items():
    model = mgiad.create_model(name, in_chans=1, **kw)  # NHWC fast path, C++ kernels
    net = torch.nn.parallel.DistributedDataParallel(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            net(torch.randn(4, 1, 32, 32)).sum().backward()
    warned = any("bucket view strides" in str(w.message) for w in caught)
    same = all(p.grad.stride() == p.stride() for p in model.parameters())
    print(name, "warned" if warned else "quiet", "same" if same else "different", flush=True)
# no process group teardown: gloo's destructor can wait on a thread that waits for the GIL
os._exit(0)
"""


def test_gradients_have_their_parameters_strides_so_ddp_does_not_warn(tmp_path):
    """DDP over every architecture's fast path: no "bucket view strides" warning, and gradients
    laid out as their parameters. In a process of its own, under a deadline."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _DDP_STRIDES, str(tmp_path / "store")], capture_output=True,
                         text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [f"{n} quiet same" for n in ("mgiad", "mgnet", "mgic", "resnet20")], \
        out.stdout + out.stderr[-2000:]


def test_estimates_leave_out_the_first_step_and_its_one_time_costs(monkeypatch):
    from mgiad.training import progress
    clock = iter([0.0, 60.0] + [60.0 + 0.1 * i for i in range(1, 40)])  # a 60 s first step
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    lines = []
    reporter = progress.ProgressReporter(lines.append, total_steps=1000, done_steps=0)
    reporter.start_epoch()
    for _ in range(21):
        reporter.step()
    assert len(lines) == 1 and "0.100 s/step" in lines[0] and "1m 38s" in lines[0], lines


def test_kernels_are_prepared_before_the_timed_steps(tmp_path, monkeypatch):
    import mgiad.kernels
    lines = []
    real = mgiad.kernels.available
    monkeypatch.setattr(mgiad.kernels, "available", lambda: lines.append("kernels") or real())
    train(tiny_config(tmp_path / "run", epochs=1), log=lines.append)
    assert lines.index("kernels") < next(i for i, l in enumerate(lines) if l.startswith("plan:"))
