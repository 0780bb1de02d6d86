"""``load_model``: one way to load a trained model from a shipped name, a ``save_pretrained``
folder, a run directory or a checkpoint file (``from_pretrained`` and ``create_model(name,
pretrained=True)`` are its other names)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..utils.checkpoint import CheckpointError, load_checkpoint, load_model_state
from ._hub import (CONFIG_NAME, PREPROCESSING_NAME, PRETRAINED_CFG_NAME, WEIGHTS_NAME,
                   checkpoint_preprocessing, read_json, read_preprocessing_file, read_safetensors,
                   resolve)

__all__ = ["load_model", "from_pretrained", "model_from_checkpoint", "source_architecture",
           "initialize_from"]


def _is_pretrained_name(source) -> bool:
    if not isinstance(source, str) or Path(source).exists():
        return False
    from ._pretrained import list_pretrained
    return source in list_pretrained()


def load_model(source: str | os.PathLike, map_location: str | torch.device = "cpu",
               checkpoint: str | None = None, **kwargs: Any) -> nn.Module:
    """The one way to load a trained model, whatever holds it.

    ``source``: a pretrained name shipped with mgiad (``mgiad.list_pretrained()``, made from
    their runs' ``last.pt``, the final model; ``kwargs`` as for ``create_model(name,
    pretrained=True, **kwargs)``), a ``save_pretrained`` directory (or its ``model.safetensors``),
    a run directory, or a ``best.pt`` / ``last.pt`` file. Of a run directory, ``checkpoint``
    chooses the file: ``"best"`` (the epoch of the best test accuracy) or ``"last"`` (the final
    model, as shipped weights); by default ``best.pt``, else ``last.pt``. The model is returned in
    eval mode, with ``model.config`` (its create_model arguments) and, where known,
    ``model.preprocessing`` (dataset, image_size, in_chans, mean, std of its training inputs) and
    ``model.pretrained_cfg`` (shipped weights, also after a ``save_pretrained`` round trip).
    """
    if kwargs or _is_pretrained_name(source):
        if checkpoint is not None:
            raise ValueError("checkpoint chooses a file of a run directory; shipped weights are "
                             "one file (made from their run's last.pt)")
        from ._factory import create_model
        return create_model(str(source), pretrained=True, **kwargs).to(map_location).eval()
    kind, where = resolve(source, checkpoint)
    if kind == "checkpoint":
        model, state = model_from_checkpoint(where, map_location)
        model.preprocessing = checkpoint_preprocessing(state["config"])
        return model.to(map_location).eval()
    folder = where if where.is_dir() else where.parent
    config = read_json(folder / CONFIG_NAME)
    if not isinstance(config, dict) or not isinstance(config.get("model"), str):
        raise CheckpointError(f"{folder / CONFIG_NAME} does not name a model (no \"model\" entry); "
                              "it was not written by save_pretrained")
    args = {k: v for k, v in config.items() if k != "model"}
    from ._factory import create_model
    model = create_model(config["model"], **args)
    state = read_safetensors(folder / WEIGHTS_NAME, map_location)
    load_model_state(model, state, f"weights file {folder / WEIGHTS_NAME}")
    preprocessing = folder / PREPROCESSING_NAME
    model.preprocessing = read_preprocessing_file(preprocessing) if preprocessing.is_file() else {}
    if (folder / PRETRAINED_CFG_NAME).is_file():
        model.pretrained_cfg = dict(read_json(folder / PRETRAINED_CFG_NAME))
    return model.to(map_location).eval()


def model_from_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Rebuild the model recorded in a checkpoint's config and load its weights."""
    from ._factory import create_model
    state = load_checkpoint(path, map_location)
    config = state["config"]
    if not isinstance(config, dict) or not isinstance(config.get("model"), str) \
            or not isinstance(config.get("model_args"), dict):
        raise CheckpointError(f"checkpoint {path} does not record its model (config.model and "
                              "config.model_args); it was not written by mgiad train")
    model = create_model(config["model"], **dict(config["model_args"]))
    load_model_state(model, state["model"], f"checkpoint {path}")
    return model, state


def from_pretrained(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    checkpoint: str | None = None) -> nn.Module:
    """Rebuild a model saved by :func:`~mgiad.models.save_pretrained` or trained by ``mgiad
    train``: :func:`load_model` under the Hugging Face name. Of a run directory it loads
    ``best.pt`` (else ``last.pt``); ``checkpoint="last"`` loads the final model."""
    return load_model(path, map_location, checkpoint=checkpoint)


def source_architecture(source: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """``(registry name, create_model arguments)`` of the trained model at ``source`` (a shipped
    name, a run directory, a ``save_pretrained`` folder or a checkpoint file), without what a
    fine-tuning run chooses itself: classes, input channels, execution and training options."""
    from ._naming import RUNTIME_ARGS
    if _is_pretrained_name(source):
        from ._pretrained import pretrained_cfg
        entry = pretrained_cfg(str(source))
        name, args = entry["model"], entry["model_args"]
    else:
        kind, where = resolve(source)
        if kind == "checkpoint":
            config = load_checkpoint(where)["config"]
            name, args = config.get("model"), config.get("model_args")
        else:
            folder = where if where.is_dir() else where.parent
            config = read_json(folder / CONFIG_NAME)
            name, args = config.get("model"), {k: v for k, v in config.items() if k != "model"}
        if not isinstance(name, str) or not isinstance(args, dict):
            raise CheckpointError(f"{where} does not record its architecture")
    drop = ("num_classes", "in_chans", "features_only", "out_indices") + RUNTIME_ARGS
    return name, {k: v for k, v in args.items() if k not in drop}


def initialize_from(model: nn.Module, source: str | os.PathLike) -> str:
    """Load the weights of the trained model at ``source`` (as :func:`load_model` finds them; a
    run directory gives its ``best.pt``) into ``model``, which must have the same architecture.
    The classifier is loaded when its shape agrees, else ``model`` keeps its new, randomly
    initialised one. Returns what was loaded and what was not, in words."""
    named = _is_pretrained_name(source)
    what = f"pretrained {source}" if named else str(resolve(source)[1])
    trained = load_model(source)
    state, own = trained.state_dict(), model.state_dict()
    head = sorted(k for k in own if k.startswith("head."))
    body = [k for k in own if k not in head]
    wrong = [k for k in body if k not in state or state[k].shape != own[k].shape]
    wrong += [k for k in state if k not in own and not k.startswith("head.")]
    if wrong:
        shapes = [f"{k} {tuple(own[k].shape) if k in own else '-'} vs "
                  f"{tuple(state[k].shape) if k in state else '-'}" for k in wrong[:4]]
        raise CheckpointError(f"{what} has another architecture than the model to train ("
                              f"{', '.join(shapes)}{', ...' if len(wrong) > 4 else ''}); the input "
                              "channels and every model argument but the classes must agree")
    head_fits = bool(head) and all(k in state and state[k].shape == own[k].shape for k in head)
    load = {k: state[k] for k in body + (head if head_fits else [])}
    model.load_state_dict(load, strict=False)
    weights = sum(v.numel() for k, v in load.items() if k in dict(model.named_parameters()))
    text = f"initialised from {what}: {len(load)} tensors ({weights:,} weights) loaded"
    if head_fits:
        return text + f", the classifier included ({model.num_classes} classes)"
    if not head:
        return text + " (the model has no classifier)"
    return (text + f"; the classifier ({', '.join(head)}) is new and randomly initialised: "
            f"{model.num_classes} classes, where the source has {trained.num_classes}")
