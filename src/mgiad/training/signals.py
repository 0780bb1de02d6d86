"""Ctrl-C and SIGTERM (a scheduler's preemption): the loop stops at a step boundary and saves."""
from __future__ import annotations

import signal
from contextlib import contextmanager

__all__ = ["Interrupted", "stop_on_signals", "signals_deferred"]


class Interrupted(Exception):
    """Ctrl-C / SIGTERM was honoured at a step boundary: (epoch, batch) to resume from."""


@contextmanager
def stop_on_signals():
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
def signals_deferred(stop: dict | None):
    """While a checkpoint is written, a further Ctrl-C only asks to stop (it never truncates)."""
    if stop is None:
        yield
        return
    stop["saving"] = True
    try:
        yield
    finally:
        stop["saving"] = False
