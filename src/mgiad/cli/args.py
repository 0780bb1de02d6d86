"""What several commands share: one flag per model argument, the dataset flags."""
from __future__ import annotations

import argparse
import inspect
import re
from typing import Any

from ..data import DATASETS, dataset_info
from ..layers.blocks import POOLS, Stem
from ..models._registry import builders, is_registered
from ..models.resnet import SHORTCUTS

__all__ = ["MODEL_ARG_HELP", "add_model_arguments", "model_kwargs_from_args", "add_data_arguments",
           "dataset_names", "plain_text"]


# one line per create_model argument; every model argument is a flag of the same name
MODEL_ARG_HELP = {
    "num_classes": "number of output classes (default: from --dataset)",
    "in_chans": "input image channels (default: from --dataset)",
    "stem": "'cifar': 3x3 conv stride 1; 'imagenet': 7x7 conv stride 2 + 3x3 max-pool stride 2",
    "widths": "channels per resolution level before --width-mult, e.g. 64 128 256 256",
    "width_mult": "lambda: multiplies every width (paper: 1, 2, 3)",
    "group_size": "g_s: channels per group of the grouped smoothers A-hat, B-hat",
    "coarse_channels": "c_K: channel levels halve while the half stays >= c_K; coarsest is dense",
    "pre_smooth": "eta_pre: pre-smoothing steps per channel level (SiC, algorithm 2)",
    "post_smooth": "eta_post: post-smoothing steps per channel level (SiC, algorithm 2)",
    "prolong_norm": "BatchNorm after the channel prolongation P-hat (paper: Tiny ImageNet, ImageNet)",
    "smoothing_steps": "nu: MgNet smoothing steps per level (one value, or one per level)",
    "share": "MgNet weight sharing: 'AB' (one A and one B per level) or 'A' (new B every step)",
    "blocks": "blocks per resolution level (MGIC: one number)",
    "recompute": "train with less memory by running parts of the forward again in backward "
                 "(MgNet, MGiaD): 'level' (the default of a bare --recompute) stores each "
                 "resolution level's inputs; 'step' stores only each smoothing step's u, f "
                 "(least memory; docs/performance.md has the memory and time of each)",
    "impl": "'fast' (default: channels-last on CPU, memory-lean smoothing steps) or 'reference' "
            "(the readable code); same results (MgNet, MGiaD)",
    "shortcut": "ResNet shortcut where a block changes shape: 'A' stride-2 subsampling with zero "
                "channels appended, no weights (ResNet20's default); 'B' a 1x1 convolution + BN "
                "projection (ResNet18's default)",
    "transfer_norm": "MgNet: BN + ReLU after the FAS transfers R and Pi (default, the paper's "
                     "text); --no-transfer-norm: none, and a ReLU on f - A u before R (the "
                     "authors' code, the paper's MgNet weight counts; mgiad reproduce uses it)",
    "global_pool": "pooling before the classifier: 'avg' (default), 'max', 'avgmax', or '' (none; "
                   "needs --num-classes 0)",
    "drop_rate": "dropout on the pooled features before the classifier, while training (0)",
    "drop_path_rate": "stochastic depth, rising linearly to this rate: ResNet / MGIC residual "
                      "branches, MgNet / MGiaD smoothing-step corrections (0)",
}

# arguments with a fixed set of values: the flag offers them as choices
MODEL_ARG_CHOICES = {"stem": Stem.kinds, "shortcut": SHORTCUTS, "share": ("AB", "A"),
                     "global_pool": POOLS}


def _is_sequence(annotation: Any) -> bool:
    text = str(annotation)
    return "Sequence" in text or "tuple" in text or "list" in text


def _arg_type(name: str, default: Any, annotation: Any):
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float, str)) and not _is_sequence(annotation):
        return type(default)
    if "float" in str(annotation):
        return float
    return int


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per keyword argument of any registered model (same name, dashes)."""
    group = parser.add_argument_group("model arguments (those of create_model; default: the model's)")
    seen: set[str] = set()
    for builder in builders().values():
        for p in inspect.signature(builder).parameters.values():
            if p.name in seen:
                continue
            seen.add(p.name)
            flag = "--" + p.name.replace("_", "-")
            help_text = MODEL_ARG_HELP.get(p.name, p.name.replace("_", " "))
            kind = _arg_type(p.name, p.default, p.annotation)
            if p.name == "recompute":  # False / "level" / "step" (mgiad.layers.recompute)
                group.add_argument(flag, nargs="?", const="level", choices=("level", "step"),
                                   default=None, help=help_text)
                group.add_argument("--no-recompute", dest="recompute", action="store_const",
                                   const=False, help="store every activation (the default)")
            elif kind is bool:
                group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                   help=help_text)
            elif _is_sequence(p.annotation) or isinstance(p.default, (tuple, list)):
                group.add_argument(flag, type=kind, nargs="+", default=None, help=help_text)
            else:
                group.add_argument(flag, type=kind, default=None, help=help_text,
                                   choices=MODEL_ARG_CHOICES.get(p.name))


def model_kwargs_from_args(args: argparse.Namespace, dataset: str | None = None) -> dict[str, Any]:
    """The create_model keyword arguments given on the command line, plus the dataset's defaults
    (classes, channels, and the paper's stem / prolong_norm for it) where the model takes them."""
    valid = inspect.signature(builders()[args.model]).parameters if is_registered(args.model) else {}
    kwargs: dict[str, Any] = {}
    if dataset is not None:
        info = dataset_info(dataset)
        setting = dict(num_classes=info.num_classes, in_chans=info.in_chans, **info.model_args)
        kwargs.update({k: v for k, v in setting.items() if k in valid})
    for name in valid:
        value = getattr(args, name, None)
        if value is not None:
            if isinstance(value, list) and name == "smoothing_steps" and len(value) == 1:
                value = value[0]
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    # flags given for another model are an error, not silently ignored
    given = {n for b in builders().values() for n in inspect.signature(b).parameters
             if getattr(args, n, None) is not None}
    foreign = sorted(given - set(valid))
    if foreign:
        raise ValueError(f"model {args.model!r} does not take "
                         f"{', '.join('--' + n.replace('_', '-') for n in foreign)}; "
                         f"its arguments: {', '.join(valid)}")
    return kwargs


def dataset_names() -> list[str]:
    return list(DATASETS)


def add_data_arguments(p: argparse.ArgumentParser, default_dataset: str | None) -> None:
    p.add_argument("--dataset", default=default_dataset, choices=dataset_names(),
                   help="dataset (default: %(default)s; 'digits' is the bundled 8x8 "
                   "digits, offline)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding the dataset files (default: $MGIAD_DATA_DIR or ./.data)")
    p.add_argument("--download", action="store_true",
                   help="fetch a missing dataset from its official source (checksum-verified)")
    p.add_argument("--workers", type=int, default=None,
                   help="data-loading processes for image-folder datasets (ImageNet)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu', 'cuda'")


def plain_text(doc: str) -> str:
    """A reST docstring as terminal text: roles, literals and emphasis marks removed."""
    doc = re.sub(r":\w+:`~?([^`<]+?)(?: <[^>]+>)?`", r"\1", doc)
    return doc.replace("``", "").replace("**", "")
