"""What ``mgiad bench`` measures: model specifications (``name:key=value,...``)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch


__all__ = ["ModelSpec", "parse_spec", "DEFAULT_MODELS"]


@dataclass
class ModelSpec:
    """A model to benchmark: a registered name and its keyword arguments."""
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self):
        if not self.label:
            args = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
            self.label = f"{self.name}({args})" if args else self.name

    def build(self, num_classes: int) -> torch.nn.Module:
        from ..models import create_model
        return create_model(self.name, num_classes=num_classes, **self.kwargs)


_PYTHON_SPELLINGS = {"True": True, "False": False, "None": None}


def _literal(key: str, text: str) -> Any:
    """A value as JSON (``[16,32,64]``, ``true``, ``3``), Python's ``True`` / ``False`` / ``None``,
    else the bare word (``reference``); a list or object that does not parse is an error."""
    if text in _PYTHON_SPELLINGS:
        return _PYTHON_SPELLINGS[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if text and (text[0] in "[{(\"" or text[-1] in "]})\""):
            raise ValueError(f"{key}={text}: not a valid value (a list is written [16,32,64])") from None
        return text


def parse_spec(text: str) -> ModelSpec:
    """``name`` or ``name:key=value,key=value`` (values parsed as JSON where they can be, so
    ``widths=[16,32,64]`` and ``impl=reference`` both work)."""
    name, _, rest = text.partition(":")
    kwargs: dict[str, Any] = {}
    if rest:
        depth, start, parts = 0, 0, []
        for i, ch in enumerate(rest + ","):  # split on commas outside brackets
            depth += (ch in "[(") - (ch in "])")
            if ch == "," and depth == 0:
                parts.append(rest[start:i])
                start = i + 1
        if depth:
            raise ValueError(f"unbalanced brackets in {text!r}")
        for part in filter(None, parts):
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise ValueError(f"bad model argument {part!r} in {text!r}; expected key=value")
            kwargs[key.strip()] = _literal(key.strip(), value.strip())
    if "num_classes" in kwargs:  # the labels of the random batch follow --num-classes
        raise ValueError(f"{text!r}: give the classes with --num-classes, not in the model spec")
    from ..models import model_arguments
    valid = model_arguments(name.strip())  # raises for unknown models
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"model {name!r} got unknown argument(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(valid)}")
    return ModelSpec(name.strip(), kwargs)


# The default set: ResNet18, MgNet^{A,B}, MGiaD(lambda=3, c_K=64, g_s=4 and 8), CIFAR size.
DEFAULT_MODELS = ("resnet18", "mgnet",
                  "mgiad:width_mult=3,coarse_channels=64,group_size=4",
                  "mgiad:width_mult=3,coarse_channels=64,group_size=8")
