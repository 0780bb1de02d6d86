"""Pretrained weights shipped inside the package, named and created the way timm does it.

    import mgiad
    mgiad.list_pretrained()             # ['mgiad_16_32_64_ck16_gs8.fmnist_paper_e30', ...]
    model = mgiad.create_model("mgiad_16_32_64_ck16_gs8.fmnist_paper_e30", pretrained=True)
    model.pretrained_cfg                # the manifest entry: preprocessing, accuracy, recipe, run
    model.preprocessing                 # dataset, image_size, in_chans, mean, std, class_names

Names
-----
``"<architecture>.<tag>"``, lower case letters, digits and ``_``:

* ``<architecture>``: the registry name, then the architecture arguments, derived from the
  configuration by :func:`architecture_name` (so a name cannot misstate its network). The widths
  come first, bare (``16_32_64``); then ``ck`` coarse_channels (c_K), ``gs`` group_size (g_s),
  ``nu`` smoothing_steps, ``b`` blocks, always for the families that have them (MGiaD: ck, gs;
  MgNet: nu; MGIC: ck, gs, b); then every other argument that differs from its default:
  ``x`` width_mult, ``pre`` / ``post`` pre_smooth / post_smooth, ``pn`` prolong_norm, ``share``,
  ``stem``, ``tn`` transfer_norm, ``sc`` shortcut, else the argument's own name. Booleans are
  ``1`` / ``0``, a decimal point is ``p`` (``x0p5``), lists are joined by ``_``. The classes and
  input channels are left out (the dataset gives them), and so are ``impl`` / ``recompute`` (how
  a model runs, not what it computes). The codes are those of ``mgiad reproduce``'s run names.
  Examples: ``mgiad_16_32_64_ck16_gs8`` (table 2's 16-32-64 MGiaD, c_K=16, g_s=8),
  ``mgnet_16_32_64_nu3_tn0`` (MgNet^{A,B} 16-32-64, nu=3, the authors' transfers), ``resnet20``.
* ``<tag>``: the training data and recipe: the dataset (``fmnist``, ``digits``, ``cifar10``,
  ``cifar100``, ``tinyin``, ``in1k``: :data:`DATASET_TAGS`), the ``mgiad reproduce`` budget if the
  run has one (``paper``), the epochs (``e30``), and the seed when it is not 0 (``s1``):
  ``fmnist_paper_e30``. ``--tag`` / ``--name`` choose another tag; it must start with the dataset's.

Files
-----
The folder :func:`weights_dir` (the package's ``mgiad/weights/``, shipped as package data; the
environment variable ``MGIAD_PRETRAINED_DIR`` names another one, e.g. in tests) holds
``manifest.json``, the one source of truth, ``{"format": 1, "models": [entry, ...]}``, and one
``<name>.safetensors`` per entry. An entry records ``name``; ``model`` and ``model_args`` (the
create_model arguments); ``file``, its ``sha256`` and ``bytes``; ``weights`` (parameters);
``preprocessing`` (``dataset``, ``image_size``, ``in_chans``, ``mean``, ``std``, ``class_names``
and a ``description`` in words, e.g. Fashion-MNIST's 28x28 -> 32x32 zero padding, which
``mgiad predict`` applies); ``accuracy`` (``test_acc`` / ``test_loss`` / ``test_images``: measured
by ``add`` on the CPU in float32, and ``test_acc_first500`` on the first 500 test images, for
quick checks; ``train_acc``: the run's final model in eval mode on the training set; the run's
own ``run_final_test_acc`` and ``run_best_test_acc``); ``training`` (epochs, seed,
the recipe, the command, the source run, the budget, versions) and, for a paper row, ``paper``
(its table, label and reported accuracies). Adding a model is data, not code.

Shipping a finished run
-----------------------
::

    python -m mgiad.pretrained add RUN_DIR [RUN_DIR ...] [--tag TAG | --name NAME]
                                   [--data-dir DIR] [--weights-dir DIR] [--replace]
    python -m mgiad.pretrained list
    python -m mgiad.pretrained remove NAME

``add`` takes the run's final model (``last.pt``; ``config.json`` and ``summary.json`` must be
there, and ``last.pt`` must be at the last epoch: unfinished runs are refused), measures its test
accuracy on the CPU in float32 (refused if it is more than :data:`MAX_RUN_DIFFERENCE` points from
the run's own figure: wrong data?), writes ``<name>.safetensors``, loads it back as
``create_model(name, pretrained=True)`` does and checks identical outputs, then records the entry
in the manifest. Commit ``src/mgiad/weights/`` afterwards.
"""
from __future__ import annotations

