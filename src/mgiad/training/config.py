"""The training configuration (:class:`TrainConfig`), the per-dataset recipes (:data:`PRESETS`)
and the learning-rate schedule.

Every field says what kind of setting it is (``kind`` in its metadata) and whether a resumed run
may change it; the field lists other modules need are derived from that, never written out:
:func:`fields_of` (``"run"``: what is trained; ``"recipe"``; ``"numerics"``: how it computes;
``"where"``: where and how it runs) and :data:`RESUME_OVERRIDES`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..data import dataset_info
from ..models import model_arguments

__all__ = ["TrainConfig", "PRESETS", "SCHEDULES", "RESUME_OVERRIDES", "COMPILE_MODES", "resolve_config",
           "fields_of", "compile_mode", "learning_rate", "warmup_factor"]

# field metadata: what kind of setting, and whether `mgiad train --resume` may change it
_run, _where, _where_resumable = {"kind": "run"}, {"kind": "where"}, {"kind": "where", "resume": True}
_recipe, _recipe_resumable = {"kind": "recipe"}, {"kind": "recipe", "resume": True}
_numerics, _numerics_resumable = {"kind": "numerics"}, {"kind": "numerics", "resume": True}
# recipe fields whose default (None) is the dataset's preset (PRESETS)
_preset, _preset_resumable = {**_recipe, "preset": True}, {**_recipe_resumable, "preset": True}

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

    model: str = field(default="mgiad", metadata=_run)
    model_args: dict[str, Any] = field(default_factory=dict, metadata=_run)
    dataset: str = field(default="digits", metadata=_run)
    data_dir: str | None = field(default=None, metadata=_where_resumable)
    # start from trained weights: a shipped name (mgiad.list_pretrained()) or a run directory,
    # save_pretrained folder or checkpoint file; a new classifier when the class count differs
    pretrained: str | None = field(default=None, metadata=_run)
    init_from: str | None = field(default=None, metadata=_run)
    download: bool = field(default=False, metadata=_where)
    # split sizes and known checksums (mgiad.data.verify)
    verify_data: bool = field(default=True, metadata=_where)
    epochs: int | None = field(default=None, metadata=_preset_resumable)
    batch_size: int | None = field(default=None, metadata=_preset)
    lr: float | None = field(default=None, metadata=_preset_resumable)
    schedule: str | None = field(default=None, metadata=_preset)
    # "step": multiply the learning rate by gamma every step_size epochs
    step_size: int = field(default=25, metadata=_recipe)
    # linear warm-up over the first epochs' steps (paper: 0)
    warmup_epochs: int | None = field(default=None, metadata=_preset)
    gamma: float = field(default=0.1, metadata=_recipe_resumable)
    momentum: float = field(default=0.9, metadata=_recipe_resumable)
    weight_decay: float = field(default=1e-4, metadata=_recipe_resumable)
    label_smoothing: float = field(default=0.0, metadata=_recipe)
    # training-batch augmentation; default: the dataset's (none for Fashion-MNIST, as the paper;
    # crops and flips for the others)
    augment: bool | None = field(default=None, metadata=_recipe)
    seed: int = field(default=0, metadata=_recipe)
    device: str = field(default="auto", metadata=_where_resumable)
    amp: bool | None = field(default=None, metadata=_numerics)  # bf16 autocast; default: on for CUDA
    channels_last: bool | None = field(default=None, metadata=_numerics)  # default: on for CUDA
    # torch.compile: False, True ("default") or a mode name; default: "reduce-overhead" on one
    # GPU, eager elsewhere (compile_mode)
    compile: bool | str | None = field(default=None, metadata=_numerics_resumable)
    workers: int | None = field(default=None, metadata=_where_resumable)
    out: str | None = field(default=None, metadata=_where)
    progress: bool | None = field(default=None, metadata=_where_resumable)  # default: stderr is a tty
    tensorboard: bool = field(default=False, metadata=_where_resumable)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training configuration field(s): {', '.join(unknown)}")
        return cls(**data)


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Fill unset fields from the dataset's preset and the dataset's shape; validate values."""
    info = dataset_info(config.dataset, config.data_dir)  # raises DatasetError for unknown names
    if config.pretrained is not None and config.init_from is not None:
        raise ValueError("give one of pretrained (shipped weights) and init_from (a run or folder)")
    preset = {**PRESETS["default"], **PRESETS.get(info.name, {})}
    values = {k: (preset.get(k) if getattr(config, k) is None else getattr(config, k))
              for k in fields_of("recipe", preset=True)}
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


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode(value: bool | str | None, device_type: str, distributed: bool = False) -> str | None:
    """The ``torch.compile`` mode that ``TrainConfig.compile`` asks for, or ``None`` for eager.

    Unset (``None``): ``"reduce-overhead"`` (compiled, in CUDA graphs) for one CUDA process, the
    fastest of the modes measured on one NVIDIA H200 for every model (docs/performance.md); eager
    on the CPU and under torchrun."""
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


def fields_of(*kinds: str, resumable: bool | None = None, preset: bool | None = None) -> tuple[str, ...]:
    """Names of :class:`TrainConfig`'s fields of these kinds (all if none given), in order;
    ``resumable``: only those a resumed run may (``True``) or may not (``False``) change;
    ``preset``: only those whose default is the dataset's preset (or only the others)."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig)
                 if (not kinds or f.metadata.get("kind") in kinds)
                 and (resumable is None or bool(f.metadata.get("resume")) == resumable)
                 and (preset is None or bool(f.metadata.get("preset")) == preset))


# what a resumed run may change: its length and optimiser settings (e.g. a lower learning rate
# after a divergence), and where and how it runs
RESUME_OVERRIDES = sum((fields_of(kind, resumable=True) for kind in ("recipe", "where", "numerics")), ())
