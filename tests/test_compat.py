"""The module names of earlier versions stay importable (mgiad._compat): each is the module that
holds the code now, the same object, so attributes and monkeypatching agree."""
import importlib
import subprocess
import sys

import pytest

import mgiad

OLD_NAMES = {
    "mgiad.train": "mgiad.training", "mgiad.export": "mgiad.deploy.export",
    "mgiad.report": "mgiad.experiments.report", "mgiad.hub": "mgiad.models._hub",
    "mgiad.checkpoint": "mgiad.utils.checkpoint", "mgiad.counting": "mgiad.utils.counting",
    "mgiad.fast": "mgiad.layers.fast", "mgiad.recompute": "mgiad.layers.recompute",
    "mgiad.paper": "mgiad.experiments.paper", "mgiad.predict": "mgiad.deploy.predict",
    "mgiad.pretrained": "mgiad.experiments.release", "mgiad.registry": "mgiad.models",
    "mgiad.bench": "mgiad.perf.bench", "mgiad.rundir": "mgiad.training.rundir",
}


@pytest.mark.parametrize("old, new", sorted(OLD_NAMES.items()))
def test_old_module_names_are_the_new_modules(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)
    assert getattr(mgiad, old.split(".")[1]) is importlib.import_module(new)
    assert importlib.import_module(new).__name__ == new  # the alias does not rename the module


def test_old_import_paths_of_users():
    from mgiad.export import fuse_bn
    from mgiad.train import TrainConfig, train
    from mgiad.registry import create_model
    from mgiad.pretrained import add_run, list_pretrained
    from mgiad.report import write_report
    from mgiad.experiments import plan
    assert fuse_bn is mgiad.layers.fold.fuse_bn and TrainConfig is mgiad.training.TrainConfig
    assert train is mgiad.training.train and create_model is mgiad.create_model
    assert list_pretrained is mgiad.list_pretrained and callable(add_run)
    assert callable(write_report) and callable(plan)


def test_unknown_names_still_raise():
    with pytest.raises(AttributeError):
        mgiad.no_such_module
    with pytest.raises(ImportError):
        importlib.import_module("mgiad.no_such_module")


def test_import_mgiad_loads_no_application():
    code = ("import sys, mgiad; mgiad.create_model('resnet20'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mgiad' and "
            "m.split('.')[:2][-1] in ('training', 'experiments', 'perf', 'cli')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_python_dash_m_of_an_old_name_runs_the_new_module():
    out = subprocess.run([sys.executable, "-m", "mgiad.pretrained", "list"], capture_output=True,
                         text=True, check=True)
    assert mgiad.list_pretrained()[0] in out.stdout


def test_the_public_api():
    for name in ("create_model", "list_models", "list_pretrained", "count_parameters",
                 "count_flops", "from_pretrained", "save_pretrained", "load_model",
                 "model_arguments", "register_model", "__version__"):
        assert hasattr(mgiad, name), name
