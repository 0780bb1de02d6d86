"""Reading run directories: finished runs and runs in progress (:class:`Run`)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Run:
    """One run directory: finished (``summary`` non-empty) or in progress."""

    directory: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    experiment: dict[str, Any]
    metrics: list[dict[str, Any]]

    @property
    def finished(self) -> bool:
        return bool(self.summary)

    @property
    def failed(self) -> bool:
        return not self.finished and (self.directory / "error.log").is_file()

    def _field(self, name: str) -> Any:
        return self.summary.get(name) or self.config.get(name) or self.experiment.get(name)

    @property
    def dataset(self) -> str | None:
        return self._field("dataset")

    @property
    def model(self) -> str | None:
        return self._field("model")

    @property
    def seed(self) -> int:
        return int(self.config.get("train", {}).get("seed", self.experiment.get("seed", 0)))

    @property
    def epochs_done(self) -> int:
        if self.metrics:
            return int(self.metrics[-1].get("epoch", len(self.metrics)))
        return int(self.summary.get("epochs", 0)) if self.finished else 0

    def target_epochs(self, recipe_epochs: int) -> int:
        """The epochs the run trains to: the summary's, else config.json's, else the budget's."""
        if self.finished and self.summary.get("epochs"):
            return int(self.summary["epochs"])
        if self.config.get("train", {}).get("epochs"):
            return int(self.config["train"]["epochs"])
        overrides = (self.experiment.get("budget") or {}).get("overrides", {})
        return int(overrides.get("epochs") or recipe_epochs)

    @property
    def updated(self) -> float:
        """Modification time of the newest of the run's files (for picking among duplicates)."""
        times = [p.stat().st_mtime for p in (self.directory / n for n in (
            "summary.json", "metrics.jsonl", "config.json", "experiment.json", "last.pt"))
                 if p.is_file()]
        return max(times, default=0.0)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


CORRUPT_METRICS: list[str] = []  # "<path>: line N" of the lines the last load_runs skipped


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl, one dict per finished epoch; a line that does not parse is skipped and
    named in :data:`CORRUPT_METRICS` (the report says which file and line)."""
    metrics = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            CORRUPT_METRICS.append(f"{path}: line {number}")
            continue
        if isinstance(entry, dict) and entry.get("test_acc") is not None:
            metrics.append(entry)
    return metrics


RUN_FILES = ("summary.json", "config.json", "experiment.json")
MALFORMED_RUNS: list[str] = []  # "<directory>: why" of the runs the last load_runs skipped

# the numbers the report reads: where present (and not null) they must be finite numbers
_SUMMARY_NUMBERS = ("final_test_acc", "best_test_acc", "train_acc", "final_train_acc",
                    "final_train_running_acc", "final_test_loss", "train_loss", "wall_seconds",
                    "train_seconds", "images_per_s", "weights", "flops", "multiply_adds")
_METRIC_NUMBERS = ("test_acc", "train_acc", "train_running_acc", "images_per_s", "elapsed")


def malformed(run: Run) -> str | None:
    """Why ``run``'s records cannot be reported (a non-finite or non-numeric accuracy, a
    non-integer epoch or seed), or None."""
    from ...utils.limits import finite

    def count(value: Any, name: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a whole number, got {value!r}")
    try:
        if run.summary and run.summary.get("final_test_acc") is None:
            raise ValueError("summary.json records no final_test_acc")
        for key in _SUMMARY_NUMBERS:
            if run.summary.get(key) is not None:
                finite(run.summary[key], f"summary.json: {key}")
        if "epochs" in run.summary:
            count(run.summary["epochs"], "summary.json: epochs")
        train = run.config.get("train", {})
        if not isinstance(train, dict):
            raise ValueError("config.json: train is not an object")
        for source, record in (("config.json", train), ("experiment.json", run.experiment)):
            for key in ("seed", "epochs"):
                if record.get(key) is not None:
                    count(record[key], f"{source}: {key}")
        for number, metric in enumerate(run.metrics, 1):
            for key in _METRIC_NUMBERS:
                if metric.get(key) is not None:
                    finite(metric[key], f"metrics.jsonl line {number}: {key}")
            if "epoch" in metric:
                count(metric["epoch"], f"metrics.jsonl line {number}: epoch")
    except ValueError as exc:
        return str(exc)
    return None


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1); ``None`` for a single value (and no values)."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def _running(metric: dict[str, Any]) -> float | None:
    """An epoch's running training accuracy (older runs call it ``train_acc``)."""
    value = metric.get("train_running_acc", metric.get("train_acc"))
    return None if value is None else float(value)


def train_accuracy(summary: dict[str, Any]) -> tuple[float | None, str | None]:
    """A finished run's train accuracy and its kind.

    ``"eval"``: the paper's measure, the final model in eval mode on the un-augmented training
    set (``train_acc``; also ``final_train_acc`` where the summary holds the running figure
    beside it). ``"running"``: summaries from before that measurement hold only
    ``final_train_acc``, which was then the last epoch's running accuracy (train mode, over the
    epoch's batches)."""
    if summary.get("train_acc") is not None:
        return float(summary["train_acc"]), "eval"
    if summary.get("final_train_acc") is not None:
        kind = "eval" if "final_train_running_acc" in summary else "running"
        return float(summary["final_train_acc"]), kind
    return None, None


def _running_of(run: Run) -> float | None:
    if run.summary.get("final_train_running_acc") is not None:
        return float(run.summary["final_train_running_acc"])
    value, kind = train_accuracy(run.summary)
    if kind == "running":
        return value
    return _running(run.metrics[-1]) if run.metrics else None


def run_status(run: Run, target: int) -> str:
    """``finished``, ``in progress, epoch k of N``, or ``failed after epoch k of N (error.log)``."""
    if run.finished:
        return "finished"
    if run.failed:
        return f"failed after epoch {run.epochs_done} of {target} (error.log)"
    return f"in progress, epoch {run.epochs_done} of {target}"
