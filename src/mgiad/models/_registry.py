"""Model registry: ``@register_model``, ``list_models()``, ``model_arguments(name)``.

A model joins the zoo by decorating its class or builder function; its keyword arguments and their
defaults (the signature) are the model's configuration. ``create_model`` stores the resolved
arguments on the model as ``model.config`` (JSON-serialisable), so it can be rebuilt exactly.

This module is a leaf: it knows the builders and builds registered architectures
(:func:`create_registered`, with size limits for untrusted configurations). :mod:`._factory` builds models
(``create_model``), :mod:`._pretrained` the shipped weights.
"""
from __future__ import annotations

import fnmatch
import inspect
from typing import Any, Callable

from torch import nn

__all__ = ["register_model", "list_models", "model_arguments", "is_registered", "builders",
           "create_registered", "check_model_size", "jsonable"]

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


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registered architecture (not a pretrained name)."""
    return name in _MODELS


def builders() -> dict[str, Callable[..., nn.Module]]:
    """The registered builders by name (a copy), e.g. to list every model argument."""
    return dict(_MODELS)


def builder(name: str) -> Callable[..., nn.Module]:
    """The builder of registered model ``name``; ``ValueError`` listing the models."""
    return _builder(name)


def jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    return value


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
    from ..utils.limits import large_allowed, limit_hint
    if large_allowed():
        return
    hint = limit_hint()
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


def create_registered(name: str, **kwargs: Any) -> nn.Module:
    builder = _builder(name)
    valid = model_arguments(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"model {name!r} got unknown argument(s) {', '.join(unknown)}; "
                         f"valid arguments: {', '.join(valid)}")
    arguments = {**valid, **kwargs}
    check_model_size(name, arguments)
    model = builder(**arguments)
    model.config = {"model": name, **{k: jsonable(v) for k, v in arguments.items()}}
    return model
