"""What a training run says while it runs: its plan, an estimate of its duration, and progress.

On a terminal a tqdm bar shows each epoch (with tqdm, the ``progress`` extra); otherwise (a log file, a
scheduler, ``--no-progress``) a line is printed every ``interval`` seconds, so a long epoch is
never silent. Both carry the estimated time to the end of the run.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

__all__ = ["format_duration", "plural", "ProgressReporter", "progress_bar"]


def format_duration(seconds: float) -> str:
    """``42s``, ``7m 05s``, ``3h 12m``, ``2d 04h``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {s:02d}s"
    hours, m = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {m:02d}m"
    days, h = divmod(hours, 24)
    return f"{days}d {h:02d}h"


def plural(n: int, word: str) -> str:
    """``1 epoch``, ``2 epochs``, ``1,000 steps``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


class ProgressReporter:
    """Measures seconds per training step in this process and turns them into an ETA.

    ``total_steps``: training steps of the whole run; ``done_steps``: those already trained (a
    resumed run). ``eval_fraction``: evaluation time relative to training time, once known.
    """

    def __init__(self, log: Callable[[str], None], total_steps: int, done_steps: int,
                 interval: float = 60.0, estimate_after: int = 20):
        self.log, self.total, self.done = log, total_steps, done_steps
        self.interval, self.estimate_after = interval, estimate_after
        # the first step of a process carries one-time costs (oneDNN primitives, the allocator,
        # torch.compile, a kernel build): it is not timed, or estimates would be absurd
        self.untimed = 1
        self.steps, self.step_seconds, self.eval_fraction = 0, 0.0, 0.0
        self.last_line = time.monotonic()
        self.step_end = time.perf_counter()
        self.estimated = False

    def plan(self, epochs: int, steps_per_epoch: int, batch_size: int, start_epoch: int) -> None:
        left = self.total - self.done
        self.log(f"plan: {plural(epochs, 'epoch')} x {plural(steps_per_epoch, 'step')} of batch "
                 f"{batch_size} = {plural(self.total, 'step')}"
                 + (f"; {left:,} left from epoch {start_epoch + 1}" if self.done else "")
                 + f"; an estimate of the time follows after {self.estimate_after} steps")

    def start_epoch(self) -> None:
        """Steps are timed from here (evaluation between epochs is not a step)."""
        self.step_end = time.perf_counter()

    def step(self) -> None:
        """One training step finished (its time: since the previous step or the epoch start)."""
        now = time.perf_counter()
        self.done += 1
        if self.untimed:
            self.untimed -= 1
        else:
            self.steps += 1
            self.step_seconds += now - self.step_end
        self.step_end = now
        if not self.estimated and self.steps >= self.estimate_after:
            self.estimated = True
            self.log(f"estimated: {self.seconds_per_step():.3f} s/step, about "
                     f"{format_duration(self.eta())} for the {self.total - self.done:,} steps left")

    def seconds_per_step(self) -> float:
        return self.step_seconds / max(self.steps, 1)

    def eta(self) -> float:
        return (self.total - self.done) * self.seconds_per_step() * (1 + self.eval_fraction)

    def eta_text(self) -> str:
        return f"ETA {format_duration(self.eta())}" if self.steps else "ETA unknown"

    def due(self) -> bool:
        """A periodic line is due (used when no progress bar is shown)."""
        now = time.monotonic()
        if now - self.last_line < self.interval:
            return False
        self.last_line = now
        return True


def progress_bar(iterable: Iterable, total: int, enabled: bool, desc: str):
    """tqdm around ``iterable`` when enabled and installed, else ``iterable`` itself."""
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except Exception:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, unit="batch")
