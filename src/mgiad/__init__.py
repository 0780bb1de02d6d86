"""mgiad: multigrid in all dimensions - MGiaD, MgNet, MGIC and ResNet in PyTorch.

>>> import mgiad
>>> model = mgiad.create_model("mgiad", num_classes=10, width_mult=3, group_size=8)
>>> mgiad.count_parameters(model)  # paper table 1: 1,270k
1264714

Trained weights ship with the package: ``mgiad.list_pretrained()`` names them,
``mgiad.create_model(name, pretrained=True)`` loads one offline, and ``mgiad.load_model(x)`` loads
any saved model (a shipped name, a ``save_pretrained`` folder, a run directory, a checkpoint).
"""
from . import _compat
from .models import (create_model, from_pretrained, list_models, list_pretrained, load_model,
                     model_arguments, register_model, save_pretrained)
from .deploy.optimize import optimize_for_inference
from .utils.counting import FlopCount, count_flops, count_parameters
from .version import __version__

_compat.install()  # the module names of earlier versions (mgiad.train, mgiad.export, ...)


def __getattr__(name: str):
    return _compat.alias(name)


__all__ = ["create_model", "list_models", "list_pretrained", "model_arguments", "register_model",
           "count_parameters", "count_flops", "FlopCount", "from_pretrained", "save_pretrained",
           "load_model", "optimize_for_inference", "__version__"]
