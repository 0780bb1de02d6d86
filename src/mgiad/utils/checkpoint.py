"""Checkpoints: written atomically, loaded without running code (``weights_only=True``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .io import atomic_write, write_json_atomic

__all__ = ["CheckpointError", "atomic_write", "save_checkpoint", "load_checkpoint", "load_model_state",
           "write_json_atomic", "check_training_state"]


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    atomic_write(Path(path), lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder without a checkpoint (best.pt or last.pt): "
                              "not a run directory, or a run that has not finished an epoch yet")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (a write cut short?)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, not a checkpoint, or one that would run code
        unsafe = "weights_only" in str(exc) or "Unsupported global" in str(exc)
        reason = ("it holds objects other than tensors and plain data, which mgiad never writes "
                  "and will not unpickle (they could run code)" if unsafe else
                  f"truncated or not a checkpoint ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})")
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path} is not an mgiad checkpoint (no 'model' and 'config' entries)")
    return state


def check_training_state(state: dict, path) -> None:
    """The entries a resumed run needs, with the right types, or a :class:`CheckpointError`."""
    expected = {"epoch": int, "batch": int, "optimizer": dict, "history": list, "best_acc": float,
                "rng": torch.Tensor}
    wrong = [k for k, kind in expected.items()
             if not isinstance(state.get(k), (int, float) if kind is float else kind)
             or isinstance(state.get(k), bool)]
    train = state["config"].get("train") if isinstance(state.get("config"), dict) else None
    if wrong or not isinstance(train, dict):
        what = ", ".join(wrong + ([] if isinstance(train, dict) else ["config.train"]))
        raise CheckpointError(f"{path} cannot be resumed: it lacks or has malformed {what} "
                              "(not a training checkpoint written by mgiad train, or damaged)")


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint"):
    """``load_state_dict`` that says which tensors disagree when the architectures differ."""
    own = model.state_dict()

    def head(items):
        return ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        parts = [f"{len(missing)} missing ({head(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected ({head(unexpected)})" if unexpected else "",
                 f"{len(mismatched)} with other shapes ({head(mismatched)})" if mismatched else ""]
        raise CheckpointError(f"the {source} was saved from another architecture or configuration: "
                              + "; ".join(p for p in parts if p))
    # NaN or infinite weights would answer NaN with exit status 0: a damaged file, never ours
    broken = [k for k, t in state.items() if isinstance(t, torch.Tensor) and t.is_floating_point()
              and not bool(torch.isfinite(t).all())]
    if broken:
        raise CheckpointError(f"the {source} holds non-finite values (NaN or infinity) in "
                              f"{head(broken)}: a damaged file or a diverged run; nothing was loaded")
    model.load_state_dict(state)
