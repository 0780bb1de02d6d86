"""Continuing a run from its ``last.pt``: the recorded configuration, and the settings a resumed
run may change (:data:`~mgiad.training.config.RESUME_OVERRIDES`), recorded in its config.json."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from ..utils.checkpoint import CheckpointError, check_training_state, load_checkpoint, load_model_state
from .config import RESUME_OVERRIDES, TrainConfig, fields_of
from .progress import plural
from .rundir import ensure_free

__all__ = ["load_resumed", "resume_changes", "restore"]


def load_resumed(resume: str | os.PathLike, overrides: dict[str, Any]):
    """(configuration, checkpoint, the change to record or None) of the run to continue in
    ``resume`` (a run directory or its ``last.pt``), with ``overrides`` applied."""
    path = Path(resume)
    if int(os.environ.get("RANK", "0")) == 0:
        ensure_free(path if path.is_dir() else path.parent)
    if path.is_dir() and not (path / "last.pt").is_file():
        raise CheckpointError(f"{path} holds no last.pt: nothing to resume (a run that "
                              "had not finished its first epoch, or not a run directory)")
    checkpoint = load_checkpoint(path / "last.pt" if path.is_dir() else path)
    check_training_state(checkpoint, path)
    recorded = dict(checkpoint["config"].get("train") or {})
    recorded.setdefault("augment", True)  # runs from before the field always augmented
    try:
        config = TrainConfig.from_json(recorded)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint in {path} does not record a usable "
                              f"training configuration ({exc})") from None
    config.out = str(path if path.is_dir() else path.parent)
    extended = resume_changes(config, overrides, checkpoint["epoch"])
    return dataclasses.replace(config, **overrides), checkpoint, extended


def resume_changes(config: TrainConfig, overrides: dict[str, Any], done: int) -> dict | None:
    """Validate settings changed when resuming a run; describe the change for config.json."""
    unknown = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if unknown:
        raise ValueError(f"a resumed run keeps its recorded {', '.join(unknown)}; only "
                         f"{', '.join(RESUME_OVERRIDES)} may change")
    changed = {k: v for k, v in overrides.items() if getattr(config, k) != v}
    if not (set(changed) - set(fields_of("where"))):
        return None  # where and how it runs: not a change of the run
    epochs = changed.get("epochs")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                               or epochs < max(done, 1)):
        raise ValueError(f"--epochs {epochs!r}: the run has already trained {plural(done, 'epoch')}; give "
                         f"at least {max(done, 1)}")
    note = ""
    if epochs is not None and config.schedule == "cosine":  # the curve depends on the total
        note = (f"; the cosine schedule now anneals to epoch {epochs}, so from epoch {done + 1} "
                f"on this run differs from one planned with {epochs} epochs")
    return {"at_epoch": done, "from": {k: getattr(config, k) for k in changed}, "to": changed,
            "note": note}


def restore(trainer, checkpoint: dict) -> None:
    """Model, optimiser, progress and random state of the run being resumed, into ``trainer``."""
    config, optimizer = trainer.config, trainer.optimizer
    load_model_state(trainer.model, checkpoint["model"], f"checkpoint in {trainer.out}")
    optimizer.load_state_dict(checkpoint["optimizer"])
    for group in optimizer.param_groups:  # settings changed on resuming apply
        group.update(momentum=config.momentum, weight_decay=config.weight_decay)
    trainer.epoch, trainer.batch = checkpoint["epoch"], checkpoint["batch"]
    trainer.best_acc, trainer.history = checkpoint["best_acc"], list(checkpoint["history"])
    trainer.partial = dict(checkpoint.get("partial", trainer.partial))
    torch.set_rng_state(checkpoint["rng"])
