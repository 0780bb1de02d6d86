"""One naming scheme for a model configuration, in its three spellings.

* Run folders (``mgiad reproduce``): :func:`config_slug`, e.g. ``mgiad-w16.32.64-ck16-gs4``:
  the registry name, then each argument's abbreviation (:data:`ARG_ABBREVIATIONS`) and value.
* Report labels, in the paper's notation: :func:`display_name`, e.g. ``MGiaD 16-32-64``,
  ``MgNet^{A,B} 16-32-64 nu=3`` (widths and steps only where they differ from the defaults; the
  report's columns carry the rest).
* Pretrained names: ``"<architecture>.<tag>"`` (see :mod:`._pretrained`): :func:`architecture_name`
  uses the same abbreviations with the widths bare, as timm spells sizes (``mgiad_16_32_64_ck16_gs8``),
  and :func:`default_tag` names the training data and recipe (``fmnist_paper_e30``).
"""
from __future__ import annotations

import json
import re
from typing import Any

from ._registry import jsonable, list_models, model_arguments

__all__ = ["ARG_ABBREVIATIONS", "DATASET_TAGS", "RUNTIME_ARGS", "NAME_PATTERN", "config_slug",
           "architecture_name", "default_tag", "check_name", "plain", "display_name"]

# short names of model arguments in run-directory names (anything else: its own name)
ARG_ABBREVIATIONS = {"widths": "w", "width_mult": "x", "coarse_channels": "ck", "group_size": "gs",
                     "smoothing_steps": "nu", "share": "share", "blocks": "b", "pre_smooth": "pre",
                     "post_smooth": "post", "prolong_norm": "pn", "stem": "stem", "transfer_norm": "tn",
                     "shortcut": "sc"}
# dataset-implied arguments: not part of a configuration's name (the dataset is)
_DATASET_ARGS = ("num_classes", "in_chans", "stem", "prolong_norm")


