"""Pretrained details and README's backbone example: which checkpoint of a run loads,
pretrained_cfg through save_pretrained, and the example run as written."""
import json
import re

import pytest
import torch

import mgiad
from interop_helpers import write_run
from mgiad.utils.checkpoint import load_checkpoint, save_checkpoint
from train_helpers import REPO

SMALL = dict(widths=(8, 16), coarse_channels=4, group_size=2)


def test_readme_backbone_example_runs_as_written():
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Use MGiaD as a backbone"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "features_only=True" in code and "pre_logits=True" in code
    exec(compile(code, "README.md", "exec"), {})


def test_a_run_directory_loads_best_or_last_as_asked(tmp_path):
    model = mgiad.create_model("mgiad", in_chans=1, **SMALL)
    run = write_run(tmp_path / "run", model, "digits")
    state = load_checkpoint(run / "last.pt")
    state["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(state, run / "last.pt")  # the final model differs from the best one
    last, best = state["model"], load_checkpoint(run / "best.pt")["model"]
    x = torch.randn(2, 1, 32, 32)
    loaded = {c: mgiad.from_pretrained(run, checkpoint=c) for c in ("best", "last")}
    default = mgiad.from_pretrained(run)
    with torch.no_grad():
        assert torch.equal(default(x), loaded["best"](x))
        assert not torch.equal(loaded["last"](x), loaded["best"](x))
    assert torch.equal(loaded["last"].state_dict()["stem.conv.0.weight"], last["stem.conv.0.weight"])
    assert torch.equal(loaded["best"].state_dict()["stem.conv.0.weight"], best["stem.conv.0.weight"])
    with pytest.raises(ValueError, match="checkpoint must be one of best, last"):
        mgiad.load_model(run, checkpoint="final")
    (run / "best.pt").unlink()
    with pytest.raises(FileNotFoundError, match="no best.pt"):
        mgiad.load_model(run, checkpoint="best")


def test_pretrained_cfg_survives_save_pretrained(tmp_path):
    name = mgiad.list_pretrained()[0]
    model = mgiad.create_model(name, pretrained=True)
    model.save_pretrained(tmp_path / "out")
    again = mgiad.from_pretrained(tmp_path / "out")
    assert again.pretrained_cfg == model.pretrained_cfg == mgiad.models.pretrained_cfg(name)
    assert json.loads((tmp_path / "out" / "pretrained_cfg.json").read_text())["name"] == name
    plain = mgiad.create_model("mgiad", **SMALL)
    plain.save_pretrained(tmp_path / "out")  # an untrained model: no stale pretrained_cfg
    assert not hasattr(mgiad.from_pretrained(tmp_path / "out"), "pretrained_cfg")


def test_features_only_models_round_trip(tmp_path):
    model = mgiad.create_model("mgnet", widths=(8, 16), features_only=True, out_indices=(1,))
    model.save_pretrained(tmp_path / "f")
    again = mgiad.from_pretrained(tmp_path / "f")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(again(x)[0], model.eval()(x)[0])
    assert again.feature_info.out_indices == (1,)
