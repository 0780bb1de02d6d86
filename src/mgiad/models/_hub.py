"""Share models without pickle: ``save_pretrained`` / ``from_pretrained`` (JSON + safetensors).

A saved model is a directory::

    out/config.json           the create_model arguments, i.e. ``model.config``:
                              {"model": "mgiad", "num_classes": 10, "width_mult": 3, ...}
    out/model.safetensors     the state dict (tensors only; nothing is executed on load)
    out/preprocessing.json    only when known (models loaded from a training checkpoint):
                              dataset, image_size, in_chans, mean, std of the training inputs
    out/pretrained_cfg.json   only for shipped weights (``model.pretrained_cfg``: their manifest
                              entry), so that it survives the round trip

``mgiad.load_model`` (alias ``from_pretrained``, :mod:`._load`) reads it back, and also what
``mgiad train`` writes: a run directory (its ``best.pt``, the epoch of the best test accuracy,
else ``last.pt``, the final model; ``checkpoint="last"`` chooses the final one, which is what
shipped weights are made from) or a ``best.pt`` / ``last.pt`` file; those are loaded with
``weights_only=True``.

safetensors is an optional dependency (the ``hub`` extra, or ``safetensors`` itself): saving
needs it; loading uses it when installed and otherwise reads the (simple) format itself, so the
pretrained weights shipped with mgiad (:mod:`mgiad.models._pretrained`) load with torch alone.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..utils.errors import MissingDependencyError, install_hint
from ..utils.checkpoint import (CheckpointError, atomic_write, load_checkpoint, load_model_state,
                                write_json_atomic)

__all__ = ["save_pretrained", "load_weights", "read_preprocessing",
           "safetensors_bytes", "load_safetensors_bytes", "MissingDependencyError", "CONFIG_NAME",
           "WEIGHTS_NAME", "PREPROCESSING_NAME", "PRETRAINED_CFG_NAME", "CHECKPOINTS"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PREPROCESSING_NAME = "preprocessing.json"
PRETRAINED_CFG_NAME = "pretrained_cfg.json"
CHECKPOINT_NAMES = ("best.pt", "last.pt")
CHECKPOINTS = ("best", "last")
# what a training checkpoint's config records about its inputs (train.py's run_config)
PREPROCESSING_KEYS = ("dataset", "image_size", "in_chans", "mean", "std", "class_names")


def _safetensors_torch():
    try:
        import safetensors.torch as st
    except Exception as exc:  # not installed, or broken: either way, say what to do
        raise MissingDependencyError(
            f"saving and loading models in the safetensors format needs the safetensors package "
            f"({type(exc).__name__}: {exc}); install it: "
            f"{install_hint('hub', 'safetensors')}") from None
    return st


# ------------------------------------------------------------------------------ safetensors
def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors file holding ``state`` (CPU copies); ``metadata``: extra string entries
    of its header, beside ``format`` and ``mgiad_version``. Needs the safetensors package."""
    st = _safetensors_torch()
    from ..version import __version__
    # safetensors refuses tensors that share memory: give each its own contiguous CPU copy
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}
    data = st.save(tensors, metadata={"format": "pt", "mgiad_version": __version__,
                                      **{k: str(v) for k, v in (metadata or {}).items()}})
    # the package writes the metadata in a random order: sort it, so that the same weights give
    # the same bytes (shipped files do not change when shipped again). Offsets are unaffected.
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to a multiple of 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + length:]