def fmt_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ".".join(fmt_value(v) for v in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_slug(model: str, kwargs: dict[str, Any]) -> str:
    """A file-name-safe, deterministic name of a model configuration, e.g. ``mgiad-w16.32.64-ck16-gs4``."""
    order = list(ARG_ABBREVIATIONS)
    keys = sorted((k for k in kwargs if k not in _DATASET_ARGS),
                  key=lambda k: (order.index(k) if k in order else len(order), k))
    parts = [model] + [f"{ARG_ABBREVIATIONS.get(k, k)}{fmt_value(kwargs[k])}" for k in keys]
    return re.sub(r"[^A-Za-z0-9.+=_-]", "_", "-".join(parts))

# how a model runs or trains, not what it computes in eval mode: free to choose when loading,
# never in a name (drop_rate / drop_path_rate act only while training)
RUNTIME_ARGS = ("impl", "recompute", "drop_rate", "drop_path_rate")
# short dataset names of tags (timm: in1k)
DATASET_TAGS = {"fashion-mnist": "fmnist", "digits": "digits", "cifar10": "cifar10",
                "cifar100": "cifar100", "tiny-imagenet": "tinyin", "imagenet": "in1k"}
# the run directories' abbreviations, but widths bare, as timm spells sizes (mgiad_16_32_64)
_ABBREVIATIONS = {**ARG_ABBREVIATIONS, "widths": ""}
_ALWAYS_NAMED = {"mgiad": ("widths", "coarse_channels", "group_size"),
                 "mgnet": ("widths", "smoothing_steps"),
                 "mgic": ("widths", "coarse_channels", "group_size", "blocks")}
_NOT_NAMED = ("num_classes", "in_chans") + RUNTIME_ARGS
NAME_PATTERN = re.compile(r"^(?P<arch>[a-z][a-z0-9_]*)\.(?P<tag>[a-z0-9][a-z0-9_]*)$")


# ----------------------------------------------------------------------------------- names
def _name_part(value: Any) -> str:
    """A value in a pretrained name: :func:`fmt_value` lower-cased, ``_`` between list entries,
    ``p`` for a decimal point, ``m`` for a minus, nothing else but letters and digits."""
    if isinstance(value, (list, tuple)):
        return "_".join(_name_part(v) for v in value)
    return re.sub(r"[^a-z0-9]", "", fmt_value(value).lower().replace(".", "p").replace("-", "m"))


def plain(value: Any) -> Any:
    """JSON form (tuples -> lists) for comparing arguments with the recorded ones."""
    return json.loads(json.dumps(jsonable(value)))


def architecture_name(model: str, model_args: dict[str, Any]) -> str:
    """The ``<architecture>`` part of pretrained names for registered ``model`` built with
    ``model_args`` (see the module docstring), e.g. ``mgiad_16_32_64_ck16_gs8``."""
    defaults = model_arguments(model)
    unknown = sorted(set(model_args) - set(defaults))
    if unknown:
        raise ValueError(f"model {model!r} has no argument(s) {', '.join(unknown)}")
    args = {**defaults, **model_args}
    order = list(_ABBREVIATIONS)
    keys = [k for k in args if k not in _NOT_NAMED and (
        k in _ALWAYS_NAMED.get(model, ()) or plain(args[k]) != plain(defaults[k]))]
    keys.sort(key=lambda k: (order.index(k) if k in order else len(order), k))
    parts = [model] + [_ABBREVIATIONS.get(k, k.replace("_", "")) + _name_part(args[k]) for k in keys]
    return "_".join(p for p in parts if p)


def default_tag(dataset: str, epochs: int, seed: int = 0, recipe: str | None = None) -> str:
    """``<dataset>[_<recipe>]_e<epochs>[_s<seed>]``, e.g. ``fmnist_paper_e30``."""
    from ..data.info import canonical_name
    key = canonical_name(dataset)
    parts = [DATASET_TAGS.get(key, _name_part(key))]
    if recipe:
        parts.append(re.sub(r"[^a-z0-9]+", "_", recipe.lower()).strip("_"))
    parts.append(f"e{int(epochs)}")
    if seed:
        parts.append(f"s{int(seed)}")
    return "_".join(p for p in parts if p)


def check_name(name: str, architecture: str, dataset: str) -> None:
    match = NAME_PATTERN.match(name)
    if not match:
        raise ValueError(f"pretrained name {name!r} is not '<architecture>.<tag>' in lower-case "
                         "letters, digits and '_'")
    if match["arch"] != architecture:
        raise ValueError(f"pretrained name {name!r} must start with the architecture's name "
                         f"{architecture!r} (derived from its configuration)")
    ds = DATASET_TAGS.get(dataset, _name_part(dataset))
    if match["tag"] != ds and not match["tag"].startswith(ds + "_"):
        raise ValueError(f"the tag of {name!r} must start with its dataset, {ds!r} "
                         f"(e.g. {ds}_e30)")


def _default(model: str, name: str) -> Any:
    value = model_arguments(model).get(name) if model in list_models() else None
    return list(value) if isinstance(value, tuple) else value


def display_name(model: str, args: dict[str, Any]) -> str:
    """The model column: ``ResNet20``, ``MgNet^{A,B} 16-32-64 nu=3``, ``MGiaD 16-32-64``, ...

    The paper's notation (``^{A,B}``, ``nu``, ``g_s``) is kept as text here and in the CSV; the
    markdown prints it as ``MgNet<sup>A,B</sup>`` and the figures as mathtext."""
    widths = args.get("widths")
    suffix = ""
    if widths is not None and list(widths) != _default(model, "widths"):
        suffix = " " + "-".join(str(w) for w in widths)
    if model == "mgnet":
        name = "MgNet^{A,B}" if args.get("share", "AB") == "AB" else "MgNet^A"
        steps = args.get("smoothing_steps", 2)
        if steps != _default(model, "smoothing_steps"):
            suffix += f" nu={steps if not isinstance(steps, list) else '/'.join(map(str, steps))}"
        return name + suffix
    if model == "mgiad":
        extra = "".join(f" {n}={args[k]}" for k, n in (("pre_smooth", "eta_pre"),
                                                       ("post_smooth", "eta_post"))
                        if k in args and args[k] != _default(model, k))
        return "MGiaD" + suffix + extra
    names = {"resnet18": "ResNet18", "resnet20": "ResNet20", "mgic": "MGIC"}
    return names.get(model, model) + suffix