import argparse
import copy
import difflib
import fnmatch
import hashlib
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .checkpoint import CheckpointError, atomic_write, load_checkpoint, load_model_state, write_json_atomic
from .experiments import ARG_ABBREVIATIONS
from .registry import _MODELS, _create_registered, _jsonable, list_models, model_arguments

__all__ = ["list_pretrained", "pretrained_cfg", "create_pretrained", "find_pretrained",
           "resolve_pretrained", "architecture_name", "default_tag", "weights_dir", "read_manifest",
           "add_run", "remove", "resolve_data_dir", "ENV_VAR", "MANIFEST_NAME", "DATASET_TAGS",
           "main"]

ENV_VAR = "MGIAD_PRETRAINED_DIR"
MANIFEST_NAME = "manifest.json"
FORMAT = 1
# how a model runs, not what it computes: free to choose when loading, never in a name
RUNTIME_ARGS = ("impl", "recompute")
# short dataset names of tags (timm: in1k)
DATASET_TAGS = {"fashion-mnist": "fmnist", "digits": "digits", "cifar10": "cifar10",
                "cifar100": "cifar100", "tiny-imagenet": "tinyin", "imagenet": "in1k"}
# a measured test accuracy further than this (percentage points) from the run's is refused
MAX_RUN_DIFFERENCE = 0.5
# the accuracy on the first SLICE test images is recorded too, for quick checks (tests)
SLICE = 500

# the run directories' abbreviations, but widths bare, as timm spells sizes (mgiad_16_32_64)
_ABBREVIATIONS = {**ARG_ABBREVIATIONS, "widths": ""}
_ALWAYS_NAMED = {"mgiad": ("widths", "coarse_channels", "group_size"),
                 "mgnet": ("widths", "smoothing_steps"),
                 "mgic": ("widths", "coarse_channels", "group_size", "blocks")}
_NOT_NAMED = ("num_classes", "in_chans") + RUNTIME_ARGS
_NAME = re.compile(r"^(?P<arch>[a-z][a-z0-9_]*)\.(?P<tag>[a-z0-9][a-z0-9_]*)$")
_MANIFEST_ABOUT = ("Pretrained weights shipped with mgiad (one <name>.safetensors per entry). "
                   "Written by `python -m mgiad.pretrained add RUN_DIR`; see mgiad/pretrained.py.")


# ----------------------------------------------------------------------------------- names
def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "_".join(_fmt(v) for v in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        value = int(value) if value.is_integer() else f"{value:g}"
    return re.sub(r"[^a-z0-9]", "", str(value).lower().replace(".", "p").replace("-", "m"))


def _plain(value: Any) -> Any:
    """JSON form (tuples -> lists) for comparing arguments with the recorded ones."""
    return json.loads(json.dumps(_jsonable(value)))


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
        k in _ALWAYS_NAMED.get(model, ()) or _plain(args[k]) != _plain(defaults[k]))]
    keys.sort(key=lambda k: (order.index(k) if k in order else len(order), k))
    parts = [model] + [_ABBREVIATIONS.get(k, k.replace("_", "")) + _fmt(args[k]) for k in keys]
    return "_".join(p for p in parts if p)


