"""One training loop for every model and dataset: a single process, or DDP under ``torchrun``.

The paper's recipe is the default (section 4, :mod:`.config`): SGD, momentum 0.9, weight decay
1e-4, batch 128, learning rate 0.05, cosine annealing, 400 epochs; Fashion-MNIST multiplies the
learning rate by 0.1 every 25 epochs; ImageNet uses batch 512. A run writes ``config.json``,
``metrics.jsonl``, ``last.pt`` (every epoch, and on Ctrl-C), ``best.pt`` and ``summary.json`` to
its directory (:mod:`.record`). The :class:`Trainer` keeps the loop: build, fit, one epoch, end of
epoch, save; resuming (:mod:`.resume`), the process group (:mod:`.distributed`) and signals
(:mod:`.signals`) live beside it.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import random
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from ..data import build_loaders, dataset_info
from ..models import create_model, initialize_from
from ..utils.checkpoint import save_checkpoint, write_json_atomic
from ..utils.counting import count_flops, count_parameters
from . import record
from .config import TrainConfig, compile_mode, learning_rate, resolve_config, warmup_factor
from .distributed import all_reduce, average_buffers, setup_runtime, stop_requested, wrap
from .evaluate import autocast, evaluate
from .progress import ProgressReporter, progress_bar
from .record import open_run_dir, run_record, tensorboard, write_metrics
from .resume import load_resumed, restore
from .rundir import release
from .signals import Interrupted, signals_deferred, stop_on_signals

__all__ = ["Trainer", "train", "TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class Trainer:
    """One run: builds everything from a :class:`TrainConfig`, then :meth:`fit` trains it.

    ``resume``: a run directory or its ``last.pt``; the configuration is taken from it.
    """

    def __init__(self, config: TrainConfig, resume: str | os.PathLike | None = None, log=print,
                 overrides: dict[str, Any] | None = None):
        checkpoint, extended = None, None
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        if resume is not None:
            config, checkpoint, extended = load_resumed(resume, overrides)
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
        self.out = open_run_dir(config, runtime, checkpoint is not None)
        try:
            self._build(checkpoint, extended)
        except BaseException:
            self.close()
            raise

    def _build(self, checkpoint: dict | None, extended: dict | None) -> None:
        config, runtime = self.config, self.runtime
        if config.batch_size % runtime.world_size:
            raise ValueError(f"batch_size={config.batch_size} is the global batch; it must be "
                             f"divisible by the {runtime.world_size} processes")

        random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.model = model = create_model(config.model, **config.model_args)
        self.info = info = dataset_info(config.dataset, config.data_dir)
        _prepare(model, config, runtime, self.log if checkpoint is None else None)
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
            restore(self, checkpoint)
        self.net = wrap(model, runtime, self.compile_mode)
        self.train_loader, self.test_loader = build_loaders(
            config.dataset, config.data_dir, batch_size=config.batch_size // runtime.world_size,
            device=runtime.device, download=config.download, augment=config.augment,
            verify=None if config.verify_data else False,
            seed=config.seed, rank=runtime.rank, world_size=runtime.world_size,
            workers=config.workers)
        self.run_config = run_record(self, checkpoint, extended)
        self.writer = None
        if runtime.is_main:
            record.start(self, checkpoint is not None, extended)
            self.writer = tensorboard(self.out) if config.tensorboard else None

    def close(self) -> None:
        """Give the run directory back (a crashed process gives it back by exiting)."""
        if self.runtime.is_main and getattr(self, "out", None) is not None:
            release(self.out)

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
        with stop_on_signals() as stop:
            self.stop = stop
            try:
                while self.epoch < config.epochs:
                    self._train_epoch(stop)
                    self._end_epoch(stop)
            except Interrupted:
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
        if runtime.is_main:
            self.log(f"measuring the train accuracy: the final model in eval mode on the "
                     f"{self.train_loader.dataset_size:,} training images")
        train = evaluate(self.model, self.train_loader.evaluation(), runtime, self.amp,
                         self.channels_last)
        summary = record.summary(self, train)
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
            with autocast(runtime, self.amp):
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
            if stop_requested(stop, runtime):  # within one step of Ctrl-C / SIGTERM
                fold_into_partial(i + 1)
                raise Interrupted
        fold_into_partial(steps)

    def _end_epoch(self, stop: dict) -> None:
        """All-reduce the epoch's sums, evaluate, checkpoint, log."""
        runtime, out, p = self.runtime, self.out, self.partial
        loss_sum, correct, seen = all_reduce([p["loss_sum"], p["correct"], float(p["seen"])],
                                              runtime)
        if not math.isfinite(loss_sum):
            raise TrainingDiverged(f"the training loss of epoch {self.epoch + 1} is not finite; "
                                   f"{self._last_good()}")
        average_buffers(self.model, runtime)
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
        write_metrics(self.history, out / "metrics.jsonl")
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
        with signals_deferred(getattr(self, "stop", None)):
            save_checkpoint(self.state(), self.out / name)
        return True

    def _last_good(self) -> str:
        last = self.out / "last.pt"
        if last.is_file():
            return f"{last} still holds the last good state."
        return "no checkpoint had been written yet."


def _prepare(model: torch.nn.Module, config: TrainConfig, runtime, log) -> None:
    """Before the first step: the weights of ``--pretrained`` / ``--init-from`` (``log``: not
    resuming, a resumed run has its own), and on the CPU the C++ kernels, so that a first build
    happens now, saying so, and not inside a timed step."""
    source = config.pretrained or config.init_from
    if source is not None and log is not None:
        report = initialize_from(model, source)
        if runtime.is_main:
            log(report)
    if runtime.device.type == "cpu" and getattr(model, "impl", None) == "fast":
        from .. import kernels
        kernels.available()


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


def _quiet(*args, **kwargs) -> None:
    pass
