"""One training loop for every model and dataset: a single process, or DDP under ``torchrun``.

The paper's recipe is the default (section 4): SGD, momentum 0.9, weight decay 1e-4, batch 128,
learning rate 0.05, cosine annealing, 400 epochs; Fashion-MNIST multiplies the learning rate by 0.1
every 25 epochs; ImageNet uses batch 512. A run writes ``config.json``, ``metrics.jsonl``,
``last.pt`` (every epoch, and on Ctrl-C), ``best.pt`` and ``summary.json`` to its directory.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import platform
import random
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from . import __version__
from .checkpoint import (CheckpointError, atomic_write, check_training_state, load_checkpoint,
                         load_model_state, save_checkpoint, write_json_atomic)
from .counting import count_flops, count_parameters
from .data import build_loaders, dataset_info
from .progress import ProgressReporter, plural, progress_bar
from .registry import create_model, model_arguments
from .rundir import check_output_directory, claim, ensure_free, release

__all__ = ["TrainConfig", "PRESETS", "Trainer", "resolve_config", "train", "evaluate",
           "TrainingDiverged", "shutdown_distributed"]

SCHEDULES = ("cosine", "step", "constant")

# per-dataset recipe (paper section 4) and, for the embedded default, a small MGiaD
PRESETS: dict[str, dict[str, Any]] = {
    "default": dict(epochs=400, batch_size=128, lr=0.05, schedule="cosine"),
    "fashion-mnist": dict(schedule="step"),
    "imagenet": dict(batch_size=512),
    # offline default: 1,437 training images; a 3-level MGiaD (28k weights) reaches ~98% in ~1 min
    "digits": dict(epochs=15, batch_size=32, lr=0.05, warmup_epochs=1,
                   model_args={"mgiad": dict(widths=(16, 32, 64), coarse_channels=16,
                                             group_size=4)}),
}


@dataclass
class TrainConfig:
    """Everything needed to rerun a training run; serialised to ``config.json``.

    ``None`` fields take the dataset's preset (see ``PRESETS``) in :func:`resolve_config`.
    """

    model: str = "mgiad"
    model_args: dict[str, Any] = field(default_factory=dict)
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    verify_data: bool = True       # split sizes and known checksums (mgiad.data.verify)
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    schedule: str | None = None
    step_size: int = 25            # "step": multiply the learning rate by gamma every step_size epochs
    warmup_epochs: int | None = None  # linear warm-up over the first epochs' steps (paper: 0)
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    augment: bool | None = None    # training-batch augmentation; default: the dataset's (none for
    seed: int = 0                  # Fashion-MNIST, as the paper; crops and flips for the others)
    device: str = "auto"
    amp: bool | None = None        # bf16 autocast; default: on for CUDA
    channels_last: bool | None = None  # default: on for CUDA
    compile: bool | str | None = None  # torch.compile: False, True ("default") or a mode name;
                                       # default: "reduce-overhead" on one GPU (compile_mode)
    workers: int | None = None
    out: str | None = None
    progress: bool | None = None   # default: when stderr is a terminal
    tensorboard: bool = False

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training configuration field(s): {', '.join(unknown)}")
        return cls(**data)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Fill unset fields from the dataset's preset and the dataset's shape; validate values."""
    info = dataset_info(config.dataset)  # raises DatasetError for unknown names
    preset = {**PRESETS["default"], **PRESETS.get(info.name, {})}
    values = {k: (preset.get(k) if getattr(config, k) is None else getattr(config, k))
              for k in ("epochs", "batch_size", "lr", "schedule", "warmup_epochs")}
    if config.warmup_epochs is None:  # the preset's warm-up, never longer than the run
        values["warmup_epochs"] = min(values["warmup_epochs"] or 0, values["epochs"])
    model_args = dict(preset.get("model_args", {}).get(config.model, {}))
    model_args.update(num_classes=info.num_classes, in_chans=info.in_chans)
    model_args.update(config.model_args)
    valid = model_arguments(config.model)  # raises for unknown models
    model_args = {k: v for k, v in model_args.items() if k in valid or k in config.model_args}
    classes, chans = model_args.get("num_classes"), model_args.get("in_chans")
    if isinstance(classes, int) and classes < info.num_classes:
        raise ValueError(f"num_classes={classes}: {info.name} has {info.num_classes} classes (labels "
                         f"0-{info.num_classes - 1}); give at least {info.num_classes}")
    if isinstance(chans, int) and chans != info.in_chans:
        raise ValueError(f"in_chans={chans}: {info.name} images have {info.in_chans} channel(s)")
    augment = info.augment if config.augment is None else config.augment
    resolved = dataclasses.replace(config, dataset=info.name, model_args=model_args,
                                   augment=augment, **values)
    for name in ("epochs", "batch_size", "step_size"):
        value = getattr(resolved, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    warmup = resolved.warmup_epochs
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup <= resolved.epochs:
        raise ValueError(f"warmup_epochs must be an integer in 0..epochs, got {warmup!r}")
    if not resolved.lr > 0 or not math.isfinite(resolved.lr):
        raise ValueError(f"lr must be a positive number, got {resolved.lr!r}")
    if resolved.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {resolved.schedule!r}")
    def number(name: str) -> float:
        value = getattr(resolved, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        return value
    if not 0 <= number("label_smoothing") < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {resolved.label_smoothing!r}")
    if number("weight_decay") < 0:
        raise ValueError(f"weight_decay must be >= 0, got {resolved.weight_decay!r}")
    if not 0 <= number("momentum") < 1:
        raise ValueError(f"momentum must be in [0, 1), got {resolved.momentum!r}")
    if not 0 < number("gamma") <= 1:
        raise ValueError(f"gamma (the step schedule's decay factor) must be in (0, 1], got "
                         f"{resolved.gamma!r}")
    compile_mode(resolved.compile, "cpu")  # raises for an unknown mode
    if resolved.workers is not None and (isinstance(resolved.workers, bool) or
                                         not isinstance(resolved.workers, int) or resolved.workers < 0):
        raise ValueError(f"workers must be an integer >= 0, got {resolved.workers!r}")
    return resolved


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode(value: bool | str | None, device_type: str, distributed: bool = False) -> str | None:
    """The ``torch.compile`` mode that ``TrainConfig.compile`` asks for, or ``None`` for eager.

    Unset (``None``): ``"reduce-overhead"`` (compiled, in CUDA graphs) for one CUDA process, the
    fastest of the modes measured on an H200 for every model (docs/performance.md); eager on
    the CPU and under torchrun."""
    if value is None:
        return "reduce-overhead" if device_type == "cuda" and not distributed else None
    if value is False or value in ("off", "none", "false"):
        return None
    if value is True or value in ("true", "on"):
        return "default"
    if value not in COMPILE_MODES:
        raise ValueError(f"compile must be true, false or one of {', '.join(COMPILE_MODES)}; "
                         f"got {value!r}")
    return value


# what a resumed run may change: its length and optimiser settings (e.g. a lower learning rate
# after a divergence), and where and how it runs
RESUME_OVERRIDES = ("epochs", "lr", "gamma", "momentum", "weight_decay", "data_dir", "device",
                    "workers", "progress", "tensorboard", "compile")


def _resume_changes(config: TrainConfig, overrides: dict[str, Any], done: int) -> dict | None:
    """Validate settings changed when resuming a run; describe the change for config.json."""
    unknown = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if unknown:
        raise ValueError(f"a resumed run keeps its recorded {', '.join(unknown)}; only "
                         f"{', '.join(RESUME_OVERRIDES)} may change")
    changed = {k: v for k, v in overrides.items() if getattr(config, k) != v}
    if not (set(changed) - {"data_dir", "device", "workers", "progress", "tensorboard"}):
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


def warmup_factor(config: TrainConfig, epoch: int, batch: int, steps: int) -> float:
    """Linear warm-up: step ``batch`` of ``epoch`` trains at ``(k + 1) / K`` of the scheduled
    rate, ``k`` counting the steps of the first ``warmup_epochs`` epochs (``K`` of them)."""
    total = config.warmup_epochs * steps
    k = epoch * steps + batch
    return 1.0 if k >= total else (k + 1) / total


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """Learning rate of (0-based) ``epoch``: cosine annealing to 0, step decay, or constant
    (before the warm-up factor of :func:`warmup_factor`)."""
    if config.schedule == "cosine":
        return 0.5 * config.lr * (1 + math.cos(math.pi * epoch / config.epochs))
    if config.schedule == "step":
        return config.lr * config.gamma ** (epoch // config.step_size)
    return config.lr


# ------------------------------------------------------------------------------- environment
@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_runtime(device: str) -> Runtime:
    """Pick the device; under torchrun, join the process group (NCCL on GPU, Gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but no CUDA device is available")
        dev = torch.device("cuda", local_rank if world_size > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Runtime(dev, rank, world_size, local_rank)


def shutdown_distributed() -> None:
    """Leave the process group cleanly (a group left to the interpreter's exit can abort a rank
    with "terminate called without an active exception" and fail a finished torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def _all_reduce(values: list[float], runtime: Runtime) -> list[float]:
    if not runtime.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t)
    return t.tolist()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------ loops
def _autocast(runtime: Runtime, amp: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16) if amp and runtime.device.type == "cuda" \
        else nullcontext()


def evaluate(model: nn.Module, loader, runtime: Runtime, amp: bool = False,
             channels_last: bool = False, stop: dict | None = None) -> dict[str, float]:
    """Test loss and accuracy (percent), summed over every rank's shard, and the seconds taken.
    ``stop``: the training loop's stop flag; Ctrl-C / SIGTERM then interrupts the evaluation."""
    t0 = time.time()
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=runtime.device)  # loss, correct, count
    with torch.no_grad(), _autocast(runtime, amp):
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if stop is not None and stop["requested"]:
                raise _Interrupted
            logits = model(x).float()
            sums[0] += F.cross_entropy(logits, y, reduction="sum")
            sums[1] += (logits.argmax(1) == y).sum()
            sums[2] += y.numel()
    loss_sum, correct, count = _all_reduce(sums.tolist(), runtime)
    return {"loss": loss_sum / max(count, 1), "acc": 100.0 * correct / max(count, 1),
            "seconds": time.time() - t0}


class _Interrupted(Exception):
    """Ctrl-C / SIGTERM was honoured at a step boundary: (epoch, batch) to resume from."""


class Trainer:
    """One run: builds everything from a :class:`TrainConfig`, then :meth:`fit` trains it.

    ``resume``: a run directory or its ``last.pt``; the configuration is taken from it.
    """

    def __init__(self, config: TrainConfig, resume: str | os.PathLike | None = None, log=print,
                 overrides: dict[str, Any] | None = None):
        checkpoint, extended = None, None
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        if resume is not None:
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
            extended = _resume_changes(config, overrides, checkpoint["epoch"])
            config = dataclasses.replace(config, **overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config = resolve_config(config)
        self.log = log
        self.runtime = runtime = setup_runtime(config.device)
        cuda = runtime.device.type == "cuda"
        self.amp = cuda if config.amp is None else config.amp
        if cuda and not self.amp:  # float32 as asked: cuDNN would run convolutions in TF32
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        if cuda:  # every step has the same shapes: let cuDNN pick each convolution's algorithm
            torch.backends.cudnn.benchmark = True
        self.compile_mode = compile_mode(config.compile, runtime.device.type, runtime.distributed)
        # recorded with every epoch: a run resumed elsewhere says which epochs ran where
        self.device_name = torch.cuda.get_device_name(runtime.device) if cuda else "cpu"
        self.channels_last = cuda if config.channels_last is None else config.channels_last
        self.show_progress = runtime.is_main and (sys.stderr.isatty() if config.progress is None
                                                  else config.progress)
        self.out = self._run_dir(checkpoint is not None)
        try:
            self._build(checkpoint, extended)
        except BaseException:
            self.close()
            raise

    def _build(self, checkpoint: dict | None, extended: dict | None) -> None:
        config, runtime, log = self.config, self.runtime, self.log
        if config.batch_size % runtime.world_size:
            raise ValueError(f"batch_size={config.batch_size} is the global batch; it must be "
                             f"divisible by the {runtime.world_size} processes")

        _seed_everything(config.seed)
        self.model = model = create_model(config.model, **config.model_args)
        self.info = info = dataset_info(config.dataset)
        self.weights, self.flops = count_parameters(model), count_flops(model, info.image_size)
        model.to(runtime.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)
        # progress: next (epoch, batch), best test accuracy, finished epochs' metrics, and the
        # running sums of a half-done epoch
        self.epoch, self.batch, self.best_acc, self.history = 0, 0, -1.0, []
        self.partial = {"loss_sum": 0.0, "correct": 0.0, "seen": 0, "seconds": 0.0}
        if checkpoint is not None:
            load_model_state(model, checkpoint["model"], f"checkpoint in {self.out}")
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            for group in self.optimizer.param_groups:  # settings changed on resuming apply
                group.update(momentum=config.momentum, weight_decay=config.weight_decay)
            self.epoch, self.batch = checkpoint["epoch"], checkpoint["batch"]
            self.best_acc, self.history = checkpoint["best_acc"], list(checkpoint["history"])
            self.partial = dict(checkpoint.get("partial", self.partial))
            torch.set_rng_state(checkpoint["rng"])
        self.net = self._wrap(model)
        self.train_loader, self.test_loader = build_loaders(
            config.dataset, config.data_dir, batch_size=config.batch_size // runtime.world_size,
            device=runtime.device, download=config.download, augment=config.augment,
            verify=None if config.verify_data else False,
            seed=config.seed, rank=runtime.rank, world_size=runtime.world_size,
            workers=config.workers)
        self.run_config = self._describe()
        if checkpoint is not None:  # keep the record of settings changed on resuming
            self.run_config["changes_on_resume"] = list(
                checkpoint["config"].get("changes_on_resume", []))
            if extended is not None:
                self.run_config["changes_on_resume"].append(extended)
        self.writer = None
        if runtime.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if checkpoint is None or extended is not None:
                write_json_atomic(self.run_config, self.out / "config.json")
            if extended is not None and "epochs" in extended["to"]:  # unfinished again
                (self.out / "summary.json").unlink(missing_ok=True)
                changes = ", ".join(f"{k} {extended['from'][k]} -> {v}"
                                    for k, v in extended["to"].items())
                log(f"run {self.out}: {changes} (from epoch {extended['at_epoch'] + 1})"
                    f"{extended['note']}")
            log(f"run {self.out}: {config.model} ({self.weights:,} weights, "
                f"{self.flops.gflops:.3f} GFLOPs) on {info.name}, {plural(config.epochs, 'epoch')}, batch "
                f"{config.batch_size}{f' ({runtime.world_size} ranks)' if runtime.distributed else ''}"
                f", device {runtime.device}"
                + (f" ({self.device_name}, "
                   f"{'bf16 autocast' if self.amp else 'float32, TF32 off'}, "
                   + (f"torch.compile mode {self.compile_mode}: the first steps compile, about "
                      "a minute; --compile off trains eagerly)" if self.compile_mode else "eager)")
                   if runtime.device.type == "cuda" else
                   f", torch.compile mode {self.compile_mode}" if self.compile_mode else "")
                + ("" if checkpoint is None else f", resuming at epoch {self.epoch + 1}"
                   if self.epoch < config.epochs else ", already finished: nothing to train "
                   "(extend it with --epochs N)"))
            self.writer = _tensorboard(self.out) if config.tensorboard else None

    def _run_dir(self, resuming: bool) -> Path:
        config, runtime = self.config, self.runtime
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

    def close(self) -> None:
        """Give the run directory back (a crashed process gives it back by exiting)."""
        if self.runtime.is_main and getattr(self, "out", None) is not None:
            release(self.out)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP (with SyncBatchNorm on CUDA) under torchrun, then torch.compile if asked for."""
        net, runtime = model, self.runtime
        if runtime.distributed:
            if runtime.device.type == "cuda":
                net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
        if self.compile_mode is None:
            return net
        return torch.compile(net, mode=self.compile_mode, dynamic=False)

    def _describe(self) -> dict[str, Any]:
        """config.json: the training configuration and what a model user needs (size, norm)."""
        info, model, runtime = self.info, self.model, self.runtime
        model_args = {k: v for k, v in model.config.items() if k != "model"}
        described = {"train": self.config.to_json(), "model": self.config.model,
                     "model_args": model_args, "dataset": info.name, "image_size": info.image_size,
                     "mean": list(info.mean), "std": list(info.std),
                     "num_classes": model.num_classes, "in_chans": model.in_chans,
                     "mgiad_version": __version__, "torch_version": str(torch.__version__),
                     "world_size": runtime.world_size, "device": runtime.device.type,
                     "command": sys.argv}
        return json.loads(json.dumps(described, default=str))  # plain data: weights_only loads

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "epoch": self.epoch, "batch": self.batch, "best_acc": self.best_acc,
                "history": self.history, "partial": self.partial,
                "rng": torch.get_rng_state(), "config": self.run_config}

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs; Ctrl-C saves ``last.pt`` and raises KeyboardInterrupt."""
        config, runtime, out = self.config, self.runtime, self.out
        steps = len(self.train_loader)
        self.progress = ProgressReporter(self.log if runtime.is_main else _quiet,
                                         config.epochs * steps, self.epoch * steps + self.batch)
        if runtime.is_main and self.epoch < config.epochs:
            self.progress.plan(config.epochs, steps, config.batch_size, self.epoch)
        with _stop_on_signals() as stop:
            self.stop = stop
            try:
                while self.epoch < config.epochs:
                    self._train_epoch(stop)
                    self._end_epoch(stop)
            except _Interrupted:
                if runtime.is_main:
                    where = (f"in epoch {self.epoch + 1} after batch {self.batch}"
                             if self.batch < steps else f"while evaluating epoch {self.epoch + 1}")
                    if self._save("last.pt"):
                        self.log(f"interrupted {where}: saved {out / 'last.pt'}; continue with: "
                                 f"mgiad train --resume {out}")
                raise KeyboardInterrupt from None
            finally:
                if self.writer is not None:
                    self.writer.close()
        last = self.history[-1]
        # the paper's train accuracy: the final model in eval mode on the un-augmented training set
        train = evaluate(self.model, self.train_loader.evaluation(), runtime, self.amp,
                         self.channels_last)
        summary = {"model": config.model, "dataset": self.info.name, "weights": self.weights,
                   "multiply_adds": self.flops.macs, "flops": self.flops.flops,
                   "epochs": config.epochs, "best_test_acc": self.best_acc,
                   "final_test_acc": last["test_acc"], "train_acc": train["acc"],
                   "train_loss": train["loss"], "final_train_acc": train["acc"],
                   "final_train_running_acc": last.get("train_running_acc", last.get("train_acc")),
                   "augment": config.augment,
                   "final_test_loss": last["test_loss"], "wall_seconds": last["elapsed"],
                   "train_seconds": sum(h["seconds"] for h in self.history),
                   "images_per_s": sum(h["images_per_s"] for h in self.history) / len(self.history),
                   "machine": platform.machine(), "device": runtime.device.type,
                   **({"device_name": self.device_name} if runtime.device.type == "cuda" else {}),
                   "world_size": runtime.world_size, "run_dir": str(out)}
        if runtime.is_main:
            write_json_atomic(summary, out / "summary.json")
            self.log(f"done: best test acc {self.best_acc:.2f}%, final {last['test_acc']:.2f}%, "
                     f"train acc {train['acc']:.2f}% (eval mode, training set) "
                     f"({summary['wall_seconds']:.0f}s) -> {out}")
        return summary

    def _train_epoch(self, stop: dict) -> None:
        """One pass over the training shard from batch ``self.batch``, summing into ``partial``."""
        config, runtime, epoch = self.config, self.runtime, self.epoch
        lr = learning_rate(config, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.train_loader.set_epoch(epoch)
        self.net.train()
        t0, steps = time.time(), len(self.train_loader)
        loss_sum = torch.zeros((), dtype=torch.float64, device=runtime.device)
        correct = torch.zeros((), dtype=torch.float64, device=runtime.device)
        seen = 0
        batches = itertools.islice(enumerate(self.train_loader), self.batch, None)
        bar = progress_bar(batches, steps - self.batch, self.show_progress,
                           f"epoch {epoch + 1}/{config.epochs}")
        cuda = runtime.device.type == "cuda"

        def fold_into_partial(batch: int) -> None:
            p = self.partial
            p["loss_sum"] += loss_sum.item()
            p["correct"] += correct.item()
            p["seen"] += seen
            p["seconds"] += time.time() - t0
            self.batch = batch

        self.progress.start_epoch()
        for i, (x, y) in bar:
            if epoch < config.warmup_epochs:
                for group in self.optimizer.param_groups:
                    group["lr"] = lr * warmup_factor(config, epoch, i, steps)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(runtime, self.amp):
                logits = self.net(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
            # before the update, so that a non-finite loss never reaches the weights; on CUDA only
            # every 10th step (each check waits for the GPU), the weights are checked before saving
            check = not cuda or i % 10 == 0 or i + 1 == steps
            if check and not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} in epoch {epoch + 1}, batch {i + 1} (lr {lr:g}); "
                    f"{self._last_good()} Lower the learning rate (mgiad train --resume "
                    f"{self.out} --lr ...) or check the data")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach() * y.numel()
            correct += (logits.argmax(1) == y).sum()
            seen += y.numel()
            self.progress.step()
            if self.show_progress and check:
                bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{100 * correct.item() / seen:.1f}",
                                img_s=f"{seen / (time.time() - t0):.0f}", eta=self.progress.eta_text())
            elif runtime.is_main and self.progress.due():
                self.log(f"epoch {epoch + 1}/{config.epochs} step {i + 1}/{steps}  loss "
                         f"{loss.item():.4f}  running acc {100 * correct.item() / seen:.2f}  "
                         f"{seen / (time.time() - t0):.0f} img/s  {self.progress.eta_text()}")
            if _stop_requested(stop, runtime):  # within one step of Ctrl-C / SIGTERM
                fold_into_partial(i + 1)
                raise _Interrupted
        fold_into_partial(steps)

    def _end_epoch(self, stop: dict) -> None:
        """All-reduce the epoch's sums, evaluate, checkpoint, log."""
        runtime, out, p = self.runtime, self.out, self.partial
        loss_sum, correct, seen = _all_reduce([p["loss_sum"], p["correct"], float(p["seen"])],
                                              runtime)
        if not math.isfinite(loss_sum):
            raise TrainingDiverged(f"the training loss of epoch {self.epoch + 1} is not finite; "
                                   f"{self._last_good()}")
        _average_buffers(self.model, runtime)
        test = evaluate(self.model, self.test_loader, runtime, self.amp, self.channels_last,
                        stop=None if runtime.distributed else stop)
        if not math.isfinite(test["loss"]):
            raise TrainingDiverged(f"the test loss after epoch {self.epoch + 1} is not finite "
                                   f"({test['loss']}): the model diverged; {self._last_good()}")
        previous = self.history[-1]["elapsed"] if self.history else 0.0
        metrics = {"epoch": self.epoch + 1, "lr": learning_rate(self.config, self.epoch),
                   # running figures over the epoch's (augmented) batches in train mode
                   "train_loss": loss_sum / max(seen, 1),
                   "train_running_acc": 100.0 * correct / max(seen, 1),
                   "test_loss": test["loss"], "test_acc": test["acc"], "seconds": p["seconds"],
                   "images_per_s": seen / max(p["seconds"], 1e-9),
                   "elapsed": previous + p["seconds"] + test["seconds"],
                   "device": self.device_name}
        self.progress.eval_fraction = test["seconds"] / max(p["seconds"], 1e-9)
        self.history.append(metrics)
        improved = metrics["test_acc"] > self.best_acc
        self.best_acc = max(self.best_acc, metrics["test_acc"])
        self.epoch, self.batch = self.epoch + 1, 0
        self.partial = {"loss_sum": 0.0, "correct": 0.0, "seen": 0, "seconds": 0.0}
        if not runtime.is_main:
            return
        # best.pt before last.pt: last.pt never records a best accuracy that best.pt lacks (a
        # crash between the two leaves best.pt one epoch ahead; resuming redoes that epoch exactly)
        if improved:
            self._save("best.pt")
        self._save("last.pt")
        _write_metrics(self.history, out / "metrics.jsonl")
        if self.writer is not None:
            for key, value in metrics.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, metrics["epoch"])
        self.log(f"epoch {metrics['epoch']:>3}/{self.config.epochs}  lr {metrics['lr']:.4f}  "
                 f"train loss {metrics['train_loss']:.4f} acc {metrics['train_running_acc']:.2f}  "
                 f"test loss {metrics['test_loss']:.4f} acc {metrics['test_acc']:.2f}  "
                 f"{metrics['seconds']:.1f}s {metrics['images_per_s']:.0f} img/s  "
                 + (self.progress.eta_text() if self.epoch < self.config.epochs else "last epoch"))

    def _save(self, name: str) -> bool:
        """Write ``name`` atomically with Ctrl-C deferred; never a non-finite state."""
        bad = [n for n, t in self.model.state_dict().items()
               if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            self.log(f"not saving {name}: {len(bad)} tensors are not finite ({', '.join(bad[:3])}"
                     f"{', ...' if len(bad) > 3 else ''}); {self._last_good()}")
            return False
        with _signals_deferred(getattr(self, "stop", None)):
            save_checkpoint(self.state(), self.out / name)
        return True

    def _last_good(self) -> str:
        last = self.out / "last.pt"
        if last.is_file():
            return f"{last} still holds the last good state."
        return "no checkpoint had been written yet."


def train(config: TrainConfig, resume: str | os.PathLike | None = None, log=print,
          return_model: bool = False, **overrides):
    """Train ``config`` and return the summary (and the trained model if ``return_model``).

    ``resume``: a run directory or ``last.pt`` to continue; the configuration is taken from it.
    ``overrides`` (with ``resume``): ``epochs`` (e.g. extend a finished run; with the step
    schedule the longer run is the one planned that long from the start), ``lr`` (the schedule's
    base learning rate from the resumed epoch on, e.g. after a divergence), ``gamma``,
    ``momentum``, ``weight_decay``; each change is recorded in config.json.
    """
    trainer = Trainer(config, resume, log, overrides=overrides)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    return (summary, trainer.model) if return_model else summary


@contextmanager
def _stop_on_signals():
    """Ctrl-C or SIGTERM (a scheduler's preemption) asks the loop to stop after the current step;
    a second Ctrl-C stops at once, except while a checkpoint is being written."""
    stop = {"requested": False, "saving": False}

    def request_stop(signum, frame):
        if stop["requested"] and not stop["saving"]:
            raise KeyboardInterrupt
        stop["requested"] = True
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, request_stop)
        except ValueError:  # not the main thread: signals stay as they are
            pass
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _signals_deferred(stop: dict | None):
    """While a checkpoint is written, a further Ctrl-C only asks to stop (it never truncates)."""
    if stop is None:
        yield
        return
    stop["saving"] = True
    try:
        yield
    finally:
        stop["saving"] = False


def _average_buffers(model: nn.Module, runtime: Runtime) -> None:
    """Average BatchNorm running statistics over ranks, so that every rank evaluates and ends with
    the same model (DDP keeps parameters equal, but each rank's last step updates its own stats;
    SyncBatchNorm on CUDA keeps them equal already)."""
    if not runtime.distributed:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= runtime.world_size


def _write_metrics(history: list[dict], path: Path) -> None:
    """metrics.jsonl, one line per finished epoch, rewritten from the checkpointed history so a
    crash between two writes never leaves a duplicate or a missing line."""
    atomic_write(path, lambda fh: fh.write("".join(json.dumps(h) + "\n" for h in history).encode()))


def _quiet(*args, **kwargs) -> None:
    pass


def _stop_requested(stop: dict, runtime: Runtime) -> bool:
    """Every rank stops at the same step: rank 0's Ctrl-C is shared with the others."""
    if not runtime.distributed:
        return stop["requested"]
    flag = torch.tensor([1.0 if stop["requested"] else 0.0], device=runtime.device)
    dist.all_reduce(flag)
    return bool(flag.item())


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(str(out / "tensorboard"))
    except Exception as exc:
        print(f"TensorBoard logging is off ({type(exc).__name__}: {exc}); pip install tensorboard",
              file=sys.stderr)
        return None
