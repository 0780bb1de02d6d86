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

Shipping a finished run: :mod:`mgiad.experiments.release` (``python -m mgiad.experiments.release
add RUN_DIR``), outside the library.
"""
from __future__ import annotations

import copy
import difflib
import fnmatch
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..utils.checkpoint import CheckpointError, load_model_state, write_json_atomic
from ._naming import DATASET_TAGS, NAME_PATTERN, RUNTIME_ARGS, architecture_name, default_tag, plain
from ._registry import check_model_size, create_registered, is_registered, list_models, model_arguments

__all__ = ["list_pretrained", "pretrained_cfg", "create_pretrained", "find_pretrained",
           "resolve_pretrained", "architecture_name", "default_tag", "weights_dir", "read_manifest",
           "write_manifest", "names_for_choices", "build", "ENV_VAR", "MANIFEST_NAME", "DATASET_TAGS"]

ENV_VAR = "MGIAD_PRETRAINED_DIR"
MANIFEST_NAME = "manifest.json"
FORMAT = 1
_MANIFEST_ABOUT = ("Pretrained weights shipped with mgiad (one <name>.safetensors per entry). "
                   "Written by `python -m mgiad.experiments.release add RUN_DIR`; see "
                   "mgiad/experiments/release.py.")


# -------------------------------------------------------------------------------- manifest
def weights_dir() -> Path:
    """The folder of the manifest and weight files: ``$MGIAD_PRETRAINED_DIR`` if set, else the
    package's ``weights/`` folder."""
    return Path(os.environ.get(ENV_VAR) or Path(__file__).resolve().parent.parent / "weights")


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
        if not NAME_PATTERN.match(name) or name in seen:
            raise CheckpointError(f"{where}: {'duplicate' if name in seen else 'malformed'} name {name!r}")
        seen.add(name)
        if not is_registered(entry["model"]):
            raise CheckpointError(f"{where} ({name}) needs model {entry['model']!r}, which this "
                                  f"mgiad does not have (models: {', '.join(list_models())})")
        accuracy = entry["accuracy"].get("test_acc")
        if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) \
                or not math.isfinite(accuracy):
            raise CheckpointError(f"{where} ({name}): accuracy.test_acc must be a finite number, "
                                  f"got {accuracy!r}")
        if Path(entry["file"]).name != entry["file"]:
            raise CheckpointError(f"{where} ({name}): file {entry['file']!r} must be a plain file "
                                  "name in the weights folder")
    return models


def read_manifest(directory: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The entries of ``<directory>/manifest.json`` (default :func:`weights_dir`); a folder without
    a manifest has none. A malformed manifest raises :class:`~mgiad.utils.checkpoint.CheckpointError`."""
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


def write_manifest(directory: Path, models: list[dict[str, Any]]) -> None:
    write_json_atomic({"format": FORMAT, "about": _MANIFEST_ABOUT, "models": models},
                      directory / MANIFEST_NAME)
    os.chmod(directory / MANIFEST_NAME, 0o644)


def list_pretrained(pattern: str | None = None) -> list[str]:
    """Sorted names of the pretrained models, optionally filtered by a shell-style pattern
    (``list_pretrained("*fmnist*")``), as :func:`mgiad.list_models`."""
    names = sorted(e["name"] for e in read_manifest())
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def names_for_choices() -> list[str]:
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
    if is_registered(name):  # a family with pretrained=True
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
    from ._hub import PREPROCESSING_KEYS
    recorded = entry["preprocessing"]
    return {k: copy.deepcopy(recorded[k]) for k in PREPROCESSING_KEYS if recorded.get(k) is not None}


def _read_weights(entry: dict[str, Any], directory: Path, map_location="cpu") -> dict[str, torch.Tensor]:
    from ._hub import load_safetensors_bytes
    path = directory / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(
            f"the weights file of pretrained model {entry['name']!r} is missing: {path} (listed in "
            f"{directory / MANIFEST_NAME}); reinstall mgiad, or ship it again with "
            "`python -m mgiad.experiments.release add RUN_DIR`")
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
        elif plain(value) == plain(recorded[key]):
            continue
        elif key == "num_classes":
            if pretrained:
                reset = value
            else:
                args[key] = value
        elif key == "global_pool":  # the pooling may change, as in timm (no weight depends on it)
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


def build(entry: dict[str, Any], directory: Path, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    args, reset = _build_args(entry, kwargs, pretrained)
    if reset is not None:  # the new classifier is built by reset_classifier: check its size first
        known = model_arguments(entry["model"])
        check_model_size(entry["model"], {**{k: v for k, v in args.items() if k in known},
                                          "num_classes": reset})
    model = create_registered(entry["model"], **args)
    preprocessing = _preprocessing(entry)
    if pretrained:
        load_model_state(model, _read_weights(entry, directory),
                         f"weights file {directory / entry['file']}")
    if reset is not None:  # as timm: the pretrained body with a new, untrained classifier
        model.reset_classifier(reset)
    if model.num_classes != entry["model_args"].get("num_classes", model.num_classes):
        preprocessing.pop("class_names", None)
    model.pretrained_cfg = entry
    model.preprocessing = preprocessing
    return model


def create_pretrained(name: str, pretrained: bool = True, **kwargs: Any) -> nn.Module:
    """What :func:`mgiad.create_model` does for pretrained names (and for ``pretrained=True``).

    ``name``: a name of :func:`list_pretrained`. The recorded architecture is built; with
    ``pretrained=True`` the weights are loaded (sha256-checked). As timm's, the model is returned
    in train mode (``nn.Module``'s default), ready to fine-tune; call ``.eval()`` to predict
    (:func:`mgiad.load_model` does). ``kwargs`` equal to the recorded ones are accepted; ``impl`` / ``recompute`` may be
    chosen; another ``num_classes`` replaces the classifier by an untrained one (timm's
    ``reset_classifier``); another ``in_chans`` or any other argument raises ``ValueError``.
    The model gets ``pretrained_cfg`` (the manifest entry) and ``preprocessing``.
    """
    directory = weights_dir()
    entry = _entry(name, read_manifest(directory))
    if entry is None:
        raise _unknown(name)
    return build(entry, directory, pretrained, kwargs)


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
        if all(plain(v) == plain(recorded[k]) for k, v in kwargs.items()
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
