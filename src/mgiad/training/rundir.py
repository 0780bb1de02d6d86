"""A run directory belongs to one process at a time, and ``--out`` never takes a user's folder.

:func:`claim` takes an exclusive ``flock`` on ``<run>/.lock`` (released by the kernel when the
process ends, however it ends: a crash never leaves a run stuck) and removes the temporary files
a killed writer left behind. Claims are re-entrant within a process (``mgiad reproduce`` claims a
run before training it; the trainer claims it again).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["RunDirectoryBusy", "claim", "release", "ensure_free", "check_output_directory",
           "is_run_directory"]

LOCK_NAME = ".lock"
# what mgiad itself puts in a run folder before its first checkpoint (reproduce's bookkeeping)
OWN_FILES = {LOCK_NAME, "experiment.json", "train.log", "error.log"}
_held: dict[Path, list] = {}  # resolved directory -> [file object, claim count]


class RunDirectoryBusy(ValueError):
    """Another process is using this run directory."""


def is_run_directory(directory: Path) -> bool:
    """Holds what ``mgiad train`` writes (a checkpoint, or its config.json)."""
    if (directory / "last.pt").is_file() or (directory / "summary.json").is_file():
        return True
    try:
        import json
        return "train" in json.loads((directory / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def check_output_directory(directory: Path) -> None:
    """``--out`` of a new run: a missing or empty folder, or an mgiad run that has no checkpoint
    yet; never a file, nor a folder of someone's files (a save_pretrained folder, a dataset)."""
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"--out {directory} is a file; give a folder for the run")
    if not directory.is_dir():
        return
    entries = [p.name for p in directory.iterdir() if p.name not in OWN_FILES]
    if entries and not is_run_directory(directory):
        shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
        raise ValueError(f"--out {directory} is not empty and not an mgiad run ({shown}); "
                         "choose a new or empty folder, so that nothing of yours is overwritten")


def claim(directory: str | os.PathLike) -> None:
    """Take the run directory for this process, or raise :class:`RunDirectoryBusy`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = directory.resolve()
    if key in _held:
        _held[key][1] += 1
        return
    handle = open(key / LOCK_NAME, "a+")
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no protection against a second process
        fcntl = None
    if fcntl is not None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise RunDirectoryBusy(f"{directory} is in use by another process ({owner}); wait for "
                                   "it to finish or stop it, or choose another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {os.uname().nodename if hasattr(os, 'uname') else '?'}\n")
    handle.flush()
    _held[key] = [handle, 1]
    for leftover in key.glob(".*.tmp"):  # an atomic write cut short by SIGKILL or a power loss
        leftover.unlink(missing_ok=True)


def ensure_free(directory: str | os.PathLike) -> None:
    """Raise :class:`RunDirectoryBusy` now if another process holds ``directory`` (for a clear
    error before reading its files; the real claim comes later)."""
    if Path(directory).is_dir():
        claim(directory)
        release(directory)


def release(directory: str | os.PathLike) -> None:
    """Give back one claim; the lock is dropped with the last one."""
    key = Path(directory).resolve()
    if key not in _held:
        return
    _held[key][1] -= 1
    if _held[key][1] == 0:
        handle = _held.pop(key)[0]
        handle.close()