def default_tag(dataset: str, epochs: int, seed: int = 0, recipe: str | None = None) -> str:
    """``<dataset>[_<recipe>]_e<epochs>[_s<seed>]``, e.g. ``fmnist_paper_e30``."""
    from .data.info import canonical_name
    key = canonical_name(dataset)
    parts = [DATASET_TAGS.get(key, _fmt(key))]
    if recipe:
        parts.append(re.sub(r"[^a-z0-9]+", "_", recipe.lower()).strip("_"))
    parts.append(f"e{int(epochs)}")
    if seed:
        parts.append(f"s{int(seed)}")
    return "_".join(p for p in parts if p)


def _check_name(name: str, architecture: str, dataset: str) -> None:
    match = _NAME.match(name)
    if not match:
        raise ValueError(f"pretrained name {name!r} is not '<architecture>.<tag>' in lower-case "
                         "letters, digits and '_'")
    if match["arch"] != architecture:
        raise ValueError(f"pretrained name {name!r} must start with the architecture's name "
                         f"{architecture!r} (derived from its configuration)")
    ds = DATASET_TAGS.get(dataset, _fmt(dataset))
    if match["tag"] != ds and not match["tag"].startswith(ds + "_"):
        raise ValueError(f"the tag of {name!r} must start with its dataset, {ds!r} "
                         f"(e.g. {ds}_e30)")


# -------------------------------------------------------------------------------- manifest
def weights_dir() -> Path:
    """The folder of the manifest and weight files: ``$MGIAD_PRETRAINED_DIR`` if set, else the
    package's ``weights/`` folder."""
    return Path(os.environ.get(ENV_VAR) or Path(__file__).resolve().parent / "weights")


_cache: dict[str, tuple[tuple[int, int], list[dict[str, Any]]]] = {}
_ENTRY_KEYS = {"name": str, "model": str, "model_args": dict, "file": str, "sha256": str,
               "preprocessing": dict, "accuracy": dict}


def _validate(models: Any, path: Path) -> list[dict[str, Any]]:
    if not isinstance(models, list):
        raise CheckpointError(f"{path}: \"models\" must be a list of entries")
    seen = set()
    for i, entry in enumerate(models):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where} is not an object")
        for key, kind in _ENTRY_KEYS.items():
            if not isinstance(entry.get(key), kind):
                raise CheckpointError(f"{where} ({entry.get('name', '?')}) lacks {key!r} "
                                      f"({kind.__name__})")
        name = entry["name"]
        if not _NAME.match(name) or name in seen:
            raise CheckpointError(f"{where}: {'duplicate' if name in seen else 'malformed'} name {name!r}")
        seen.add(name)
        if entry["model"] not in _MODELS:
            raise CheckpointError(f"{where} ({name}) needs model {entry['model']!r}, which this "
                                  f"mgiad does not have (models: {', '.join(list_models())})")
        if Path(entry["file"]).name != entry["file"]:
            raise CheckpointError(f"{where} ({name}): file {entry['file']!r} must be a plain file "
                                  "name in the weights folder")
    return models


