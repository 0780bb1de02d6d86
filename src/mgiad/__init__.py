"""mgiad: multigrid in all dimensions - MGiaD, MgNet, MGIC and ResNet in PyTorch.

>>> import mgiad
>>> model = mgiad.create_model("mgiad", num_classes=10, width_mult=3, group_size=8)
>>> mgiad.count_parameters(model)  # paper table 1: 1,270k
1264714

Trained weights ship with the package (see :mod:`mgiad.pretrained`): ``mgiad.list_pretrained()``
names them, ``mgiad.create_model(name, pretrained=True)`` loads one offline.
"""
from . import models  # noqa: F401  (registers the architectures)
from .counting import FlopCount, count_flops, count_parameters
from .hub import from_pretrained
from .registry import create_model, list_models, model_arguments, register_model

__version__ = "0.1.0"


def list_pretrained(pattern: str | None = None) -> list[str]:
    """Sorted names of the pretrained models shipped with mgiad (``"<architecture>.<tag>"``),
    optionally filtered by a shell-style pattern; see :func:`mgiad.pretrained.list_pretrained`."""
    from .pretrained import list_pretrained as names  # imported on use: `python -m mgiad.pretrained`
    return names(pattern)

__all__ = ["create_model", "list_models", "list_pretrained", "model_arguments", "register_model",
           "count_parameters", "count_flops", "FlopCount", "from_pretrained", "__version__"]
