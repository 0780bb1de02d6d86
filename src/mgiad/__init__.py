"""mgiad: multigrid in all dimensions - MGiaD, MgNet, MGIC and ResNet in PyTorch.

>>> import mgiad
>>> model = mgiad.create_model("mgiad", num_classes=10, width_mult=3, group_size=8)
>>> mgiad.count_parameters(model)  # paper table 1: 1,270k
1264714
"""
from . import models  # noqa: F401  (registers the architectures)
from .counting import FlopCount, count_flops, count_parameters
from .hub import from_pretrained
from .registry import create_model, list_models, model_arguments, register_model

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "model_arguments", "register_model",
           "count_parameters", "count_flops", "FlopCount", "from_pretrained", "__version__"]
