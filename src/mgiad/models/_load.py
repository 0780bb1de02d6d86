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
                   checkpoint_preprocessing, read_json, read_safetensors, resolve)

__all__ = ["load_model", "from_pretrained", "model_from_checkpoint"]


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
    model.preprocessing = dict(read_json(preprocessing)) if preprocessing.is_file() else {}
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