# the safetensors dtype names and their torch dtypes (the file stores little-endian values)
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
                       "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
                       "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def _parse_safetensors(data: bytes) -> dict[str, torch.Tensor]:
    """Read the safetensors format without the package: an 8-byte little-endian header length,
    a JSON header ``{name: {"dtype", "shape", "data_offsets": [begin, end]}}``, raw tensor bytes.
    Every offset and size is checked against the file before a byte is used."""
    if len(data) < 8:
        raise ValueError(f"{len(data)} bytes: too short for a safetensors file")
    length = int.from_bytes(data[:8], "little")
    if length > len(data) - 8:
        raise ValueError(f"the header length {length} runs past the end of the file")
    header = json.loads(bytes(data[8:8 + length]).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    body = memoryview(data)[8 + length:]
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES[spec["dtype"]]
            shape = [int(n) for n in spec["shape"]]
            begin, end = (int(n) for n in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"tensor {name!r}: unsupported or malformed entry {spec!r}") from None
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= len(body) or end - begin != size:
            raise ValueError(f"tensor {name!r}: offsets {begin}..{end} do not hold {shape} "
                             f"{spec['dtype']} values in a body of {len(body)} bytes")
        flat = (torch.frombuffer(bytearray(body[begin:end]), dtype=dtype) if size else
                torch.empty(0, dtype=dtype))
        tensors[name] = flat.reshape(shape)
    return tensors


def load_safetensors_bytes(data: bytes, source: str,
                           map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``data``; ``source`` names it in errors
    (:class:`~mgiad.utils.checkpoint.CheckpointError`). Uses the safetensors package when installed."""
    try:
        import safetensors.torch as st
    except Exception:
        st = None
    try:
        if st is not None:
            state = st.load(bytes(data))
        elif sys.byteorder == "little":
            state = _parse_safetensors(data)
        else:  # the file's little-endian values would need swapping: leave that to the package
            _safetensors_torch()
    except MissingDependencyError:
        raise
    except Exception as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise CheckpointError(f"cannot read {source}: {type(exc).__name__}: {reason}") from None
    return {k: v.to(map_location) for k, v in state.items()}


# -------------------------------------------------------------------------------------- save
def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` (``model.config``) and ``model.safetensors`` to ``directory``.

    The model must come from :func:`mgiad.create_model` (which records ``model.config``). Files
    are written atomically; an existing save in ``directory`` is replaced. Returns the directory.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError("save_pretrained needs the model's create_model arguments (model.config); "
                         "build the model with mgiad.create_model(name, ...)")
    if getattr(model, "bn_fused", False):
        raise ValueError("this model has its BatchNorms folded (mgiad.layers.fold.fuse_bn) and no longer "
                         "matches its config; save the model it was fused from")
    config = json.loads(json.dumps(config))  # plain JSON data, or a TypeError naming the value
    _safetensors_torch()  # fail before creating anything when safetensors is missing
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} exists and is not a directory")
    if any((directory / name).exists() for name in CHECKPOINT_NAMES):
        raise ValueError(f"{directory} is a training run directory (its config.json would be "
                         "replaced); save to another directory")
    directory.mkdir(parents=True, exist_ok=True)
    data = safetensors_bytes(model.state_dict(), {"model": str(config["model"])})
    atomic_write(directory / WEIGHTS_NAME, lambda fh: fh.write(data))
    write_json_atomic(config, directory / CONFIG_NAME)
    preprocessing = getattr(model, "preprocessing", None)
    if preprocessing:
        write_json_atomic(dict(preprocessing), directory / PREPROCESSING_NAME)
    else:  # a stale file from an earlier save would describe another model
        (directory / PREPROCESSING_NAME).unlink(missing_ok=True)
    cfg = getattr(model, "pretrained_cfg", None)
    if cfg:
        write_json_atomic(dict(cfg), directory / PRETRAINED_CFG_NAME)
    else:
        (directory / PRETRAINED_CFG_NAME).unlink(missing_ok=True)
    return directory


# -------------------------------------------------------------------------------------- load
def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except Exception as exc:
        raise CheckpointError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


def resolve(path: str | os.PathLike, checkpoint: str | None = None) -> tuple[str, Path]:
    """``("pretrained", directory)`` or ``("checkpoint", file)`` for anything we can load.
    ``checkpoint``: which file of a run directory, ``"best"`` or ``"last"`` (default: ``best.pt``,
    else ``last.pt``)."""
    path = Path(path)
    if checkpoint is not None and checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    if path.is_dir():
        if (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file():
            if checkpoint is not None:
                raise ValueError(f"{path} is a save_pretrained folder (one set of weights); "
                                 f"checkpoint={checkpoint!r} chooses a file of a training run")
            return "pretrained", path
        if checkpoint is not None:
            if not (path / f"{checkpoint}.pt").is_file():
                raise FileNotFoundError(f"{path} has no {checkpoint}.pt")
            return "checkpoint", path / f"{checkpoint}.pt"
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return "checkpoint", path / name
        if (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{path} has {CONFIG_NAME} but neither {WEIGHTS_NAME} nor "
                                    f"{' / '.join(CHECKPOINT_NAMES)}")
        raise FileNotFoundError(f"{path} holds no saved model: expected {CONFIG_NAME} + "
                                f"{WEIGHTS_NAME} (save_pretrained) or best.pt / last.pt (mgiad train)")
    if path.is_file():
        if path.suffix == ".safetensors":
            if not (path.parent / CONFIG_NAME).is_file():
                raise FileNotFoundError(f"{path.parent / CONFIG_NAME} is missing: it holds the "
                                        f"architecture of {path.name}")
            return "pretrained", path
        return "checkpoint", path
    raise FileNotFoundError(f"{path} does not exist")


def read_safetensors(path: Path, map_location) -> dict[str, torch.Tensor]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    return load_safetensors_bytes(data, str(path), map_location)


def read_preprocessing_file(path: Path) -> dict[str, Any]:
    """``preprocessing.json`` at ``path``: a JSON object, or a :class:`CheckpointError`."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not an object of dataset, image_size, mean, std "
                              f"(it holds a {type(data).__name__})")
    return data


def checkpoint_preprocessing(config: dict) -> dict[str, Any]:
    return {k: config[k] for k in PREPROCESSING_KEYS if config.get(k) is not None}


def read_preprocessing(path: str | os.PathLike) -> dict[str, Any]:
    """What is recorded about the inputs of the model saved at ``path`` (may be empty)."""
    kind, where = resolve(path)
    if kind == "checkpoint":
        return checkpoint_preprocessing(load_checkpoint(where)["config"])
    folder = where if where.is_dir() else where.parent
    file = folder / PREPROCESSING_NAME
    return read_preprocessing_file(file) if file.is_file() else {}


def load_weights(model: nn.Module, path: str | os.PathLike,
                 map_location: str | torch.device = "cpu", checkpoint: str | None = None) -> nn.Module:
    """Load the weights saved at ``path`` (as for :func:`mgiad.load_model`, ``checkpoint``
    included) into ``model``.

    Raises :class:`~mgiad.utils.checkpoint.CheckpointError` naming the tensors that disagree when
    ``model`` has another architecture or configuration than the saved one.
    """
    kind, where = resolve(path, checkpoint)
    if kind == "checkpoint":
        state, source = load_checkpoint(where, map_location)["model"], f"checkpoint {where}"
    else:
        folder = where if where.is_dir() else where.parent
        state = read_safetensors(folder / WEIGHTS_NAME, map_location)
        source = f"weights file {folder / WEIGHTS_NAME}"
    load_model_state(model, state, source)
    return model
