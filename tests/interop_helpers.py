"""Helpers shared by test_hub, test_export and test_predict (small models, run directories)."""
import json
from pathlib import Path

import pytest
import torch

from mgiad.checkpoint import save_checkpoint
from mgiad.data import dataset_info


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny convolutions: several threads only contend with each other (and with other processes)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize_bn(model, seed=0):
    """Non-trivial BatchNorm statistics, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


def write_run(run_dir, model, dataset="digits"):
    """A run directory in the layout `mgiad train` writes (config.json, best.pt, last.pt)."""
    info = dataset_info(dataset)
    config = {"train": {}, "model": model.config["model"],
              "model_args": {k: v for k, v in model.config.items() if k != "model"},
              "dataset": info.name, "image_size": info.image_size, "mean": list(info.mean),
              "std": list(info.std), "num_classes": model.num_classes, "in_chans": model.in_chans}
    state = {"model": model.state_dict(), "optimizer": {}, "epoch": 1, "batch": 0, "best_acc": 50.0,
             "history": [], "rng": torch.get_rng_state(), "config": config}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / "config.json").write_text(json.dumps(config))
    save_checkpoint(state, Path(run_dir) / "best.pt")
    save_checkpoint(state, Path(run_dir) / "last.pt")
    return Path(run_dir)


def same_outputs(a, b, in_chans=3, size=32):
    x = torch.randn(2, in_chans, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))
