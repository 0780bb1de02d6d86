"""Training: one loop for every model and dataset, a single process or DDP under ``torchrun``.

``config`` (TrainConfig, the recipes, the schedule), ``trainer`` (the loop), ``evaluate``,
``distributed`` (device, process group), ``signals`` (Ctrl-C, SIGTERM), ``resume``, ``record``
(what a run writes), ``rundir`` (one trainer per run directory), ``progress`` (bars, ETA).
The library (``mgiad.models``, ``mgiad.data``, ...) never imports this package.
"""
from .config import (COMPILE_MODES, PRESETS, RESUME_OVERRIDES, SCHEDULES, TrainConfig, compile_mode,
                     learning_rate, resolve_config, warmup_factor)
from .distributed import Runtime, setup_runtime, shutdown_distributed
from .evaluate import evaluate
from .trainer import Trainer, TrainingDiverged, train

__all__ = ["TrainConfig", "PRESETS", "SCHEDULES", "RESUME_OVERRIDES", "Trainer", "resolve_config",
           "train", "evaluate", "TrainingDiverged", "shutdown_distributed", "setup_runtime", "Runtime",
           "learning_rate", "warmup_factor", "compile_mode", "COMPILE_MODES"]
