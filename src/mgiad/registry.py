"""Model registry: ``@register_model``, ``create_model(name, **kwargs)``, ``list_models()``.

A model joins the zoo by decorating its class or builder function; its keyword arguments and their
defaults (the signature) are the model's configuration. ``create_model`` stores the resolved
arguments on the model as ``model.config`` (JSON-serialisable), so it can be rebuilt exactly.

``create_model`` also takes the names of the pretrained weights shipped with mgiad
(``"<architecture>.<tag>"``, see :mod:`mgiad.pretrained` and ``mgiad.list_pretrained()``):
``create_model(name, pretrained=True)`` builds the recorded architecture and loads the weights.
"""
from __future__ import annotations

import fnmatch
import os
import inspect
from typing import Any, Callable

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "model_arguments"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable:
    """Decorator adding a model class or builder function to the registry under ``name``."""
    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = builder
        return builder
    return add


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally filtered by a shell-style pattern."""
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(list_models())}")
    return _MODELS[name]


def model_arguments(name: str) -> dict[str, Any]:
    """The keyword arguments of model ``name`` with their defaults."""
    return {p.name: p.default for p in inspect.signature(_builder(name)).parameters.values()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; unknown names or arguments raise ``ValueError``.

    ``name`` may also be a pretrained name (``mgiad.list_pretrained()``): the architecture it
    records is built and, with ``pretrained=True``, its weights are loaded (offline, from the
    package); the model then has ``pretrained_cfg`` and ``preprocessing``. ``kwargs`` must agree
    with the recorded architecture, except ``num_classes`` (a new classifier, as in timm) and the
    execution options ``impl`` / ``recompute``. See :func:`mgiad.pretrained.create_pretrained`.
    """
    if pretrained or name not in _MODELS:
        from .pretrained import create_pretrained  # raises for names that are neither
        return create_pretrained(name, pretrained=bool(pretrained), **kwargs)
    return _create_registered(name, **kwargs)


# Sizes beyond these are refused before anything is allocated (a config.json or checkpoint from
# elsewhere is untrusted input); MGIAD_ALLOW_LARGE_MODELS=1 lifts the limits for a user who means it
MAX_PARAMETERS = 2_000_000_000
MAX_INT_ARGUMENT = 1_000_000   # any integer argument (channels, classes, steps, ...)
MAX_LIST_ARGUMENT = 64         # entries of a list argument (resolution levels, ...)
MAX_STEP_ARGUMENT = 1_000      # smoothing steps, blocks (each is a module: Python-time, not memory)
_STEP_ARGUMENTS = ("smoothing_steps", "blocks", "pre_smooth", "post_smooth")


def check_model_size(name: str, arguments: dict[str, Any]) -> None:
    """Refuse absurd sizes: argument values first (cheap), then the weight count of the model
    built on the ``meta`` device (no memory). ``ValueError`` naming the override."""
    if os.environ.get("MGIAD_ALLOW_LARGE_MODELS") == "1":
        return
    hint = "; set MGIAD_ALLOW_LARGE_MODELS=1 if you mean it"
    for key, value in arguments.items():
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, (list, tuple)) and len(values) > MAX_LIST_ARGUMENT:
            raise ValueError(f"model {name!r}: {key} has {len(values)} entries (limit "
                             f"{MAX_LIST_ARGUMENT}){hint}")
        limit = MAX_STEP_ARGUMENT if key in _STEP_ARGUMENTS else MAX_INT_ARGUMENT
        for v in values:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > limit:
                raise ValueError(f"model {name!r}: {key}={value!r} is beyond the limit {limit:,}"
                                 f"{hint}")
    import torch
    with torch.device("meta"):
        probe = _builder(name)(**arguments)
    weights = sum(p.numel() for p in probe.parameters())
    if weights > MAX_PARAMETERS:
        raise ValueError(f"model {name!r} with these arguments has {weights:,} weights (limit "
                         f"{MAX_PARAMETERS:,}){hint}")


def _create_registered(name: str, **kwargs: Any) -> nn.Module:
    builder = _builder(name)
    valid = model_arguments(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"model {name!r} got unknown argument(s) {', '.join(unknown)}; "
                         f"valid arguments: {', '.join(valid)}")
    arguments = {**valid, **kwargs}
    check_model_size(name, arguments)
    model = builder(**arguments)
    model.config = {"model": name, **{k: _jsonable(v) for k, v in arguments.items()}}
    return model