def read_manifest(directory: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The entries of ``<directory>/manifest.json`` (default :func:`weights_dir`); a folder without
    a manifest has none. A malformed manifest raises :class:`~mgiad.checkpoint.CheckpointError`."""
    path = Path(directory or weights_dir()) / MANIFEST_NAME
    try:
        stat = path.stat()
    except FileNotFoundError:
        return []
    key, stamp = str(path.resolve()), (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(key)
    if cached is None or cached[0] != stamp:
        try:
            data = json.loads(path.read_text())
        except Exception as exc:
            raise CheckpointError(f"cannot read the pretrained manifest {path}: "
                                  f"{type(exc).__name__}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a format-{FORMAT} mgiad pretrained manifest")
        cached = _cache[key] = (stamp, _validate(data.get("models"), path))
    return copy.deepcopy(cached[1])


def _write_manifest(directory: Path, models: list[dict[str, Any]]) -> None:
    write_json_atomic({"format": FORMAT, "about": _MANIFEST_ABOUT, "models": models},
                      directory / MANIFEST_NAME)
    os.chmod(directory / MANIFEST_NAME, 0o644)


def list_pretrained(pattern: str | None = None) -> list[str]:
    """Sorted names of the pretrained models, optionally filtered by a shell-style pattern
    (``list_pretrained("*fmnist*")``), as :func:`mgiad.list_models`."""
    names = sorted(e["name"] for e in read_manifest())
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def _names_for_choices() -> list[str]:
    """Pretrained names for a command line's choices; none when the manifest cannot be read
    (every command would fail to start otherwise)."""
    try:
        return list_pretrained()
    except Exception:
        return []


def _entry(name: str, models: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((e for e in models if e["name"] == name), None)


def pretrained_cfg(name: str) -> dict[str, Any]:
    """The manifest entry of pretrained model ``name`` (a copy); ``ValueError`` if unknown."""
    entry = _entry(name, read_manifest())
    if entry is None:
        raise _unknown(name)
    return entry


def _unknown(name: str) -> ValueError:
    models = read_manifest()
    if name in _MODELS:  # a family with pretrained=True
        own = sorted(e["name"] for e in models if e["model"] == name)
        if own:
            return ValueError(f"{name!r} is an architecture family; pretrained=True needs the name "
                              f"of trained weights: {', '.join(own)}")
        return ValueError(f"no pretrained weights for {name!r}; pretrained models: "
                          f"{', '.join(sorted(e['name'] for e in models)) or 'none'}")
    names = sorted(e["name"] for e in models)
    tagged = [n for n in names if n.split(".")[0] == name]
    if tagged:
        return ValueError(f"{name!r} names an architecture; add the tag of its weights: "
                          f"{', '.join(tagged)}")
    close = difflib.get_close_matches(name, names + list_models(), n=3, cutoff=0.6)
    return ValueError(f"unknown model {name!r}; available models: {', '.join(list_models())}; "
                      f"pretrained models: {', '.join(names) or 'none'}"
                      + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))


# ------------------------------------------------------------------------------------ load
def _preprocessing(entry: dict[str, Any]) -> dict[str, Any]:
    """``model.preprocessing`` as :func:`mgiad.from_pretrained` gives it (hub's keys only)."""
    from .hub import PREPROCESSING_KEYS
    recorded = entry["preprocessing"]
    return {k: copy.deepcopy(recorded[k]) for k in PREPROCESSING_KEYS if recorded.get(k) is not None}


def _read_weights(entry: dict[str, Any], directory: Path, map_location="cpu") -> dict[str, torch.Tensor]:
    from .hub import load_safetensors_bytes
    path = directory / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(
            f"the weights file of pretrained model {entry['name']!r} is missing: {path} (listed in "
            f"{directory / MANIFEST_NAME}); reinstall mgiad, or ship it again with "
            "`python -m mgiad.pretrained add RUN_DIR`")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        hint = (" It is a Git LFS pointer, not the file: run `git lfs pull`."
                if data.startswith(b"version https://git-lfs") else "")
        raise CheckpointError(f"the weights file {path} is corrupt or was replaced: its sha256 "
                              f"{digest[:16]}... differs from the {entry['sha256'][:16]}... recorded "
                              f"in {directory / MANIFEST_NAME}.{hint}")
    return load_safetensors_bytes(data, f"weights file {path}", map_location)


def _build_args(entry: dict[str, Any], kwargs: dict[str, Any], pretrained: bool):
    """(create_model arguments, classifier size to reset to or None) for ``entry`` + ``kwargs``."""
    family, name = entry["model"], entry["name"]
    defaults = model_arguments(family)
    recorded = {**defaults, **entry["model_args"]}
    args, reset, conflicts = dict(recorded), None, []
    for key, value in kwargs.items():
        if key not in defaults or key in RUNTIME_ARGS:
            args[key] = value  # unknown ones: create_model names them
        elif _plain(value) == _plain(recorded[key]):
            continue
        elif key == "num_classes":
            if pretrained:
                reset = value
            else:
                args[key] = value
        elif key == "in_chans":
            raise ValueError(f"in_chans={value!r} does not fit pretrained model {name!r}: its first "
                             f"convolution takes in_chans={recorded[key]} (convert the images instead)")
        else:
            conflicts.append(f"{key}={value!r} (recorded: {recorded[key]!r})")
    if conflicts:
        raise ValueError(f"pretrained model {name!r} has another architecture than asked for: "
                         f"{', '.join(conflicts)}; leave these arguments out, or build an untrained "
                         f"model with mgiad.create_model({family!r}, ...)")
    return args, reset


def _build(entry: dict[str, Any], directory: Path, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    args, reset = _build_args(entry, kwargs, pretrained)
    model = _create_registered(entry["model"], **args)
    preprocessing = _preprocessing(entry)
    if pretrained:
        load_model_state(model, _read_weights(entry, directory),
                         f"weights file {directory / entry['file']}")
        model.eval()
    if reset is not None:  # as timm: the pretrained body with a new, untrained classifier
        model.reset_classifier(reset)
        model.config["num_classes"] = model.num_classes
    if model.num_classes != entry["model_args"].get("num_classes", model.num_classes):
        preprocessing.pop("class_names", None)
    model.pretrained_cfg = entry
    model.preprocessing = preprocessing
    return model


def create_pretrained(name: str, pretrained: bool = True, **kwargs: Any) -> nn.Module:
    """What :func:`mgiad.create_model` does for pretrained names (and for ``pretrained=True``).

    ``name``: a name of :func:`list_pretrained`. The recorded architecture is built; with
    ``pretrained=True`` the weights are loaded (sha256-checked) and the model is returned in eval
    mode. ``kwargs`` equal to the recorded ones are accepted; ``impl`` / ``recompute`` may be
    chosen; another ``num_classes`` replaces the classifier by an untrained one (timm's
    ``reset_classifier``); another ``in_chans`` or any other argument raises ``ValueError``.
    The model gets ``pretrained_cfg`` (the manifest entry) and ``preprocessing``.
    """
    directory = weights_dir()
    entry = _entry(name, read_manifest(directory))
    if entry is None:
        raise _unknown(name)
    return _build(entry, directory, pretrained, kwargs)


def find_pretrained(model: str, tag: str | None = None, **kwargs: Any) -> list[str]:
    """Names of the pretrained ``model`` (a family, e.g. ``"mgiad"``) with this ``tag`` (any if
    None) whose recorded architecture agrees with ``kwargs`` (``num_classes``, ``impl`` and
    ``recompute`` are not compared: they may differ when loading)."""
    defaults = model_arguments(model)  # raises for unknown families
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise ValueError(f"model {model!r} got unknown argument(s) {', '.join(unknown)}; "
                         f"valid arguments: {', '.join(defaults)}")
    found = []
    for entry in read_manifest():
        if entry["model"] != model or (tag is not None and entry["name"].split(".", 1)[1] != tag):
            continue
        recorded = {**defaults, **entry["model_args"]}
        if all(_plain(v) == _plain(recorded[k]) for k, v in kwargs.items()
               if k not in ("num_classes",) + RUNTIME_ARGS):
            found.append(entry["name"])
    return sorted(found)


def resolve_pretrained(model: str, tag: str | None = None, **kwargs: Any) -> str:
    """The one name :func:`find_pretrained` finds, or a ``ValueError`` listing the candidates."""
    found = find_pretrained(model, tag, **kwargs)
    if len(found) == 1:
        return found[0]
    asked = ", ".join([f"tag={tag!r}"] * (tag is not None) + [f"{k}={v!r}" for k, v in kwargs.items()])
    family = sorted(e["name"] for e in read_manifest() if e["model"] == model)
    if not found:
        raise ValueError(f"no pretrained {model!r} model matches {asked or 'the request'}; "
                         f"pretrained {model!r} models: {', '.join(family) or 'none'}")
    raise ValueError(f"{len(found)} pretrained {model!r} models match{' ' + asked if asked else ''}: "
                     f"{', '.join(found)}; choose one by tag= or its architecture arguments")


# ------------------------------------------------------------------------------------- add
def _relative(path: Path) -> str:
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def _finished_run(run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(last.pt's state, summary.json) of a finished run; ``ValueError`` saying what is missing."""
    if not run.is_dir():
        raise ValueError(f"{run} is not a run directory")
    for name in ("config.json", "last.pt"):
        if not (run / name).is_file():
            raise ValueError(f"{run} is not a run directory of mgiad train: no {name}")
    if not (run / "summary.json").is_file():
        raise ValueError(f"{run} is unfinished (no summary.json): finish it with "
                         f"`mgiad train --resume {run}` before shipping it")
    state = load_checkpoint(run / "last.pt")
    summary = json.loads((run / "summary.json").read_text())
    epochs = state["config"].get("train", {}).get("epochs")
    if state.get("epoch") != epochs or state.get("batch", 0) != 0 or summary.get("epochs") != epochs:
        raise ValueError(f"{run} is unfinished: last.pt is at epoch {state.get('epoch')} "
                         f"(batch {state.get('batch', 0)}) of {epochs}, summary.json says "
                         f"{summary.get('epochs')} epochs; finish it with `mgiad train --resume {run}`")
    history = state.get("history") or []
    if history and abs(history[-1]["test_acc"] - summary.get("final_test_acc", float("nan"))) > 1e-9:
        raise ValueError(f"{run}: summary.json's final_test_acc does not belong to last.pt "
                         "(a run extended after its summary?)")
    return state, summary


def resolve_data_dir(given: str | None, recorded: str | None) -> str | None:
    """The data folder for a run's model: ``given`` (``--data-dir``), else the folder the run
    recorded if it exists here, else None: the default ($MGIAD_DATA_DIR or ./.data). When
    neither the recorded nor the default folder exists, the recorded one (errors then name it)."""
    from .data import default_data_dir
    if given is not None:
        return given
    if recorded and (Path(recorded).is_dir() or not default_data_dir().is_dir()):
        return recorded
    return None


def _measure(model: nn.Module, dataset: str, data_dir: str | None, batch_size: int) -> dict[str, Any]:
    from .data import build_loaders
    from .train import Runtime, evaluate
    _, test = build_loaders(dataset, data_dir, batch_size=batch_size, device="cpu")
    result = evaluate(model, test, Runtime(torch.device("cpu")))
    correct = seen = 0  # the first SLICE images (the test set is never shuffled): a quick check
    with torch.no_grad():
        for x, y in test:
            take = min(SLICE - seen, len(y))
            correct += (model(x[:take]).argmax(1) == y[:take]).sum().item()
            seen += take
            if seen == SLICE:
                break
    return {"test_acc": result["acc"], "test_loss": result["loss"], "test_images": test.dataset_size,
            f"test_acc_first{SLICE}": 100.0 * correct / max(seen, 1)}


def _paper(experiment: dict[str, Any] | None) -> dict[str, Any] | None:
    row = (experiment or {}).get("paper_row")
    if not row:
        return None
    from .paper import PAPER_ROWS
    for r in PAPER_ROWS:
        if r.table == row.get("table") and r.label == row.get("label") and r.dataset == experiment.get("dataset"):
            return {"table": r.table, "label": r.label, "test_acc": r.test, "test_std": r.test_std,
                    "train_acc": r.train}
    return None


_RECIPE_KEYS = ("epochs", "batch_size", "lr", "schedule", "step_size", "gamma", "momentum",
                "weight_decay", "label_smoothing", "augment", "seed", "amp", "channels_last", "compile")


def _recipe(train: dict[str, Any], device: str | None) -> dict[str, Any]:
    recipe = {k: train[k] for k in _RECIPE_KEYS if k in train}
    for key in ("amp", "channels_last"):  # None: on for CUDA (see TrainConfig); say what it was
        if key in recipe and recipe[key] is None:
            recipe[key] = device == "cuda"
    return recipe


def add_run(run_dir: str | os.PathLike, name: str | None = None, tag: str | None = None,
            directory: str | os.PathLike | None = None, data_dir: str | None = None,
            replace: bool = False, batch_size: int = 256, log=print) -> dict[str, Any]:
    """Ship the final model of the finished run ``run_dir`` (see the module docstring): write
    ``<name>.safetensors`` to ``directory`` (default :func:`weights_dir`), check that it reloads
    to identical outputs, record the entry in the manifest and return it.

    ``name`` (a full name) or ``tag`` (the part after the dot) override :func:`default_tag`;
    ``data_dir``: where the test set is (default: the run's recorded folder if it exists, else
    ``$MGIAD_DATA_DIR`` or ``./.data``). An existing entry of the same name is only replaced
    with ``replace=True``.
    """
    from .checkpoint import model_from_checkpoint
    from .hub import read_preprocessing, safetensors_bytes
    from .predict import Preprocessing, class_names

    if name is not None and tag is not None:
        raise ValueError("give a name or a tag, not both")
    run = Path(run_dir)
    state, summary = _finished_run(run)
    config, train = state["config"], state["config"].get("train", {})
    model, _ = model_from_checkpoint(run / "last.pt")
    model.eval()
    family = model.config["model"]
    model_args = {k: v for k, v in model.config.items() if k != "model" and k not in RUNTIME_ARGS}
    preprocessing = read_preprocessing(run / "last.pt")
    dataset = preprocessing.get("dataset")
    if not dataset:
        raise ValueError(f"{run} does not record its dataset")
    names = class_names(preprocessing, model.num_classes)
    if names:
        preprocessing["class_names"] = names
    preprocessing["description"] = Preprocessing.resolve(preprocessing, model.in_chans).describe()
    experiment = None
    if (run / "experiment.json").is_file():
        experiment = json.loads((run / "experiment.json").read_text())
    architecture = architecture_name(family, model_args)
    if name is None:
        recipe = ((experiment or {}).get("budget") or {}).get("tag")
        tag = tag or default_tag(dataset, train.get("epochs", state["epoch"]), train.get("seed", 0), recipe)
        name = f"{architecture}.{tag}"
    _check_name(name, architecture, dataset)

    directory = Path(directory or weights_dir())
    models = read_manifest(directory)
    file = f"{name}.safetensors"
    if (_entry(name, models) is not None or (directory / file).exists()) and not replace:
        raise ValueError(f"{name} is already in {directory} (pass --replace to ship the run again)")

    data_dir = resolve_data_dir(data_dir, train.get("data_dir"))
    log(f"{name}: measuring {run / 'last.pt'} on the {dataset} test set (CPU, float32)")
    measured = _measure(model, dataset, data_dir, batch_size)
    run_acc = summary["final_test_acc"]
    if abs(measured["test_acc"] - run_acc) > MAX_RUN_DIFFERENCE:
        raise ValueError(f"{run}: the final model measures {measured['test_acc']:.2f}% on the "
                         f"{dataset} test set here, the run recorded {run_acc:.2f}%: another "
                         f"data folder ({data_dir or 'the default'})? Nothing was written")

    data = safetensors_bytes(model.state_dict(), {"model": family, "pretrained_name": name})
    entry = {
        "name": name, "model": family, "model_args": _plain(model_args), "file": file,
        "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        "weights": sum(p.numel() for p in model.parameters()),
        "preprocessing": preprocessing,
        "accuracy": {**measured, "measured_on": "cpu, float32, the final model (last.pt)",
                     "train_acc": summary.get("train_acc"),
                     "run_final_test_acc": run_acc, "run_best_test_acc": summary.get("best_test_acc")},
        "training": {
            "epochs": train.get("epochs"), "seed": train.get("seed"),
            "recipe": _recipe(train, config.get("device")),
            "command": shlex.join(map(str, config.get("command") or [])) or None,
            "source_run": _relative(run), "budget": (experiment or {}).get("budget"),
            "device": config.get("device"), "world_size": config.get("world_size"),
            "wall_seconds": summary.get("wall_seconds"),
            "mgiad_version": config.get("mgiad_version"), "torch_version": config.get("torch_version"),
        },
    }
    paper = _paper(experiment)
    if paper:
        entry["paper"] = paper
    entry = _plain(entry)

    directory.mkdir(parents=True, exist_ok=True)
    staged = f".{file}.new"  # checked before it replaces anything
    atomic_write(directory / staged, lambda fh: fh.write(data))
    try:  # load it back exactly as create_model(name, pretrained=True) will
        loaded = _build({**copy.deepcopy(entry), "file": staged}, directory, True, {})
        x = torch.randn(4, model.in_chans, preprocessing["image_size"], preprocessing["image_size"],
                        generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            same = torch.equal(model(x), loaded(x)) and all(
                torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                   loaded.state_dict().values()))
        if not same:
            raise CheckpointError(f"{directory / file} does not reload to the run's outputs")
        os.chmod(directory / staged, 0o644)  # package data: readable by all (mkstemp: 0600)
        os.replace(directory / staged, directory / file)
    finally:
        (directory / staged).unlink(missing_ok=True)
    old = _entry(name, models)
    models = [entry if e is old else e for e in models] if old else models + [entry]
    _write_manifest(directory, models)
    log(f"{name}: test accuracy {measured['test_acc']:.2f}% ({measured['test_images']} images; "
        f"the run recorded {run_acc:.2f}%), {len(data) / 1e3:,.1f} kB -> {directory / file}")
    return entry


def remove(name: str, directory: str | os.PathLike | None = None) -> None:
    """Drop ``name`` from the manifest in ``directory`` and delete its weights file."""
    directory = Path(directory or weights_dir())
    models = read_manifest(directory)
    entry = _entry(name, models)
    if entry is None:
        raise ValueError(f"{name!r} is not in {directory / MANIFEST_NAME}")
    _write_manifest(directory, [e for e in models if e is not entry])
    (directory / entry["file"]).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mgiad.pretrained",
        description="The pretrained weights shipped with mgiad: list them, ship a finished run "
        "(add), or drop one (remove). See the module docstring for names and files.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    folder = dict(default=None, help=f"weights folder (default: ${ENV_VAR}, else the package's "
                  "mgiad/weights)")
    p = sub.add_parser("add", help="ship the final model of finished runs (last.pt)")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run directories")
    p.add_argument("--name", default=None, help="the full name (only with one run; default: "
                   "<architecture>.<default tag>)")
    p.add_argument("--tag", default=None, help="the tag after the dot (default: "
                   "<dataset>[_<budget>]_e<epochs>[_s<seed>], e.g. fmnist_paper_e30)")
    p.add_argument("--data-dir", default=None, help="folder holding the test set (default: the "
                   "run's recorded folder if it exists, else $MGIAD_DATA_DIR or ./.data)")
    p.add_argument("--weights-dir", **folder)
    p.add_argument("--replace", action="store_true", help="replace an entry of the same name")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch (default: 256)")
    p = sub.add_parser("list", help="names, accuracy and size of the shipped models")
    p.add_argument("--weights-dir", **folder)
    p.add_argument("--json", action="store_true", help="print the manifest entries as JSON")
    p = sub.add_parser("remove", help="drop a model from the manifest and delete its file")
    p.add_argument("name")
    p.add_argument("--weights-dir", **folder)
    args = parser.parse_args(argv)
    try:
        if args.command == "add":
            if args.name and len(args.runs) > 1:
                raise ValueError("--name names one run; use --tag for several")
            for run in args.runs:
                add_run(run, name=args.name, tag=args.tag, directory=args.weights_dir,
                        data_dir=args.data_dir, replace=args.replace, batch_size=args.batch_size)
        elif args.command == "list":
            models = read_manifest(args.weights_dir)
            if args.json:
                print(json.dumps(models, indent=1))
            elif not models:
                print(f"no pretrained models in {Path(args.weights_dir or weights_dir())}")
            for e in [] if args.json else models:
                acc = e["accuracy"]
                train = acc.get("train_acc")
                print(f"{e['name']:<48} test {acc['test_acc']:6.2f}%  train "
                      + (f"{train:6.2f}%" if train is not None else "   n/a ")
                      + f"  {e.get('weights', 0):>9,} weights  {e.get('bytes', 0) / 1e3:8,.1f} kB")
        else:
            remove(args.name, args.weights_dir)
    except (ValueError, FileNotFoundError) as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
