"""What a run leaves in its directory besides checkpoints: ``config.json`` (the run record),
``metrics.jsonl``, ``summary.json``, TensorBoard logs, and the folder itself (claimed while the run
trains). A run records the command that started it as ``mgiad`` plus its arguments."""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..utils.io import atomic_write, write_json_atomic
from ..version import __version__
from .progress import plural
from .rundir import check_output_directory, claim, release

__all__ = ["command_line", "run_record", "start", "summary", "write_metrics", "open_run_dir", "tensorboard"]


def command_line(argv: list[str] | None = None) -> list[str]:
    """``["mgiad", *arguments]``: how to run this again, without this machine's paths (the
    program name is ``mgiad`` however it was started: the script, ``python -m mgiad``)."""
    argv = sys.argv if argv is None else argv
    return ["mgiad", *map(str, argv[1:])]


def run_record(trainer, checkpoint: dict | None = None, extended: dict | None = None) -> dict[str, Any]:
    """config.json: the training configuration and what a model user needs (size, norm); a
    resumed run keeps its record of settings changed on resuming, ``extended`` the new one."""
    info, model, runtime = trainer.info, trainer.model, trainer.runtime
    model_args = {k: v for k, v in model.config.items() if k != "model"}
    described = {"train": trainer.config.to_json(), "model": trainer.config.model,
                 "model_args": model_args, "dataset": info.name, "image_size": info.image_size,
                 "mean": list(info.mean), "std": list(info.std),
                 "class_names": list(info.class_names) if info.class_names else None,
                 "num_classes": model.num_classes, "in_chans": model.in_chans,
                 "mgiad_version": __version__, "torch_version": str(torch.__version__),
                 "world_size": runtime.world_size, "device": runtime.device.type,
                 "command": command_line()}
    described = json.loads(json.dumps(described, default=str))  # plain data: weights_only loads
    if checkpoint is not None:  # keep the record of settings changed on resuming
        described["changes_on_resume"] = list(checkpoint["config"].get("changes_on_resume", []))
        if extended is not None:
            described["changes_on_resume"].append(extended)
    return described


def start(trainer, resuming: bool, extended: dict | None) -> None:
    """The run directory at the start of training (main process): config.json written for a new
    run or a changed one, summary.json dropped when more epochs make it unfinished again; the
    run's first log line."""
    out, log = trainer.out, trainer.log
    out.mkdir(parents=True, exist_ok=True)
    if not resuming or extended is not None:
        write_json_atomic(trainer.run_config, out / "config.json")
    if extended is not None and "epochs" in extended["to"]:  # unfinished again
        (out / "summary.json").unlink(missing_ok=True)
        changes = ", ".join(f"{k} {extended['from'][k]} -> {v}" for k, v in extended["to"].items())
        log(f"run {out}: {changes} (from epoch {extended['at_epoch'] + 1}){extended['note']}")
    config, runtime = trainer.config, trainer.runtime
    cuda = runtime.device.type == "cuda"
    ranks = f" ({runtime.world_size} ranks)" if runtime.distributed else ""
    numerics = 'bf16 autocast' if trainer.amp else 'float32, TF32 off'
    mode = trainer.compile_mode
    compiled = (f"torch.compile mode {mode}: the first steps compile, about a minute; --compile off "
                "trains eagerly" if mode else "eager")
    log(f"run {out}: {config.model} ({trainer.weights:,} weights, "
        f"{trainer.flops.gflops:.3f} GFLOPs) on {trainer.info.name}, "
        f"{plural(config.epochs, 'epoch')}, batch {config.batch_size}{ranks}, device {runtime.device}"
        + (f" ({trainer.device_name}, {numerics}, {compiled})" if cuda else
           (", bf16 autocast" if trainer.amp else "")
           + (f", torch.compile mode {mode}" if mode else ""))
        + ("" if not resuming else f", resuming at epoch {trainer.epoch + 1}"
           if trainer.epoch < config.epochs else ", already finished: nothing to train "
           "(extend it with --epochs N)"))


def summary(trainer, train: dict[str, float]) -> dict[str, Any]:
    """summary.json of a finished run; ``train``: the final model on the training set."""
    config, runtime, history = trainer.config, trainer.runtime, trainer.history
    last = history[-1]
    return {"model": config.model, "dataset": trainer.info.name, "weights": trainer.weights,
            "multiply_adds": trainer.flops.macs, "flops": trainer.flops.flops,
            "epochs": config.epochs, "best_test_acc": trainer.best_acc,
            "final_test_acc": last["test_acc"], "train_acc": train["acc"],
            "train_loss": train["loss"], "final_train_acc": train["acc"],
            "final_train_running_acc": last.get("train_running_acc", last.get("train_acc")),
            "augment": config.augment,
            "final_test_loss": last["test_loss"], "wall_seconds": last["elapsed"],
            "train_seconds": sum(h["seconds"] for h in history),
            "images_per_s": sum(h["images_per_s"] for h in history) / len(history),
            "machine": platform.machine(), "device": runtime.device.type,
            **({"device_name": trainer.device_name} if runtime.device.type == "cuda" else {}),
            "world_size": runtime.world_size, "run_dir": str(trainer.out)}


def open_run_dir(config, runtime, resuming: bool) -> Path:
    """The run directory (default ``runs/<model>-<dataset>-<time>``), claimed by this process
    until :func:`~mgiad.training.rundir.release`; a new run refuses a folder holding one."""
    out = Path(config.out or Path("runs") / f"{config.model}-{config.dataset}-"
               f"{time.strftime('%Y%m%d-%H%M%S')}")
    if runtime.distributed and config.out is None:  # every rank must agree on the folder
        names = [str(out)]
        dist.broadcast_object_list(names, src=0)
        out = Path(names[0])
    if runtime.is_main:
        if not resuming:
            check_output_directory(out)
        claim(out)  # this process's run directory until close(): no second trainer in it
        if not resuming and (out / "last.pt").exists():
            release(out)
            raise ValueError(f"{out} already holds a run; continue it with --resume {out} "
                             "(or extend a finished one with --resume --epochs N), or choose "
                             "another --out")
    return out


def write_metrics(history: list[dict], path: Path) -> None:
    """metrics.jsonl, one line per finished epoch, rewritten from the checkpointed history so a
    crash between two writes never leaves a duplicate or a missing line."""
    atomic_write(path, lambda fh: fh.write("".join(json.dumps(h) + "\n" for h in history).encode()))


def tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(str(out / "tensorboard"))
    except Exception as exc:
        print(f"TensorBoard logging is off ({type(exc).__name__}: {exc}); install it with "
              "`pip install -c constraints.txt tensorboard`", file=sys.stderr)
        return None
