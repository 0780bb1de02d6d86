"""The module names of earlier versions (``mgiad.train``, ``mgiad.export``, ...) as aliases of
the modules that hold their code now, so that old imports keep working::

    from mgiad.train import TrainConfig      # is mgiad.training.TrainConfig
    from mgiad.export import fuse_bn         # mgiad.deploy.export (fuse_bn: mgiad.layers.fold)
    python -m mgiad.experiments.release add RUN_DIR   # runs mgiad.experiments.release

An alias is the module itself (same object: attributes, identity, monkeypatching), imported on
first use; nothing heavy is imported by ``import mgiad``. New code imports the new names.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys

# old name (under mgiad.) -> the module that now holds its code
ALIASES = {
    "bench": "mgiad.perf.bench",
    "checkpoint": "mgiad.utils.checkpoint",
    "cli_experiments": "mgiad.cli",
    "cli_interop": "mgiad.cli",
    "counting": "mgiad.utils.counting",
    "export": "mgiad.deploy.export",
    "fast": "mgiad.layers.fast",
    "hub": "mgiad.models._hub",
    "max_batch": "mgiad.perf.max_batch",
    "memory": "mgiad.perf.memory",
    "paper": "mgiad.experiments.paper",
    "predict": "mgiad.deploy.predict",
    "pretrained": "mgiad.experiments.release",
    "progress": "mgiad.training.progress",
    "recompute": "mgiad.layers.recompute",
    "registry": "mgiad.models",
    "report": "mgiad.experiments.report",
    "report_figures": "mgiad.experiments.report.figures",
    "rundir": "mgiad.training.rundir",
    "train": "mgiad.training",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.spec, self.loader = module.__spec__, getattr(module, "__loader__", None)
        return module

    def exec_module(self, module) -> None:
        # the import system set the alias's spec on the shared module: give it its own back
        module.__spec__, module.__loader__ = self.spec, self.loader

    def get_code(self, fullname: str):  # `python -m mgiad.<old name>` runs the new module
        return compile(f"import runpy\nrunpy.run_module({self.target!r}, run_name='__main__', "
                       "alter_sys=True)\n", f"<alias of {self.target}>", "exec")


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != __package__ or name not in ALIASES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(ALIASES[name]))


def install() -> None:
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())


def alias(name: str):
    """The module behind old name ``name`` (``AttributeError`` if there is none)."""
    if name not in ALIASES:
        raise AttributeError(f"module {__package__!r} has no attribute {name!r}")
    return importlib.import_module(f"{__package__}.{name}")
